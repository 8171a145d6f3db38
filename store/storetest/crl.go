package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lanyard/lanyard/store"
)

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
