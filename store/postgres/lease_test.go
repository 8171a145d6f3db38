package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/postgres"
)

// waitFor polls cond (every 20ms) until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// TestLeaseElectsOneAndFencesTheStale: two replicas, one leader; when it
// goes away the other takes over with a larger epoch, and the old
// leader's epoch can no longer take a CRL number or publish.
func TestLeaseElectsOneAndFencesTheStale(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	lo := &postgres.LeaseOptions{TTL: 900 * time.Millisecond}
	a := openDSN(t, dsn, postgres.Options{Lease: lo})
	b := openDSN(t, dsn, postgres.Options{Lease: &postgres.LeaseOptions{TTL: lo.TTL}})
	one := func() bool { _, x := a.Leader(); _, y := b.Leader(); return x != y }
	waitFor(t, 3*time.Second, "exactly one leader", one)
	leader, other := a, b
	if _, ok := b.Leader(); ok {
		leader, other = b, a
	}
	e1, _ := leader.Leader()
	if _, err := other.NextCRLNumber(context.Background()); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("a replica that does not lead took a CRL number: %v", err)
	}
	if _, err := leader.NextCRLNumber(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := leader.PublishCRL(context.Background(), 1, []byte("one")); err != nil {
		t.Fatal(err)
	}
	leader.Close()
	waitFor(t, 3*time.Second, "the other replica takes over", func() bool { _, ok := other.Leader(); return ok })
	e2, _ := other.Leader()
	if e2 <= e1 {
		t.Fatalf("epoch %d after %d: the fencing token must grow", e2, e1)
	}
	if err := other.PublishCRL(context.Background(), 1, []byte("again")); !errors.Is(err, store.ErrStaleCRL) {
		t.Fatalf("republishing number 1: %v, want ErrStaleCRL", err)
	}
	if err := other.PublishCRL(context.Background(), 2, []byte("two")); err != nil {
		t.Fatal(err)
	}
}
