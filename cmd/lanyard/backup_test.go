package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// fillStore writes n certificate records of size bytes of random DER each
// (incompressible) into the bbolt store at path, 64 writers at once so
// group commit makes it quick.
func fillStore(t *testing.T, path string, n, size int) {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			der := make([]byte, size)
			for i := w; i < n; i += 64 {
				_, _ = rand.Read(der)
				rec := &store.Cert{Serial: fmt.Sprintf("%032x", i+1), CN: fmt.Sprintf("fill%d.covalent.example.net", i), Profile: "covalent",
					KeyType: "P-256", NotBefore: now, NotAfter: now.Add(24 * time.Hour), IssuedAt: now, DER: der}
				if err := db.InsertCert(context.Background(), rec, &store.AuditEvent{At: now, Actor: "test", Action: "fill", Subject: rec.Serial}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestOnlineBackupOfALargeStore: a store of some 300 MB is copied through
// the running server, whose write timeout (here 200 ms) is far shorter
// than the transfer; the copy is whole, opens as a store and holds the
// records. The old handler ran under the write timeout and broke off.
func TestOnlineBackupOfALargeStore(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 300 MB store: make test runs it, make test-quick (-short) does not")
	}
	dir := t.TempDir()
	const n, size = 3600, 64 << 10
	fillStore(t, filepath.Join(dir, "lanyard.db"), n, size)
	c := testca.Start(t, testca.Options{Dir: dir, Server: func(o *server.Options) { o.WriteTimeout = 200 * time.Millisecond }})
	dst := filepath.Join(t.TempDir(), "backup.db")
	got, err := downloadBackup(context.Background(), c.Admin.HTTP, c.URL, dst)
	if err != nil {
		t.Fatal(err)
	}
	if got < n*size {
		t.Fatalf("backup of %d bytes, want at least %d", got, n*size)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Size() != got || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", fi, err)
	}
	db, err := store.Open(dst, store.Options{NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, i := range []int{1, n / 2, n} {
		if _, err := db.GetCert(fmt.Sprintf("%032x", i)); err != nil {
			t.Fatalf("record %d in the backup: %v", i, err)
		}
	}
	t.Logf("online backup: %d MB", got>>20)
}

// TestOnlineBackupFailureLeavesNothing: whatever goes wrong on the way
// (the transfer breaks off, the server never confirms the copy, the
// bytes are whole but no store), the command fails saying so, an
// existing FILE is untouched and no partial file is left beside it.
func TestOnlineBackupFailureLeavesNothing(t *testing.T) {
	// good is a real backup stream (exactly the store's used size).
	p := filepath.Join(t.TempDir(), "s.db")
	fillStore(t, p, 4, 1<<10)
	db, err := store.Open(p, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := db.BackupTo(&buf); err != nil {
		t.Fatal(err)
	}
	db.Close()
	good := buf.Bytes()
	digest := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	for _, tc := range []struct {
		name    string
		body    []byte
		trailer string // "" for none
		abort   bool   // break the response off after the body
		wantErr string
	}{
		{"broken off", good[:len(good)/2], "", true, "transfer broke off"},
		{"no digest", good, "", false, "no digest trailer"},
		{"wrong digest", good, digest([]byte("other")), false, "is not the server's"},
		{"not a store", []byte(strings.Repeat("not a bbolt file ", 4096)), digest([]byte(strings.Repeat("not a bbolt file ", 4096))), false, "not a sound store"},
		{"truncated store", good[:len(good)-4096], digest(good[:len(good)-4096]), false, "not a sound store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", server.BackupDigestTrailer)
				w.Header().Set("Content-Length", fmt.Sprint(len(good)))
				if tc.abort {
					_, _ = w.Write(tc.body)
					panic(http.ErrAbortHandler)
				}
				w.Header().Del("Content-Length")
				_, _ = w.Write(tc.body)
				if tc.trailer != "" {
					w.Header().Set(server.BackupDigestTrailer, tc.trailer)
				}
			}))
			defer srv.Close()
			folder := t.TempDir()
			dst := filepath.Join(folder, "backup.db")
			if err := os.WriteFile(dst, []byte("yesterday's backup"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := downloadBackup(context.Background(), srv.Client(), srv.URL, dst)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if b, _ := os.ReadFile(dst); string(b) != "yesterday's backup" {
				t.Fatalf("the existing backup was changed: %.40q", b)
			}
			if ents, _ := os.ReadDir(folder); len(ents) != 1 {
				t.Fatalf("files left in the folder: %v", ents)
			}
		})
	}
}
