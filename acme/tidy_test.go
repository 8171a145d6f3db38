package acme

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
)

// TestTidy: expired unfinalized orders (past OrderGrace) and finalized
// orders whose certificate expired go, with their authorizations and
// marks; live ones, accounts and EAB keys stay; a dry run only counts.
func TestTidy(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := New(Config{Store: db, Now: func() time.Time { return t0 }})
	put := func(kind, id string, v any) {
		t.Helper()
		if err := db.PutMeta(ctx, key(kind, id), v); err != nil {
			t.Fatal(err)
		}
	}
	cert := func(serial string, notAfter time.Time) {
		t.Helper()
		c := &store.Cert{Serial: serial, CN: "x.covalent.example.net", Profile: "covalent", NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter}
		if err := db.InsertCert(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	cert("0a", t0.Add(-time.Hour)) // expired
	cert("0b", t0.Add(time.Hour))  // live
	for _, o := range []order{
		{ID: "stale", Authz: "az-stale", Status: "pending", Expires: t0.Add(-OrderGrace - time.Minute)},
		{ID: "graced", Authz: "az-graced", Status: "pending", Expires: t0.Add(-time.Minute)},
		{ID: "fresh", Authz: "az-fresh", Status: "pending", Expires: t0.Add(time.Hour)},
		{ID: "done-expired", Authz: "az-de", Status: "valid", Serial: "0a", Expires: t0.Add(-48 * time.Hour)},
		{ID: "done-live", Authz: "az-dl", Status: "valid", Serial: "0b", Expires: t0.Add(-48 * time.Hour)},
		{ID: "done-tidied", Authz: "az-dt", Status: "valid", Serial: "0c", Expires: t0.Add(-48 * time.Hour)},
	} {
		put("order", o.ID, o)
		put("authz", o.Authz, authz{ID: o.Authz, Status: "pending", Expires: o.Expires})
	}
	put("cert", "0a", "acct")
	put("cert", "0b", "acct")
	put("replaced", "0a", "0b")
	put("replaced", "0b", "0d")
	put("account", "acct", account{ID: "acct", Status: "valid"})
	put("eab", "k", eabKey{ID: "k"})

	n, err := s.Tidy(ctx, t0, true)
	if err != nil || n == 0 {
		t.Fatalf("dry run: %d, %v", n, err)
	}
	if m, _ := db.ListMeta("acme/order/"); len(m) != 6 {
		t.Fatalf("a dry run removed orders: %d left", len(m))
	}
	n, err = s.Tidy(ctx, t0, false)
	if err != nil {
		t.Fatal(err)
	}
	gone := []string{"order/stale", "authz/az-stale", "order/done-expired", "authz/az-de", "cert/0a",
		"order/done-tidied", "authz/az-dt", "replaced/0a"}
	kept := []string{"order/graced", "authz/az-graced", "order/fresh", "authz/az-fresh", "order/done-live", "authz/az-dl",
		"cert/0b", "replaced/0b", "account/acct", "eab/k"}
	var v any
	for _, k := range gone {
		if err := db.GetMeta("acme/"+k, &v); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("acme/%s not removed (%v)", k, err)
		}
	}
	for _, k := range kept {
		if err := db.GetMeta("acme/"+k, &v); err != nil {
			t.Errorf("acme/%s removed (%v)", k, err)
		}
	}
	if n < len(gone) {
		t.Errorf("Tidy reported %d removals, want at least %d", n, len(gone))
	}
}
