package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// newTestDB opens a store in a temp dir; the test may reopen it by path.
func newTestDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "lanyard.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var serialCounter atomic.Uint64

// newCert builds a record with sensible defaults; opts override.
func newCert(opts ...func(*Cert)) *Cert {
	n := serialCounter.Add(1)
	c := &Cert{
		Serial:    fmt.Sprintf("%016x%016x", uint64(t0.UnixNano())+n, n),
		CN:        fmt.Sprintf("host%d.covalent.example.net", n),
		Profile:   "covalent",
		NotBefore: t0,
		NotAfter:  t0.Add(24 * time.Hour),
		IssuedAt:  t0,
		DER:       []byte{1, 2, 3},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func newToken(t *testing.T, db *DB, id string) []byte {
	t.Helper()
	h := sha256.Sum256([]byte("secret-" + id))
	err := db.PutToken(context.Background(), &Token{ID: id, Hash: h[:], CN: "a", Profile: "covalent", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h[:]
}

func TestRedeemTokenExactlyOnceUnderConcurrency(t *testing.T) {
	db := newTestDB(t)
	hash := newToken(t, db, "tok1")
	const n = 200
	var ok, used atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.RedeemToken(context.Background(), "tok1", hash, t0, newCert(), &AuditEvent{Action: "issue"})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrTokenUsed):
				used.Add(1)
			default:
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != n-1 {
		t.Fatalf("ok=%d used=%d, want 1 and %d", ok.Load(), used.Load(), n-1)
	}
	certs, _, err := db.ListCerts(CertQuery{Limit: 1000, Now: t0})
	if err != nil || len(certs) != 1 {
		t.Fatalf("store holds %d certificates (%v), want 1", len(certs), err)
	}
}

func TestRedeemTokenErrors(t *testing.T) {
	tests := []struct {
		name string
		id   string
		hash func([]byte) []byte
		now  time.Time
		want error
	}{
		{"unknown token", "nope", func(h []byte) []byte { return h }, t0, ErrNotFound},
		{"wrong secret", "tok", func([]byte) []byte { h := sha256.Sum256([]byte("x")); return h[:] }, t0, ErrNotFound},
		{"expired", "tok", func(h []byte) []byte { return h }, t0.Add(2 * time.Hour), ErrTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newTestDB(t)
			h := newToken(t, db, "tok")
			err := db.RedeemToken(context.Background(), tc.id, tc.hash(h), tc.now, newCert(), nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if certs, _, _ := db.ListCerts(CertQuery{Now: t0}); len(certs) != 0 {
				t.Fatalf("a refused redemption wrote %d certificates", len(certs))
			}
		})
	}
}

func TestRevokeCascadesToRenewalsAndIsIdempotent(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	a := newCert()
	if err := db.InsertCert(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	b := newCert(func(c *Cert) { c.CN = a.CN })
	if err := db.InsertRenewal(ctx, a.Serial, b, nil); err != nil {
		t.Fatal(err)
	}
	first := Revocation{At: t0, Reason: 1, Comment: "stolen"}
	revoked, changed, err := db.Revoke(ctx, a.Serial, first, &AuditEvent{Action: "revoke"})
	if err != nil || !changed || len(revoked) != 2 {
		t.Fatalf("Revoke = %d records, changed=%v, %v; want 2, true", len(revoked), changed, err)
	}
	_, changed, err = db.Revoke(ctx, a.Serial, Revocation{At: t0.Add(time.Hour), Reason: 4}, nil)
	if err != nil || changed {
		t.Fatalf("second Revoke changed=%v err=%v", changed, err)
	}
	got, _ := db.GetCert(b.Serial)
	if got.Revocation == nil || got.Revocation.Reason != 1 || !got.Revocation.At.Equal(t0) {
		t.Fatalf("successor revocation = %+v, want the first reason and time", got.Revocation)
	}
	if err := db.InsertRenewal(ctx, a.Serial, newCert(), nil); !errors.Is(err, ErrRevoked) {
		t.Fatalf("renewing a revoked certificate: %v, want ErrRevoked", err)
	}
	crl, err := db.RevokedUnexpired(t0)
	if err != nil || len(crl) != 2 {
		t.Fatalf("RevokedUnexpired = %d, %v", len(crl), err)
	}
	if crl, _ := db.RevokedUnexpired(t0.Add(48 * time.Hour)); len(crl) != 0 {
		t.Fatalf("expired revoked certificates still listed: %d", len(crl))
	}
}

func TestListCertsPaginates(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	for i := 0; i < 25; i++ {
		c := newCert(func(c *Cert) { c.CN = fmt.Sprintf("web%02d.example", i) })
		if err := db.InsertCert(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []CertQuery{{Limit: 10}, {Limit: 10, CNPrefix: "web"}, {Limit: 10, Profile: "covalent"}} {
		seen := map[string]bool{}
		pages := 0
		for {
			q.Now = t0
			certs, next, err := db.ListCerts(q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, c := range certs {
				if seen[c.Serial] {
					t.Fatalf("%+v: serial %s on two pages", q, c.Serial)
				}
				seen[c.Serial] = true
			}
			if next == "" {
				break
			}
			q.After = next
		}
		if len(seen) != 25 || pages != 3 {
			t.Fatalf("%+v: saw %d certificates in %d pages, want 25 in 3", q, len(seen), pages)
		}
	}
	certs, _, _ := db.ListCerts(CertQuery{CNPrefix: "web1", Now: t0})
	if len(certs) != 10 {
		t.Fatalf("prefix web1 matched %d, want 10", len(certs))
	}
	certs, _, _ = db.ListCerts(CertQuery{CNPrefix: "'; DROP TABLE certs; --<script>.*", Now: t0})
	if len(certs) != 0 {
		t.Fatalf("metacharacter search matched %d", len(certs))
	}
}

func TestReopenKeepsRecordsAndCRLNumber(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanyard.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := newCert()
	if err := db.InsertCert(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	n1, _ := db.NextCRLNumber(ctx)
	db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.GetCert(c.Serial); err != nil {
		t.Fatalf("record lost across reopen: %v", err)
	}
	if n2, _ := db.NextCRLNumber(ctx); n2 != n1+1 {
		t.Fatalf("CRL number %d after %d", n2, n1)
	}
	if _, err := db.GetCert(hex.EncodeToString([]byte("zz"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown serial: %v", err)
	}
}

func TestBackupOpensAsStore(t *testing.T) {
	db := newTestDB(t)
	c := newCert()
	if err := db.InsertCert(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(dst); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.GetCert(c.Serial); err != nil {
		t.Fatalf("backup lacks record: %v", err)
	}
}

func TestCountCerts(t *testing.T) {
	db := newTestDB(t)
	ctx := context.Background()
	for i, naf := range []time.Duration{30 * time.Minute, 90 * time.Minute, 90 * time.Minute, -time.Hour, 48 * time.Hour} {
		c := newCert(func(c *Cert) { c.NotAfter = t0.Add(naf) })
		if i == 4 {
			c.Profile = "other"
		}
		if err := db.InsertCert(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if _, _, err := db.Revoke(ctx, c.Serial, Revocation{At: t0, Reason: 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	cnt, err := db.CountCerts(t0, 24)
	if err != nil {
		t.Fatal(err)
	}
	if cnt.ByStatus[StatusValid] != 3 || cnt.ByStatus[StatusRevoked] != 1 || cnt.ByStatus[StatusExpired] != 1 {
		t.Fatalf("by status %v", cnt.ByStatus)
	}
	if cnt.ByProfile["covalent"] != 4 || cnt.ByProfile["other"] != 1 {
		t.Fatalf("by profile %v", cnt.ByProfile)
	}
	if cnt.ExpiringHours[0] != 1 || cnt.ExpiringHours[1] != 1 {
		t.Fatalf("expiring %v", cnt.ExpiringHours[:3])
	}
}
