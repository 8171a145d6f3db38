package acme

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/store"
)

// TestNoncesAcrossReplicas: two servers on one store (two replicas) share
// the nonce key through it, so each accepts the other's nonces; each
// accepts a nonce once, and refuses a forged, an old or a future one.
func TestNoncesAcrossReplicas(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := clock.NewFake(t0)
	a := New(Config{Store: db, Now: c.Now})
	b := New(Config{Store: db, Now: c.Now})
	mint := func(s *Server) string {
		n, err := s.newNonce()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := mint(a)
	if !b.useNonce(n) {
		t.Fatal("replica b refused a nonce replica a minted")
	}
	if b.useNonce(n) {
		t.Fatal("replica b accepted a nonce twice")
	}
	forged := []byte(mint(a))
	// a character inside the MAC (the last one carries padding bits a
	// lenient decoder ignores)
	if forged[35] == 'A' {
		forged[35] = 'B'
	} else {
		forged[35] = 'A'
	}
	if b.useNonce(string(forged)) || a.useNonce("") || a.useNonce("not-a-nonce") {
		t.Fatal("a forged or malformed nonce was accepted")
	}
	old := mint(b)
	c.Advance(NonceLifetime)
	if a.useNonce(old) {
		t.Fatal("a nonce older than NonceLifetime was accepted")
	}
	c.Set(t0.Add(2 * NonceSkew))
	future := mint(b)
	c.Set(t0)
	if a.useNonce(future) {
		t.Fatal("a nonce minted further than NonceSkew in the future was accepted")
	}
	if !a.useNonce(mint(b)) {
		t.Fatal("a fresh nonce was refused")
	}
}

// TestNonceMemoryBound: past its bound (MaxNonces; 100 here) a replica forgets the oldest used
// nonces but then refuses everything minted before them, so forgetting
// never lets a nonce through twice.
func TestNonceMemoryBound(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	s := New(Config{Store: db, Now: c.Now})
	s.maxNonces = 100
	first, err := s.newNonce()
	if err != nil {
		t.Fatal(err)
	}
	if !s.useNonce(first) {
		t.Fatal("fresh nonce refused")
	}
	unused, _ := s.newNonce()
	for range s.maxNonces {
		c.Advance(time.Microsecond)
		n, _ := s.newNonce()
		if !s.useNonce(n) {
			t.Fatal("fresh nonce refused")
		}
	}
	if len(s.seen) > s.maxNonces {
		t.Fatalf("replica remembers %d nonces, bound %d", len(s.seen), s.maxNonces)
	}
	if s.useNonce(first) {
		t.Fatal("a forgotten nonce was accepted a second time")
	}
	if s.useNonce(unused) {
		t.Fatal("a nonce minted before the forgotten ones was accepted")
	}
	n, _ := s.newNonce()
	if !s.useNonce(n) {
		t.Fatal("a nonce minted after the floor was refused")
	}
}
