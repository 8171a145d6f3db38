package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
)

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
	oneWins(t, 50, store.ErrConflict, func(i int) error {
		return s.SwapMeta(ctx, []store.MetaWrite{{Key: "race", If: rec{"unused", 0}, Value: rec{"used", i + 1}}}, nil)
	})

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
