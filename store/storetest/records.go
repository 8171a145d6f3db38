package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
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
