package restore

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/store"
)

// newCA makes a CA in a temp folder and loads it.
func newCA(t *testing.T) *ca.Authority {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Init(ca.InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	a, err := ca.Load(ca.LoadOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func signedCRL(t *testing.T, a *ca.Authority, number int64, serial string, at time.Time) []byte {
	t.Helper()
	n, _ := new(big.Int).SetString(serial, 16)
	e, err := ca.NewRevokedCert(n, at, 1)
	if err != nil {
		t.Fatal(err)
	}
	der, err := a.SignCRL(ca.CRLRequest{Number: number, ThisUpdate: at, NextUpdate: at.Add(24 * time.Hour), Entries: []*ca.RevokedCert{e}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// newBackup writes a store with one valid certificate and returns its path.
func newBackup(t *testing.T, serial string, now time.Time) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backup.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &store.Cert{Serial: serial, CN: "h.covalent.example.net", Profile: "covalent", NotBefore: now, NotAfter: now.Add(24 * time.Hour), DER: []byte{1}}
	if err := db.InsertCert(context.Background(), c, &store.AuditEvent{At: now, Action: "issue"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	return path
}

func TestRestore(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	mine, other := newCA(t), newCA(t)
	const known, unknown = "0000000000000000000000000000aa01", "0000000000000000000000000000bb02"
	tests := []struct {
		name    string
		crls    []Source
		noCRL   bool
		wantErr string
		check   func(t *testing.T, rep *Report, db *store.DB)
	}{
		{name: "no CRL refused", wantErr: ErrNoCRL.Error()},
		{name: "CRL of another CA refused", crls: []Source{{"other", signedCRL(t, other, 9, known, now)}}, wantErr: "not signed by this CA"},
		{name: "garbage refused", crls: []Source{{"junk", []byte("not a crl")}}, wantErr: "is not a CRL"},
		{name: "revocations and number re-applied", crls: []Source{
			{"a", signedCRL(t, mine, 7, known, now)}, {"b", signedCRL(t, mine, 5, unknown, now)}},
			check: func(t *testing.T, rep *Report, db *store.DB) {
				if len(rep.Revoked) != 1 || len(rep.Placeholders) != 1 || rep.CRLNumberAfter != 7 {
					t.Fatalf("report %+v", rep.RestoreResult)
				}
				for _, s := range []string{known, unknown} {
					c, err := db.GetCert(s)
					if err != nil || c.Revocation == nil {
						t.Errorf("%s not revoked after restore (%v)", s, err)
					}
				}
				if n, err := db.NextCRLNumber(context.Background()); err != nil || n != 8 {
					t.Errorf("next CRL number %d (%v), want 8", n, err)
				}
				if evs, _, _ := db.ListAudit(store.AuditQuery{Action: "restore"}); len(evs) != 1 {
					t.Errorf("%d restore audit events", len(evs))
				}
			}},
		{name: "allow no CRL", noCRL: true, check: func(t *testing.T, rep *Report, db *store.DB) {
			if c, err := db.GetCert(known); err != nil || c.Revocation != nil {
				t.Errorf("record changed without a CRL: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backup := newBackup(t, known, now)
			before, _ := os.ReadFile(backup)
			storePath := filepath.Join(t.TempDir(), "data", "lanyard.db")
			rep, err := Restore(context.Background(), Options{Backup: backup, Store: storePath, CRLs: tt.crls, AllowNoCRL: tt.noCRL,
				Issuers: []*x509.Certificate{mine.Intermediate()}, MaxValidity: 24 * time.Hour, Now: now, Actor: "test"})
			if after, _ := os.ReadFile(backup); string(after) != string(before) {
				t.Error("restore modified the backup file")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if _, serr := os.Stat(storePath); !errors.Is(serr, os.ErrNotExist) {
					t.Errorf("a refused restore wrote %s", storePath)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(storePath, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tt.check(t, rep, db)
		})
	}
}
