package admin

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// newService builds the service on a real bbolt store holding one
// certificate, and returns both.
func newService(t *testing.T) (*Service, *store.DB, *store.Cert) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "lanyard.db"), store.Options{NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &store.Cert{Serial: "0123456789abcdef0123456789abcdef", CN: "a.covalent.example.net", Profile: "covalent",
		KeyType: "P-256", NotBefore: t0, NotAfter: t0.Add(24 * time.Hour), IssuedAt: t0, DER: []byte{1}}
	if err := db.InsertCert(context.Background(), c, nil); err != nil {
		t.Fatal(err)
	}
	return New(Config{Store: db, Now: func() time.Time { return t0 }}), db, c
}

func TestListCertificates(t *testing.T) {
	tests := []struct {
		name    string
		q       CertQuery
		want    int
		wantErr error
	}{
		{"by serial", CertQuery{Serial: "0123456789abcdef0123456789abcdef"}, 1, nil},
		{"by serial, filtered out by CN", CertQuery{Serial: "0123456789abcdef0123456789abcdef", CNPrefix: "b."}, 0, nil},
		{"by serial, filtered out by status", CertQuery{Serial: "0123456789abcdef0123456789abcdef", Status: store.StatusRevoked}, 0, nil},
		{"unknown serial: empty, not an error", CertQuery{Serial: "00ff"}, 0, nil},
		{"search", CertQuery{CNPrefix: "a."}, 1, nil},
		{"damaged page token", CertQuery{After: "not-hex"}, 0, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newService(t)
			got, _, err := s.ListCertificates(tc.q)
			if !errors.Is(err, tc.wantErr) || len(got) != tc.want {
				t.Fatalf("got %d, err %v; want %d, %v", len(got), err, tc.want, tc.wantErr)
			}
		})
	}
}

// A store that fails is reported, by serial as by search: the Connect
// handler used to answer an empty list when the serial lookup failed,
// while the web page reported the error.
func TestListCertificatesReportsStoreErrors(t *testing.T) {
	for _, q := range []CertQuery{{Serial: "0123456789abcdef0123456789abcdef"}, {CNPrefix: "a."}} {
		s, db, _ := newService(t)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if got, _, err := s.ListCertificates(q); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("%+v on a closed store: %d certificates, err %v; want the store's error", q, len(got), err)
		}
	}
}

func TestRevokeToken(t *testing.T) {
	s, db, _ := newService(t)
	ctx := context.Background()
	if err := s.RevokeToken(ctx, "0011", "admin:test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v, want ErrNotFound", err)
	}
	tok := &store.Token{ID: "0022", Hash: make([]byte, 32), CN: "a", Profile: "covalent", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := db.PutToken(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "0022", "admin:test"); err != nil {
		t.Fatal(err)
	}
	evs, _, err := s.ListAudit(store.AuditQuery{Action: AuditTokenRevoke})
	if err != nil || len(evs) != 1 || evs[0].Actor != "admin:test" || evs[0].Subject != "0022" {
		t.Fatalf("audit %+v, %v", evs, err)
	}
	if toks, err := s.ListTokens(); err != nil || len(toks) != 0 {
		t.Fatalf("unused tokens after revoking the only one: %d, %v", len(toks), err)
	}
}
