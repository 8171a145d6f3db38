package revocation

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newAuthority creates and loads a real CA of keyType ("" = P-256).
func newAuthority(t testing.TB, keyType string) *ca.Authority {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Init(ca.InitOptions{Dir: dir, KeyType: keyType}); err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	a, err := ca.Load(ca.LoadOptions{Dir: dir})
	if err != nil {
		t.Fatalf("ca.Load: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func openStore(t testing.TB, path string) store.Store {
	t.Helper()
	db, err := store.Open(path, store.Options{Logger: quiet})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	return db
}

// env is one Service on a real store and a real CA.
type env struct {
	t     testing.TB
	clock *clock.Fake
	auth  *ca.Authority
	path  string
	db    store.Store
	svc   *Service
	cfg   Config
}

// newEnv opens a store and a Service; mod adjusts the Config.
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: clock.NewFake(time.Now().UTC().Truncate(time.Second)), auth: newAuthority(t, ""), path: filepath.Join(t.TempDir(), "lanyard.db")}
	e.db = openStore(t, e.path)
	e.cfg = Config{Store: e.db, Signer: e.auth, Now: e.clock.Now, Coalesce: -1, Logger: quiet}
	if mod != nil {
		mod(&e.cfg)
	}
	svc, err := New(e.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.svc = svc
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	if e.svc != nil {
		e.svc.Close()
		e.svc = nil
	}
	if e.db != nil {
		e.db.Close()
		e.db = nil
	}
}

// restart closes the Service and the store and opens both again.
func (e *env) restart() {
	e.t.Helper()
	e.close()
	e.db = openStore(e.t, e.path)
	e.cfg.Store = e.db
	svc, err := New(e.cfg)
	if err != nil {
		e.t.Fatalf("New after restart: %v", err)
	}
	e.svc = svc
}

// randomSerial is a lanyard serial: 32 hex digits.
func randomSerial(t testing.TB) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b[:])
}

// addCert records a certificate of cn valid for ttl from the clock's now.
func (e *env) addCert(cn string, ttl time.Duration) *store.Cert {
	e.t.Helper()
	return addCertTo(e.t, e.db, randomSerial(e.t), cn, e.clock.Now(), ttl)
}

func addCertTo(t testing.TB, db store.Store, serial, cn string, now time.Time, ttl time.Duration) *store.Cert {
	t.Helper()
	c := &store.Cert{
		Serial: serial, CN: cn, Profile: "covalent", KeyType: "P-256",
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(ttl), IssuedAt: now,
		DER: make([]byte, 600),
	}
	if err := db.InsertCert(context.Background(), c, nil); err != nil {
		t.Fatalf("InsertCert: %v", err)
	}
	return c
}

func (e *env) revoke(req Request) *Result {
	e.t.Helper()
	if req.By == "" {
		req.By = "admin:test"
	}
	res, err := e.svc.Revoke(context.Background(), req)
	if err != nil {
		e.t.Fatalf("Revoke(%+v): %v", req, err)
	}
	return res
}

// parse parses and verifies a CRL against the intermediate.
func parse(t testing.TB, auth *ca.Authority, der []byte) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := rl.CheckSignatureFrom(auth.Intermediate()); err != nil {
		t.Fatalf("CRL signature does not verify against the intermediate: %v", err)
	}
	return rl
}

// listed maps the serials of a CRL (32 hex digits) to their entries.
func listed(rl *x509.RevocationList) map[string]x509.RevocationListEntry {
	m := make(map[string]x509.RevocationListEntry, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		m[fmt.Sprintf("%032x", e.SerialNumber)] = e
	}
	return m
}

func auditCount(t testing.TB, db store.Store) int {
	t.Helper()
	evs, _, err := db.ListAudit(store.AuditQuery{Action: AuditAction, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func crlNumber(t testing.TB, db store.Store) int64 {
	t.Helper()
	n, err := db.CRLNumber()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
