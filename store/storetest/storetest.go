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
		{"InsertRenewalSwapOnceAndLinked", testInsertRenewalSwap},
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

// oneWins runs try(i) for i in [0, n) at once and fails t unless exactly
// one call succeeds and every other fails with lose (single use under
// concurrency: a token, an order, a compare-and-swap).
func oneWins(t *testing.T, n int, lose error, try func(i int) error) {
	t.Helper()
	var ok, lost atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := try(i); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, lose):
				lost.Add(1)
			default:
				t.Errorf("call %d: %v, want nil or %v", i, err, lose)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || lost.Load() != int64(n-1) {
		t.Fatalf("%d succeeded and %d failed with %v, want 1 and %d", ok.Load(), lost.Load(), lose, n-1)
	}
}

func testRedeemOnce(t *testing.T, s store.Store) {
	hash := PutToken(t, s, "tok1")
	oneWins(t, 200, store.ErrTokenUsed, func(int) error {
		return s.RedeemToken(context.Background(), "tok1", hash, T0, NewCert(), &store.AuditEvent{Action: "issue"})
	})
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
