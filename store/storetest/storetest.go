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
	"fmt"
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
