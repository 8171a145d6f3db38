package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
)

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

// testInsertCertSwap: a Meta-held authorization (an ACME order) pays for
// exactly one certificate under concurrency, on any replica, and a
// refused condition records no certificate and no event.
func testInsertCertSwap(t *testing.T, s store.Store) {
	ctx := context.Background()
	type order struct{ Status, Serial string }
	if err := s.PutMeta(ctx, "order", order{Status: "ready"}); err != nil {
		t.Fatal(err)
	}
	oneWins(t, 40, store.ErrConflict, func(int) error {
		c := NewCert()
		return s.InsertCertSwap(ctx, c, &store.AuditEvent{At: T0, Actor: "acme", Action: store.ActionIssue, Subject: c.Serial},
			[]store.MetaWrite{{Key: "order", If: order{Status: "ready"}, Value: order{Status: "valid", Serial: c.Serial}}})
	})
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

// testInsertRenewalSwap: an ACME order that replaces a certificate pays
// for exactly one certificate, which is that certificate's renewal
// (lineage as InsertRenewal's, so revoking the predecessor revokes it);
// an unknown or revoked predecessor writes neither the certificate nor
// the Meta writes.
func testInsertRenewalSwap(t *testing.T, s store.Store) {
	ctx := context.Background()
	type order struct{ Status, Serial string }
	ready := order{Status: "ready"}
	if err := s.PutMeta(ctx, "order", ready); err != nil {
		t.Fatal(err)
	}
	a := insert(t, s, NewCert())
	oneWins(t, 40, store.ErrConflict, func(int) error {
		c := NewCert(func(c *store.Cert) { c.CN = a.CN })
		return s.InsertRenewalSwap(ctx, a.Serial, c, &store.AuditEvent{At: T0, Actor: "acme", Action: store.ActionIssue, Subject: c.Serial},
			[]store.MetaWrite{{Key: "order", If: ready, Value: order{Status: "valid", Serial: c.Serial}}})
	})
	var o order
	if err := s.GetMeta("order", &o); err != nil || o.Status != "valid" {
		t.Fatalf("order %+v (%v), want valid", o, err)
	}
	b, err := s.GetCert(o.Serial)
	if err != nil || b.PreviousSerial != a.Serial {
		t.Fatalf("successor %+v (%v), want one naming %s as its predecessor", b, err, a.Serial)
	}
	if got, _ := s.GetCert(a.Serial); got.NextSerial != b.Serial {
		t.Fatalf("predecessor's NextSerial = %q, want %q", got.NextSerial, b.Serial)
	}
	if n := len(allCerts(t, s)); n != 2 {
		t.Fatalf("store holds %d certificates, want the predecessor and one successor", n)
	}
	if _, _, err := s.Revoke(ctx, a.Serial, store.Revocation{At: T0, Reason: 1, By: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetCert(b.Serial); got.Revocation == nil {
		t.Fatal("revoking the predecessor left its ACME successor unrevoked")
	}
	// Refused: nothing written, the order still as it was.
	if err := s.PutMeta(ctx, "order", ready); err != nil {
		t.Fatal(err)
	}
	for prev, want := range map[string]error{a.Serial: store.ErrRevoked, "00ff": store.ErrNotFound} {
		c := NewCert()
		err := s.InsertRenewalSwap(ctx, prev, c, nil, []store.MetaWrite{{Key: "order", If: ready, Value: order{Status: "valid", Serial: c.Serial}}})
		if !errors.Is(err, want) {
			t.Fatalf("renewing %s: %v, want %v", prev, err, want)
		}
		if _, err := s.GetCert(c.Serial); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("refused renewal of %s recorded its certificate (%v)", prev, err)
		}
		if err := s.GetMeta("order", &o); err != nil || o != ready {
			t.Fatalf("refused renewal of %s changed the order to %+v (%v)", prev, o, err)
		}
	}
}
