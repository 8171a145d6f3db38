package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCompact(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lanyard.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 150 {
				c := newCert(func(c *Cert) { c.NotAfter = t0.Add(-48 * time.Hour); c.DER = make([]byte, 600) })
				if err := db.InsertCert(ctx, c, nil); err != nil {
					t.Error(err)
				}
			}
			_ = w
		}()
	}
	wg.Wait()
	keep := newCert()
	if err := db.InsertCert(ctx, keep, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Tidy(ctx, TidyRequest{CertsExpiredBefore: t0}); err != nil {
		t.Fatal(err)
	}
	// While the store is open, compact refuses (and changes nothing).
	if _, err := Compact(path, 100*time.Millisecond, false, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("compact of an open store: %v", err)
	}
	db.Close()
	before, _ := os.Stat(path)

	dry, err := Compact(path, time.Second, true, &AuditEvent{Action: "store.compact"})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("a dry run changed the file")
	}
	if dry.After >= dry.Before {
		t.Errorf("dry run: compacted %d ≥ %d bytes", dry.After, dry.Before)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("a dry run left %d files", len(entries))
	}

	res, err := Compact(path, time.Second, false, &AuditEvent{At: t0, Actor: "admin:cli", Action: "store.compact"})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	t.Logf("compacted %d → %d bytes", res.Before, after.Size())
	if after.Size() >= before.Size()/2 || after.Size() != res.After {
		t.Errorf("compacted file is %d bytes (was %d, reported %d)", after.Size(), before.Size(), res.After)
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("compacted file mode %v", after.Mode().Perm())
	}
	db, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("the compacted store does not open: %v", err)
	}
	defer db.Close()
	if _, err := db.GetCert(keep.Serial); err != nil {
		t.Fatalf("compaction lost a record: %v", err)
	}
	if err := db.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
	if evs, _, _ := db.ListAudit(AuditQuery{Action: "store.compact"}); len(evs) != 1 {
		t.Fatalf("%d store.compact audit events, want 1", len(evs))
	}
}
