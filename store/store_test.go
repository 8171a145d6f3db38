package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

var serialCounter atomic.Uint64

// newCert builds a record with sensible defaults; opts override.
func newCert(opts ...func(*Cert)) *Cert {
	n := serialCounter.Add(1)
	c := &Cert{
		Serial:    fmt.Sprintf("%016x%016x", uint64(t0.UnixNano())+n, n),
		CN:        fmt.Sprintf("host%d.covalent.example.net", n),
		Profile:   "covalent",
		NotBefore: t0,
		NotAfter:  t0.Add(24 * time.Hour),
		IssuedAt:  t0,
		DER:       []byte{1, 2, 3},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func TestReopenKeepsRecordsAndCRLNumber(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanyard.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := newCert()
	if err := db.InsertCert(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	n1, _ := db.NextCRLNumber(ctx)
	db.Close()
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.GetCert(c.Serial); err != nil {
		t.Fatalf("record lost across reopen: %v", err)
	}
	if n2, _ := db.NextCRLNumber(ctx); n2 != n1+1 {
		t.Fatalf("CRL number %d after %d", n2, n1)
	}
	if _, err := db.GetCert(hex.EncodeToString([]byte("zz"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown serial: %v", err)
	}
}

// TestOpenRefusesAURL: a postgres:// URL handed to the bbolt engine (a
// command that opened cfg.Store with store.Open instead of store/engine)
// used to create a folder named "postgres:" in the working directory with
// a new, empty store in it, so `lanyard ca status` on a PostgreSQL
// deployment counted no live certificates and `ca rotate-intermediate`
// audited into that file. It is refused, and nothing is created.
func TestOpenRefusesAURL(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_, err := Open("postgres://lanyard@db1/lanyard?sslmode=verify-full", Options{})
	if !errors.Is(err, ErrNotAPath) {
		t.Fatalf("Open(URL) = %v, want %v", err, ErrNotAPath)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Open(URL) created %v", ents)
	}
}
