// Package storetest is the conformance suite of the store.Store contract.
// Every engine runs it unchanged from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
//	}
//
// open must return an empty, migrated store that is closed when t ends.
// The suite proves the rules the services rely on: tokens are single use
// under concurrency (and redeemed in the transaction that records the
// certificate), lineage and revocation cascade, indexes and paging visit
// every record once, the CRL number only grows, the audit log reads
// newest first, sessions and meta values round-trip, conditional meta
// writes (SwapMeta, InsertCertSwap) apply once, and a backup opens
// as a bbolt store holding the records.
//
// Adding a method to store.Store: add its rules here as a new subtest.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
)

// T0 is the suite's "now"; records are built around it.
var T0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// Opener returns an empty, migrated store closed when t ends.
type Opener func(t *testing.T) store.Store

// Run runs every conformance test against stores from open.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"RedeemExactlyOnceUnderConcurrency", testRedeemOnce},
		{"RedeemErrorsWriteNothing", testRedeemErrors},
		{"RedeemFailureLeavesTokenUnused", testRedeemFailureAtomic},
		{"TokensListAndRevoke", testTokens},
		{"RenewalLineageAndRevocationCascade", testRevokeCascade},
		{"RenewalRacingRevocation", testRenewalRacingRevocation},
		{"ListCertsPaginatesEveryIndex", testListCerts},
		{"ListCertsStatusFilter", testListStatus},
		{"SerialsByCN", testSerialsByCN},
		{"CountCerts", testCountCerts},
		{"CRLNumberMonotonicUnderConcurrency", testCRLNumber},
		{"PublishedCRLNeverGoesBack", testPublishCRL},
		{"AuditNewestFirstAndPaging", testAudit},
		{"Sessions", testSessions},
		{"Meta", testMeta},
		{"SwapMetaOnceUnderConcurrency", testSwapMeta},
		{"InsertCertSwapOnceUnderConcurrency", testInsertCertSwap},
		{"BackupOpensAsBboltStore", testBackup},
		{"TidyPrunesAndKeepsIndexesConsistent", testTidy},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var serialCounter atomic.Uint64

// NewCert builds a record with defaults that opts override; serials are
// unique within the test binary.
func NewCert(opts ...func(*store.Cert)) *store.Cert {
	n := serialCounter.Add(1)
	c := &store.Cert{
		Serial:    fmt.Sprintf("%016x%016x", uint64(T0.UnixNano())+n, n),
		CN:        fmt.Sprintf("host%d.covalent.example.net", n),
		DNSNames:  []string{fmt.Sprintf("host%d.covalent.example.net", n)},
		Profile:   "covalent",
		KeyType:   "ecdsa-p256",
		NotBefore: T0,
		NotAfter:  T0.Add(24 * time.Hour),
		IssuedAt:  T0,
		DER:       []byte{1, 2, 3},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// PutToken stores an unused token id expiring an hour after T0 and
// returns the hash of its secret.
func PutToken(t testing.TB, s store.Store, id string) []byte {
	t.Helper()
	h := sha256.Sum256([]byte("secret-" + id))
	err := s.PutToken(context.Background(), &store.Token{ID: id, Hash: h[:], CN: "a.example", Profile: "covalent",
		DNSNames: []string{"a.example"}, CreatedAt: T0, ExpiresAt: T0.Add(time.Hour), CreatedBy: "admin:test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h[:]
}

func insert(t *testing.T, s store.Store, c *store.Cert) *store.Cert {
	t.Helper()
	if err := s.InsertCert(context.Background(), c, nil); err != nil {
		t.Fatalf("InsertCert: %v", err)
	}
	return c
}

func allCerts(t *testing.T, s store.Store) []*store.Cert {
	t.Helper()
	var out []*store.Cert
	q := store.CertQuery{Limit: 1000, Now: T0}
	for {
		page, next, err := s.ListCerts(q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		q.After = next
	}
}

func testRedeemOnce(t *testing.T, s store.Store) {
	hash := PutToken(t, s, "tok1")
	const n = 200
	var ok, used atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.RedeemToken(context.Background(), "tok1", hash, T0, NewCert(), &store.AuditEvent{Action: "issue"})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrTokenUsed):
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
	certs := allCerts(t, s)
	if len(certs) != 1 {
		t.Fatalf("store holds %d certificates, want 1", len(certs))
	}
	tok, err := s.GetToken("tok1")
	if err != nil || tok.UsedAt.IsZero() || tok.Serial != certs[0].Serial {
		t.Fatalf("token after redemption = %+v, %v; want used with serial %s", tok, err, certs[0].Serial)
	}
	if got, err := s.GetCert(certs[0].Serial); err != nil || got.TokenID != "" && got.TokenID != "tok1" {
		t.Fatalf("GetCert = %+v, %v", got, err)
	}
}

func testRedeemErrors(t *testing.T, s store.Store) {
	h := PutToken(t, s, "tok")
	PutToken(t, s, "revoked")
	if err := s.RevokeToken(context.Background(), "revoked", nil); err != nil {
		t.Fatal(err)
	}
	rh := sha256.Sum256([]byte("secret-revoked"))
	wrong := sha256.Sum256([]byte("x"))
	for _, tc := range []struct {
		name string
		id   string
		hash []byte
		now  time.Time
		want error
	}{
		{"unknown token", "nope", h, T0, store.ErrNotFound},
		{"wrong secret", "tok", wrong[:], T0, store.ErrNotFound},
		{"expired", "tok", h, T0.Add(2 * time.Hour), store.ErrTokenExpired},
		{"expires exactly now", "tok", h, T0.Add(time.Hour), store.ErrTokenExpired},
		{"revoked", "revoked", rh[:], T0, store.ErrTokenRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.RedeemToken(context.Background(), tc.id, tc.hash, tc.now, NewCert(), &store.AuditEvent{Action: "issue"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if certs := allCerts(t, s); len(certs) != 0 {
				t.Fatalf("a refused redemption wrote %d certificates", len(certs))
			}
		})
	}
	if evs, _, _ := s.ListAudit(store.AuditQuery{Action: "issue"}); len(evs) != 0 {
		t.Fatalf("refused redemptions wrote %d audit events", len(evs))
	}
	if tok, _ := s.GetToken("tok"); !tok.UsedAt.IsZero() {
		t.Fatal("a refused redemption marked the token used")
	}
	if err := s.RedeemToken(context.Background(), "tok", h, T0, NewCert(), nil); err != nil {
		t.Fatalf("the token still redeems after refusals: %v", err)
	}
}

// testRedeemFailureAtomic: a redemption whose certificate cannot be
// recorded (its serial is taken) leaves the token unused.
func testRedeemFailureAtomic(t *testing.T, s store.Store) {
	h := PutToken(t, s, "tok")
	taken := insert(t, s, NewCert())
	err := s.RedeemToken(context.Background(), "tok", h, T0, NewCert(func(c *store.Cert) { c.Serial = taken.Serial }), nil)
	if err == nil {
		// An engine may treat the serial as the key and overwrite; that
		// would lose a record, which the contract forbids.
		t.Fatal("redeeming with a serial already recorded succeeded")
	}
	if tok, _ := s.GetToken("tok"); !tok.UsedAt.IsZero() {
		t.Fatalf("failed redemption (%v) marked the token used", err)
	}
	if err := s.RedeemToken(context.Background(), "tok", h, T0, NewCert(), nil); err != nil {
		t.Fatalf("token unusable after a failed redemption: %v", err)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, id := range []string{"a", "b", "c", "d"} {
		h := sha256.Sum256([]byte(id))
		tok := &store.Token{ID: id, Hash: h[:], CN: id + ".example", Profile: "covalent", CreatedAt: T0.Add(time.Duration(i) * time.Minute), ExpiresAt: T0.Add(time.Hour)}
		if id == "d" {
			tok.ExpiresAt = T0
		}
		if err := s.PutToken(ctx, tok, &store.AuditEvent{Action: "token.create", Subject: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutToken(ctx, &store.Token{ID: "a", CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)}, nil); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate token id: %v, want ErrExists", err)
	}
	if err := s.RevokeToken(ctx, "b", &store.AuditEvent{Action: "token.revoke", Subject: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "b", nil); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if err := s.RevokeToken(ctx, "zz", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking unknown: %v", err)
	}
	ha := sha256.Sum256([]byte("a"))
	if err := s.RedeemToken(ctx, "a", ha[:], T0, NewCert(), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "a", nil); !errors.Is(err, store.ErrTokenUsed) {
		t.Fatalf("revoking a used token: %v, want ErrTokenUsed", err)
	}
	got, err := s.ListUnusedTokens(T0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "c" || got[0].Hash != nil {
		t.Fatalf("unused tokens = %+v, want only c, without its hash", got)
	}
	tok, err := s.GetToken("c")
	if err != nil || string(tok.Hash) != string(func() []byte { h := sha256.Sum256([]byte("c")); return h[:] }()) || tok.CN != "c.example" {
		t.Fatalf("GetToken = %+v, %v", tok, err)
	}
	if _, err := s.GetToken("zz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetToken unknown: %v", err)
	}
}

func testRevokeCascade(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := insert(t, s, NewCert())
	b := NewCert(func(c *store.Cert) { c.CN = a.CN; c.IssuedAt = T0.Add(time.Hour) })
	if err := s.InsertRenewal(ctx, a.Serial, b, &store.AuditEvent{Action: "renew"}); err != nil {
		t.Fatal(err)
	}
	c := NewCert(func(c *store.Cert) { c.CN = a.CN })
	if err := s.InsertRenewal(ctx, b.Serial, c, nil); err != nil {
		t.Fatal(err)
	}
	// Renewing a again (an agent retrying) is allowed; a points to the newest.
	b2 := NewCert(func(c *store.Cert) { c.CN = a.CN; c.IssuedAt = T0.Add(2 * time.Hour) })
	if err := s.InsertRenewal(ctx, a.Serial, b2, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetCert(a.Serial); got.NextSerial != b2.Serial {
		t.Fatalf("a.NextSerial = %q, want %q", got.NextSerial, b2.Serial)
	}
	// RenewedAt keeps the first renewal's time (issuance's retry grace
	// runs from it, so renewing again must not move it).
	if got, _ := s.GetCert(a.Serial); !got.RenewedAt.Equal(b.IssuedAt) {
		t.Fatalf("a.RenewedAt = %s, want the first renewal's %s", got.RenewedAt, b.IssuedAt)
	}
	if got, _ := s.GetCert(c.Serial); got.PreviousSerial != b.Serial {
		t.Fatalf("c.PreviousSerial = %q, want %q", got.PreviousSerial, b.Serial)
	}
	if err := s.InsertRenewal(ctx, "00ff", NewCert(), nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("renewing unknown: %v", err)
	}
	unrelated := insert(t, s, NewCert())
	first := store.Revocation{At: T0, Reason: 1, Comment: "stolen", By: "admin:test"}
	revoked, changed, err := s.Revoke(ctx, a.Serial, first, &store.AuditEvent{Action: "revoke"})
	if err != nil || !changed || len(revoked) != 4 {
		t.Fatalf("Revoke = %d records, changed=%v, %v; want 4, true", len(revoked), changed, err)
	}
	// Revoking a descendant again, or the root, changes nothing.
	got, changed, err := s.Revoke(ctx, a.Serial, store.Revocation{At: T0.Add(time.Hour), Reason: 4}, &store.AuditEvent{Action: "revoke"})
	if err != nil || changed || len(got) != 1 || got[0].Serial != a.Serial {
		t.Fatalf("second Revoke = %d records, changed=%v err=%v; want [a], false", len(got), changed, err)
	}
	for _, sn := range []string{a.Serial, b.Serial, c.Serial, b2.Serial} {
		got, _ := s.GetCert(sn)
		if got.Revocation == nil || got.Revocation.Reason != 1 || !got.Revocation.At.Equal(T0) || got.Revocation.Comment != "stolen" || got.Revocation.By != "admin:test" {
			t.Fatalf("%s revocation = %+v, want the first reason and time", sn, got.Revocation)
		}
		if got.Status(T0) != store.StatusRevoked {
			t.Fatalf("%s status %s", sn, got.Status(T0))
		}
	}
	if got, _ := s.GetCert(unrelated.Serial); got.Revocation != nil {
		t.Fatal("an unrelated certificate was revoked")
	}
	if err := s.InsertRenewal(ctx, c.Serial, NewCert(), nil); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("renewing a revoked certificate: %v, want ErrRevoked", err)
	}
	if _, _, err := s.Revoke(ctx, "00ee", first, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking unknown: %v", err)
	}
	crl, err := s.RevokedUnexpired(T0)
	if err != nil || len(crl) != 4 {
		t.Fatalf("RevokedUnexpired = %d, %v; want 4", len(crl), err)
	}
	for _, r := range crl {
		if r.Revocation == nil || r.NotAfter.IsZero() || r.Serial == "" {
			t.Fatalf("CRL entry lacks fields: %+v", r)
		}
	}
	if crl, _ := s.RevokedUnexpired(T0.Add(48 * time.Hour)); len(crl) != 0 {
		t.Fatalf("expired revoked certificates still listed: %d", len(crl))
	}
	if evs, _, _ := s.ListAudit(store.AuditQuery{Action: "revoke"}); len(evs) != 1 {
		t.Fatalf("%d revoke events, want 1 (the idempotent repeat writes none)", len(evs))
	}
}

// testRenewalRacingRevocation: renewals of a lineage racing its
// revocation are either revoked with it or refused; none escapes.
func testRenewalRacingRevocation(t *testing.T, s store.Store) {
	ctx := context.Background()
	root := insert(t, s, NewCert())
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := []string{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := root.Serial
			for range 8 {
				c := NewCert(func(c *store.Cert) { c.CN = root.CN })
				err := s.InsertRenewal(ctx, prev, c, nil)
				if errors.Is(err, store.ErrRevoked) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				accepted = append(accepted, c.Serial)
				mu.Unlock()
				prev = c.Serial
			}
		}()
	}
	time.Sleep(time.Millisecond) // let some renewals in first; correctness does not depend on it
	if _, _, err := s.Revoke(ctx, root.Serial, store.Revocation{At: T0, Reason: 1}, nil); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, sn := range accepted {
		if c, err := s.GetCert(sn); err != nil || c.Revocation == nil {
			t.Fatalf("renewal %s accepted alongside the revocation is not revoked (%v)", sn, err)
		}
	}
}

func testListCerts(t *testing.T, s store.Store) {
	for i := range 25 {
		insert(t, s, NewCert(func(c *store.Cert) { c.CN = fmt.Sprintf("web%02d.example", i) }))
	}
	insert(t, s, NewCert(func(c *store.Cert) { c.CN = "db.example"; c.Profile = "other" }))
	for _, tc := range []struct {
		q     store.CertQuery
		want  int
		pages int
	}{
		{store.CertQuery{Limit: 10}, 26, 3},
		{store.CertQuery{Limit: 10, CNPrefix: "web"}, 25, 3},
		{store.CertQuery{Limit: 10, Profile: "covalent"}, 25, 3},
		{store.CertQuery{Limit: 5, Profile: "other"}, 1, 1},
		{store.CertQuery{Limit: 5, CNPrefix: "web1"}, 10, 2},
	} {
		q := tc.q
		seen := map[string]bool{}
		pages := 0
		for {
			q.Now = T0
			certs, next, err := s.ListCerts(q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(certs) > q.Limit {
				t.Fatalf("%+v: page of %d", tc.q, len(certs))
			}
			for _, c := range certs {
				if seen[c.Serial] {
					t.Fatalf("%+v: serial %s on two pages", tc.q, c.Serial)
				}
				seen[c.Serial] = true
			}
			if next == "" {
				break
			}
			q.After = next
			if pages > 10 {
				t.Fatalf("%+v: paging does not end", tc.q)
			}
		}
		if len(seen) != tc.want || pages != tc.pages {
			t.Fatalf("%+v: saw %d certificates in %d pages, want %d in %d", tc.q, len(seen), pages, tc.want, tc.pages)
		}
	}
	// The unfiltered listing is newest first (by serial, which issuance
	// makes time-ordered); a CN search is in name order.
	all, _, _ := s.ListCerts(store.CertQuery{Limit: 100, Now: T0})
	if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].Serial > all[j].Serial }) {
		t.Fatal("unfiltered listing is not newest first")
	}
	byCN, _, _ := s.ListCerts(store.CertQuery{Limit: 100, CNPrefix: "web", Now: T0})
	if !sort.SliceIsSorted(byCN, func(i, j int) bool { return byCN[i].CN < byCN[j].CN }) {
		t.Fatal("CN search is not in name order")
	}
	for _, q := range []string{"'; DROP TABLE certs; --<script>.*", "%", "_", "web\\"} {
		if certs, _, err := s.ListCerts(store.CertQuery{CNPrefix: q, Now: T0}); err != nil || len(certs) != 0 {
			t.Fatalf("metacharacter search %q matched %d (%v)", q, len(certs), err)
		}
	}
	if _, _, err := s.ListCerts(store.CertQuery{After: "not hex", Now: T0}); err == nil {
		t.Fatal("a malformed page token was accepted")
	}
	full := all[0]
	if full.DER == nil || full.KeyType == "" || len(full.DNSNames) == 0 || full.NotBefore.IsZero() || full.IssuedAt.IsZero() {
		t.Fatalf("listing dropped fields: %+v", full)
	}
}

func testListStatus(t *testing.T, s store.Store) {
	ctx := context.Background()
	insert(t, s, NewCert())
	insert(t, s, NewCert(func(c *store.Cert) { c.NotAfter = T0.Add(-time.Minute) }))
	r := insert(t, s, NewCert())
	if _, _, err := s.Revoke(ctx, r.Serial, store.Revocation{At: T0, Reason: 4}, nil); err != nil {
		t.Fatal(err)
	}
	for status, want := range map[string]int{store.StatusValid: 1, store.StatusExpired: 1, store.StatusRevoked: 1, "": 3} {
		certs, _, err := s.ListCerts(store.CertQuery{Status: status, Now: T0})
		if err != nil || len(certs) != want {
			t.Fatalf("status %q: %d (%v), want %d", status, len(certs), err, want)
		}
	}
}

func testSerialsByCN(t *testing.T, s store.Store) {
	a := insert(t, s, NewCert(func(c *store.Cert) { c.CN = "same.example" }))
	b := insert(t, s, NewCert(func(c *store.Cert) { c.CN = "same.example" }))
	insert(t, s, NewCert(func(c *store.Cert) { c.CN = "same.example.other" }))
	got, err := s.SerialsByCN("same.example")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := []string{a.Serial, b.Serial}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SerialsByCN = %v, want %v", got, want)
	}
	if got, err := s.SerialsByCN("nobody"); err != nil || len(got) != 0 {
		t.Fatalf("SerialsByCN(nobody) = %v, %v", got, err)
	}
}

func testCountCerts(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, naf := range []time.Duration{30 * time.Minute, 90 * time.Minute, 90 * time.Minute, -time.Hour, 48 * time.Hour} {
		c := insert(t, s, NewCert(func(c *store.Cert) {
			c.NotAfter = T0.Add(naf)
			if i == 4 {
				c.Profile = "other"
			}
		}))
		if i == 2 {
			if _, _, err := s.Revoke(ctx, c.Serial, store.Revocation{At: T0, Reason: 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	cnt, err := s.CountCerts(T0, 24)
	if err != nil {
		t.Fatal(err)
	}
	if cnt.ByStatus[store.StatusValid] != 3 || cnt.ByStatus[store.StatusRevoked] != 1 || cnt.ByStatus[store.StatusExpired] != 1 {
		t.Fatalf("by status %v", cnt.ByStatus)
	}
	if cnt.ByProfile["covalent"] != 4 || cnt.ByProfile["other"] != 1 {
		t.Fatalf("by profile %v", cnt.ByProfile)
	}
	if len(cnt.ExpiringHours) != 24 || cnt.ExpiringHours[0] != 1 || cnt.ExpiringHours[1] != 1 || cnt.ExpiringHours[2] != 0 {
		t.Fatalf("expiring %v", cnt.ExpiringHours)
	}
}

func testCRLNumber(t *testing.T, s store.Store) {
	ctx := context.Background()
	if n, err := s.CRLNumber(); err != nil || n != 0 {
		t.Fatalf("fresh CRLNumber = %d, %v", n, err)
	}
	const n = 40
	got := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.NextCRLNumber(ctx)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("numbers handed out %v: not each of 1..%d once", got, n)
		}
	}
	if cur, _ := s.CRLNumber(); cur != n {
		t.Fatalf("CRLNumber = %d, want %d", cur, n)
	}
	if next, _ := s.NextCRLNumber(ctx); next != n+1 {
		t.Fatalf("next = %d, want %d", next, n+1)
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 30 {
		action := store.ActionIssue
		if i%3 == 0 {
			action = store.ActionRenew
		}
		ev := &store.AuditEvent{At: T0.Add(time.Duration(i) * time.Second), Actor: fmt.Sprintf("token:t%d", i), Action: action, Subject: fmt.Sprintf("serial-%02d", i), Detail: "d"}
		if err := s.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if ev.ID == "" {
			t.Fatal("AppendAudit left the ID empty")
		}
	}
	// Events written through other writes join the same log.
	h := PutToken(t, s, "tok")
	if err := s.RedeemToken(ctx, "tok", h, T0, NewCert(), &store.AuditEvent{At: T0.Add(time.Minute), Actor: "token:tok", Action: "issue", Subject: "redeemed"}); err != nil {
		t.Fatal(err)
	}
	var all []*store.AuditEvent
	q := store.AuditQuery{Limit: 7}
	for pages := 0; ; pages++ {
		evs, next, err := s.ListAudit(q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
		if next == "" {
			break
		}
		q.Before = next
		if pages > 10 {
			t.Fatal("audit paging does not end")
		}
	}
	if len(all) != 31 {
		t.Fatalf("paged %d events, want 31", len(all))
	}
	if all[0].Subject != "redeemed" {
		t.Fatalf("newest event %+v, want the redemption", all[0])
	}
	for i := 1; i < len(all); i++ {
		if all[i].At.After(all[i-1].At) {
			t.Fatalf("audit not newest first at %d: %v after %v", i, all[i].At, all[i-1].At)
		}
	}
	if all[1].Subject != "serial-29" || all[30].Subject != "serial-00" || all[1].Actor != "token:t29" || all[1].Detail != "d" {
		t.Fatalf("audit order or fields wrong: %+v ... %+v", all[1], all[30])
	}
	for _, tc := range []struct {
		q    store.AuditQuery
		want int
	}{
		{store.AuditQuery{Action: "renew"}, 10},
		{store.AuditQuery{Actor: "t1"}, 11}, // t1, t10..t19
		{store.AuditQuery{Subject: "serial-2"}, 10},
		{store.AuditQuery{Action: "issue", Subject: "redeemed"}, 1},
		{store.AuditQuery{Actor: "%"}, 0},
	} {
		evs, _, err := s.ListAudit(tc.q)
		if err != nil || len(evs) != tc.want {
			t.Fatalf("%+v: %d events (%v), want %d", tc.q, len(evs), err, tc.want)
		}
	}
}

func testSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	sess := &store.Session{ID: "id1", CSRF: "csrf1", Actor: "admin:password", ExpiresAt: T0.Add(time.Hour)}
	if err := s.PutSession(ctx, "k1", sess); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession("k1")
	if err != nil || got.ID != "id1" || got.CSRF != "csrf1" || got.Actor != "admin:password" || !got.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Fatalf("GetSession = %+v, %v", got, err)
	}
	sess.CSRF = "csrf2"
	if err := s.PutSession(ctx, "k1", sess); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession("k1"); got.CSRF != "csrf2" {
		t.Fatalf("replaced session = %+v", got)
	}
	if err := s.DeleteSession(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession("k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
	if err := s.DeleteSession(ctx, "k1"); err != nil {
		t.Fatalf("deleting an absent session: %v", err)
	}
}

func testMeta(t *testing.T, s store.Store) {
	ctx := context.Background()
	type v struct {
		A string
		N int
		B []byte
	}
	if err := s.GetMeta("k", &v{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent meta: %v", err)
	}
	if err := s.PutMeta(ctx, "k", v{"x", 1, []byte{0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(ctx, "k", v{"y", 2, []byte{2}}); err != nil {
		t.Fatal(err)
	}
	var got v
	if err := s.GetMeta("k", &got); err != nil || got.A != "y" || got.N != 2 || string(got.B) != "\x02" {
		t.Fatalf("meta = %+v, %v", got, err)
	}
	if err := s.PutMeta(ctx, "bad", func() {}); err == nil {
		t.Fatal("an unencodable value was stored")
	}
}

func testBackup(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := insert(t, s, NewCert())
	h := PutToken(t, s, "tok")
	r := NewCert()
	if err := s.RedeemToken(ctx, "tok", h, T0, r, &store.AuditEvent{Action: "issue", Subject: r.Serial}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Revoke(ctx, c.Serial, store.Revocation{At: T0, Reason: 1}, nil); err != nil {
		t.Fatal(err)
	}
	n, _ := s.NextCRLNumber(ctx)
	dst := filepath.Join(t.TempDir(), "backup.db")
	if err := s.Backup(dst); err != nil {
		t.Fatal(err)
	}
	b, err := store.Open(dst, store.Options{NoBackup: true})
	if err != nil {
		t.Fatalf("backup does not open as a store: %v", err)
	}
	defer b.Close()
	if got, err := b.GetCert(c.Serial); err != nil || got.Revocation == nil {
		t.Fatalf("backup lacks the revoked record: %+v, %v", got, err)
	}
	if tok, err := b.GetToken("tok"); err != nil || tok.Serial != r.Serial {
		t.Fatalf("backup lacks the redeemed token: %+v, %v", tok, err)
	}
	if got, _ := b.CRLNumber(); got != n {
		t.Fatalf("backup CRL number %d, want %d", got, n)
	}
	if evs, _, _ := b.ListAudit(store.AuditQuery{Action: "issue"}); len(evs) != 1 {
		t.Fatalf("backup holds %d issue events, want 1", len(evs))
	}
	if rev, _ := b.RevokedUnexpired(T0); len(rev) != 1 {
		t.Fatalf("backup lists %d revoked, want 1", len(rev))
	}
}

func testTidy(t *testing.T, s store.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	old := insert(t, s, NewCert(func(c *store.Cert) { c.CN = "tidy.covalent.example.net"; c.NotAfter = T0.Add(-40 * day) }))
	next := NewCert(func(c *store.Cert) { c.CN = old.CN; c.NotAfter = T0.Add(day) })
	if err := s.InsertRenewal(ctx, old.Serial, next, nil); err != nil {
		t.Fatal(err)
	}
	revokedLive := insert(t, s, NewCert(func(c *store.Cert) { c.NotAfter = T0.Add(day) }))
	if _, _, err := s.Revoke(ctx, revokedLive.Serial, store.Revocation{At: T0, Reason: 1}, nil); err != nil {
		t.Fatal(err)
	}
	PutToken(t, s, "tidy-token") // expires T0+1h, unused
	if err := s.PutSession(ctx, "tidy-session", &store.Session{ID: "x", ExpiresAt: T0.Add(-2 * day)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, &store.AuditEvent{At: T0.Add(-500 * day), Action: "issue"}); err != nil {
		t.Fatal(err)
	}
	req := store.TidyRequest{CertsExpiredBefore: T0.Add(-30 * day), TokensBefore: T0.Add(2 * time.Hour),
		SessionsExpiredBefore: T0.Add(-day), AuditBefore: T0.Add(-400 * day)}
	want := store.TidyResult{Certs: 1, Tokens: 1, Sessions: 1, Audit: 1}
	dry := req
	dry.DryRun = true
	if got, err := s.Tidy(ctx, dry); err != nil || *got != want {
		t.Fatalf("dry run: %+v, %v; want %+v", got, err, want)
	}
	if _, err := s.GetCert(old.Serial); err != nil {
		t.Fatalf("a dry run removed a record: %v", err)
	}
	req.Event = &store.AuditEvent{At: T0, Actor: "admin:test", Action: "tidy"}
	if got, err := s.Tidy(ctx, req); err != nil || *got != want {
		t.Fatalf("tidy: %+v, %v; want %+v", got, err, want)
	}
	if _, err := s.GetCert(old.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired certificate: %v, want ErrNotFound", err)
	}
	if serials, _ := s.SerialsByCN(old.CN); len(serials) != 1 || serials[0] != next.Serial {
		t.Errorf("CN index after tidy: %v", serials)
	}
	if c, err := s.GetCert(next.Serial); err != nil || c.PreviousSerial != old.Serial {
		t.Errorf("successor after tidy: %+v, %v", c, err)
	}
	if crl, _ := s.RevokedUnexpired(T0); len(crl) != 1 {
		t.Errorf("%d revoked unexpired after tidy, want 1", len(crl))
	}
	if _, err := s.GetToken("tidy-token"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired token: %v", err)
	}
	if _, err := s.GetSession("tidy-session"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired session: %v", err)
	}
	if evs, _, _ := s.ListAudit(store.AuditQuery{Action: "tidy"}); len(evs) != 1 {
		t.Errorf("%d tidy audit events, want 1", len(evs))
	}
	if err := s.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Tidy(ctx, req); err != nil || *got != (store.TidyResult{}) {
		t.Fatalf("second tidy: %+v, %v", got, err)
	}
}

func testPublishCRL(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, _, err := s.LatestCRL(0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestCRL on a fresh store: %v", err)
	}
	if err := s.PublishCRL(ctx, 5, []byte("five")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{5, 4} {
		if err := s.PublishCRL(ctx, n, []byte("stale")); !errors.Is(err, store.ErrStaleCRL) {
			t.Fatalf("publishing %d after 5: %v, want ErrStaleCRL", n, err)
		}
	}
	// Concurrent publishers: the newest wins, whatever the order.
	var wg sync.WaitGroup
	for n := int64(6); n < 26; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.PublishCRL(ctx, n, fmt.Appendf(nil, "crl-%d", n)); err != nil && !errors.Is(err, store.ErrStaleCRL) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n, der, err := s.LatestCRL(0)
	if err != nil || n != 25 || string(der) != "crl-25" {
		t.Fatalf("LatestCRL = %d %q %v, want 25", n, der, err)
	}
	if _, _, err := s.LatestCRL(25); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestCRL(after newest): %v", err)
	}
	before, _ := s.Revocations()
	c := insert(t, s, NewCert())
	if _, _, err := s.Revoke(ctx, c.Serial, store.Revocation{At: T0, Reason: 1}, nil); err != nil {
		t.Fatal(err)
	}
	s.Revoke(ctx, c.Serial, store.Revocation{At: T0, Reason: 1}, nil) //nolint:errcheck // idempotent repeat
	if after, _ := s.Revocations(); after != before+1 {
		t.Fatalf("Revocations %d -> %d, want +1 (a repeat changes nothing)", before, after)
	}
}

// testSwapMeta: conditions compare JSON values, a failed condition writes
// nothing (not the other writes, not the event), and of concurrent swaps
// conditioned on one value exactly one wins (ACME: an EAB key redeemed
// once, on any replica).
func testSwapMeta(t *testing.T, s store.Store) {
	ctx := context.Background()
	type rec struct {
		State string `json:"state"`
		N     int    `json:"n"`
	}
	ev := func(subject string) *store.AuditEvent {
		return &store.AuditEvent{At: T0, Actor: "t", Action: store.ActionIssue, Subject: subject}
	}
	audited := func(subject string) int {
		evs, _, err := s.ListAudit(store.AuditQuery{Subject: subject})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	if err := s.SwapMeta(ctx, []store.MetaWrite{{Key: "k", IfAbsent: true, Value: rec{"new", 1}}}, ev("created")); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := s.SwapMeta(ctx, []store.MetaWrite{{Key: "k", IfAbsent: true, Value: rec{"new", 2}}}, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create over an existing key: %v, want ErrConflict", err)
	}
	// The condition is a JSON value: key order does not matter.
	if err := s.SwapMeta(ctx, []store.MetaWrite{{Key: "k", If: map[string]any{"n": 1, "state": "new"}, Value: rec{"used", 1}}}, nil); err != nil {
		t.Fatalf("swap with a reordered condition: %v", err)
	}
	// A failing condition on one key writes nothing, not even the others.
	err := s.SwapMeta(ctx, []store.MetaWrite{
		{Key: "other", Value: rec{"x", 9}},
		{Key: "k", If: rec{"new", 1}, Value: rec{"twice", 1}},
	}, ev("refused"))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale condition: %v, want ErrConflict", err)
	}
	var got rec
	if err := s.GetMeta("k", &got); err != nil || got.State != "used" {
		t.Fatalf("after a refused swap k = %+v, %v", got, err)
	}
	if err := s.GetMeta("other", &got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused swap wrote another key: %v", err)
	}
	if audited("refused") != 0 || audited("created") != 1 {
		t.Fatal("the event of a refused swap was written, or that of a good one was not")
	}
	if err := s.SwapMeta(ctx, []store.MetaWrite{{Key: "k", If: rec{"used", 1}, Delete: true}}, nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := s.GetMeta("k", &got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key reads %v", err)
	}

	// Concurrency: 50 writers read the same value; exactly one swaps it.
	if err := s.PutMeta(ctx, "race", rec{"unused", 0}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var ok, lost atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.SwapMeta(ctx, []store.MetaWrite{{Key: "race", If: rec{"unused", 0}, Value: rec{"used", i + 1}}}, nil)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrConflict):
				lost.Add(1)
			default:
				t.Errorf("concurrent swap: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || lost.Load() != n-1 {
		t.Fatalf("ok=%d conflicts=%d, want 1 and %d", ok.Load(), lost.Load(), n-1)
	}

	// ListMeta: by prefix, full keys; % and _ are not wildcards.
	for _, k := range []string{"acme/a/1", "acme/a/2", "acme/b/1", "acme/a_x"} {
		if err := s.PutMeta(ctx, k, rec{k, 0}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := s.ListMeta("acme/a/")
	if err != nil || len(m) != 2 || m["acme/a/1"] == nil || m["acme/a/2"] == nil {
		t.Fatalf("ListMeta(acme/a/) = %v, %v; want acme/a/1 and acme/a/2", m, err)
	}
	if m, err := s.ListMeta("acme/%"); err != nil || len(m) != 0 {
		t.Fatalf("ListMeta treats %% as a wildcard: %v, %v", m, err)
	}
}

// testInsertCertSwap: a Meta-held authorization (an ACME order) pays for
// exactly one certificate under concurrency, on any replica, and a
// refused condition records no certificate and no event.
func testInsertCertSwap(t *testing.T, s store.Store) {
	ctx := context.Background()
	type order struct{ Status, Serial string }
	if err := s.PutMeta(ctx, "order", order{Status: "ready"}); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var ok, lost atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := NewCert()
			err := s.InsertCertSwap(ctx, c, &store.AuditEvent{At: T0, Actor: "acme", Action: store.ActionIssue, Subject: c.Serial},
				[]store.MetaWrite{{Key: "order", If: order{Status: "ready"}, Value: order{Status: "valid", Serial: c.Serial}}})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrConflict):
				lost.Add(1)
			default:
				t.Errorf("InsertCertSwap: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || lost.Load() != n-1 {
		t.Fatalf("ok=%d conflicts=%d, want 1 and %d", ok.Load(), lost.Load(), n-1)
	}
	certs := allCerts(t, s)
	var o order
	if err := s.GetMeta("order", &o); err != nil || len(certs) != 1 || o.Serial != certs[0].Serial {
		t.Fatalf("store holds %d certificates, order %+v (%v); want one, named by the order", len(certs), o, err)
	}
	evs, _, err := s.ListAudit(store.AuditQuery{Actor: "acme"})
	if err != nil || len(evs) != 1 || evs[0].Subject != certs[0].Serial {
		t.Fatalf("audit %v (%v), want the one issuance", evs, err)
	}
}
