package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWrite(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := Write(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("read %q %v, want %q", b, err, content)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
			t.Fatalf("mode %v despite the umask, want 0644", fi.Mode().Perm())
		}
	}
	// A failing producer leaves the old content and no temporary file.
	boom := errors.New("boom")
	if err := WriteFunc(p, 0o600, func(w io.Writer) error { _, _ = w.Write([]byte("partial")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("after a failed write: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
	// Into a missing folder: an error, nothing created.
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("write into a missing folder succeeded")
	}
}

func TestCreateNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := Create(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(p, []byte("second"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Fatalf("content %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("entries %v", entries)
	}
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
}

func TestPending(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "store.db")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	fill := func(t *testing.T, p *Pending, s string) {
		t.Helper()
		if err := os.WriteFile(p.Name(), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Discarded: the destination is as it was and nothing is left.
	p, err := Prepare(dest, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(p.Name()), TempPrefix) || filepath.Dir(p.Name()) != dir {
		t.Fatalf("prepared file %s: want %s* beside the destination", p.Name(), TempPrefix)
	}
	fill(t, p, "half")
	p.Discard()
	if b, _ := os.ReadFile(dest); string(b) != "old" {
		t.Fatalf("after Discard the destination holds %q", b)
	}
	if _, err := os.Stat(p.Name()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Discard the prepared file: %v", err)
	}
	// Committed: the new content under the destination's name, mode exact.
	p, err = Prepare(dest, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Discard()
	fill(t, p, "new")
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	p.Discard() // after Commit: removes nothing
	if b, _ := os.ReadFile(dest); string(b) != "new" {
		t.Fatalf("after Commit the destination holds %q", b)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode().Perm())
	}
	if _, err := Prepare(filepath.Join(dir, "missing", "f"), 0o600); err == nil {
		t.Fatal("Prepare in a missing folder succeeded")
	}
}
