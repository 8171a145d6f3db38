package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/postgres"
	"github.com/lanyard/lanyard/store/storetest"
)

// copyScale is how many certificates TestCopyFromBboltAtScale copies: a
// fleet of a few thousand hosts with a renewal history, the size the HA
// issue names for `lanyard store copy` (the cmd test copies a smaller
// fleet enrolled through a real server).
const copyScale = 3000

// counter is a Sink that counts what an export hands it.
type counter struct{ certs, tokens, audit int }

func (c *counter) LoadCerts(_ context.Context, cs []*store.Cert) error {
	c.certs += len(cs)
	return nil
}
func (c *counter) LoadTokens(_ context.Context, ts []*store.Token) error {
	c.tokens += len(ts)
	return nil
}
func (c *counter) LoadAudit(_ context.Context, evs []*store.AuditEvent) error {
	c.audit += len(evs)
	return nil
}
func (c *counter) LoadSessions(context.Context, map[string]*store.Session) error { return nil }
func (c *counter) LoadMeta(context.Context, map[string][]byte) error             { return nil }
func (c *counter) LoadCRLNumber(context.Context, int64) error                    { return nil }

// TestCopyFromBboltAtScale copies a bbolt store of copyScale certificates
// (every fourth a renewal of the one before, some revoked), tokens used
// and unused, and audit events into PostgreSQL the way `lanyard store
// copy` does (Export into the destination), and checks: the counts
// match, every certificate and token reads back identical, lineage and
// revocation hold (revoking a renewed certificate revokes its renewal),
// and copying again adds nothing.
func TestCopyFromBboltAtScale(t *testing.T) {
	ctx := context.Background()
	src, err := store.Open(filepath.Join(t.TempDir(), "src.db"), store.Options{NoBackup: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	t0 := storetest.T0
	certs := make([]*store.Cert, 0, copyScale)
	for i := range copyScale {
		c := storetest.NewCert(func(c *store.Cert) {
			c.Serial = fmt.Sprintf("%02x%030x", i%251, i+1)
			c.CN = fmt.Sprintf("h%d.covalent.example.net", i/4)
			c.NotAfter = t0.Add(time.Duration(1+i%48) * time.Hour)
		})
		if i%4 != 0 { // a renewal of the one before
			prev := certs[i-1]
			c.PreviousSerial, prev.NextSerial, prev.RenewedAt = prev.Serial, c.Serial, t0
		}
		if i%97 == 0 && i%4 == 3 { // the newest of its lineage, revoked
			c.Revocation = &store.Revocation{At: t0, Reason: 1, By: "admin:test"}
		}
		certs = append(certs, c)
	}
	var tokens []*store.Token
	var events []*store.AuditEvent
	for i := range copyScale / 4 {
		h := sha256.Sum256(fmt.Appendf(nil, "secret-%d", i))
		tok := &store.Token{ID: fmt.Sprintf("tok%d", i), Hash: h[:], CN: certs[4*i].CN, Profile: "covalent",
			CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), CreatedBy: "admin:test"}
		if i%2 == 0 {
			tok.UsedAt, tok.Serial, certs[4*i].TokenID = t0, certs[4*i].Serial, tok.ID
		}
		tokens = append(tokens, tok)
	}
	for i := range copyScale {
		ev := &store.AuditEvent{At: t0.Add(time.Duration(i) * time.Millisecond), Actor: "admin:test", Action: store.ActionIssue, Subject: certs[i].Serial}
		store.PrepareAudit(ev)
		events = append(events, ev)
	}
	for _, load := range []func() error{
		func() error { return src.LoadCerts(ctx, certs) },
		func() error { return src.LoadTokens(ctx, tokens) },
		func() error { return src.LoadAudit(ctx, events) },
	} {
		if err := load(); err != nil {
			t.Fatal(err)
		}
	}

	dst := open(t, postgres.Options{})
	for range 2 { // the second copy must change nothing
		if err := src.Export(ctx, dst); err != nil {
			t.Fatalf("copy: %v", err)
		}
	}
	var want, got counter
	if err := src.Export(ctx, &want); err != nil {
		t.Fatal(err)
	}
	if err := dst.Export(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != want || want.certs != copyScale {
		t.Fatalf("PostgreSQL holds %+v after two copies; bbolt %+v (%d certificates made)", got, want, copyScale)
	}
	for _, c := range certs {
		a, err1 := src.GetCert(c.Serial)
		b, err2 := dst.GetCert(c.Serial)
		if err1 != nil || err2 != nil || !sameJSON(a, b) {
			t.Fatalf("certificate %s: bbolt %+v (%v), PostgreSQL %+v (%v)", c.Serial, a, err1, b, err2)
		}
	}
	for _, tok := range tokens {
		a, err1 := src.GetToken(tok.ID)
		b, err2 := dst.GetToken(tok.ID)
		if err1 != nil || err2 != nil || !sameJSON(a, b) {
			t.Fatalf("token %s: bbolt %+v (%v), PostgreSQL %+v (%v)", tok.ID, a, err1, b, err2)
		}
	}
	// Lineage survived: revoking the first of a lineage revokes the rest.
	first := certs[8]
	if _, _, err := dst.Revoke(ctx, first.Serial, store.Revocation{At: t0, Reason: 1, By: "admin:test"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range certs[8:12] {
		if got, err := dst.GetCert(c.Serial); err != nil || got.Revocation == nil {
			t.Fatalf("after revoking %s, its lineage member %s is %+v (%v), want revoked", first.Serial, c.Serial, got, err)
		}
	}
}

// sameJSON compares two records as their JSON (the engines' times may
// carry different *time.Location values for one instant in UTC).
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
