package hostdir

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnrollment(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := ReadEnrollment(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadEnrollment of a folder never enrolled: %v, want fs.ErrNotExist", err)
	}
	want := &Enrollment{CA: "https://ca.example.net:8443", KeyType: "P-384", AWS: &AWSSettings{Profile: "p", Signer: "lanyard"}}
	roots := []byte("-----BEGIN CERTIFICATE-----\n")
	for range 2 { // the second write replaces the first
		must(t, WriteEnrollment(dir, want, roots))
	}
	got, gotRoots, err := ReadEnrollment(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.CA != want.CA || got.KeyType != want.KeyType || got.AWS == nil || *got.AWS != *want.AWS || !bytes.Equal(gotRoots, roots) {
		t.Fatalf("read back %+v %q, want %+v %q", got, gotRoots, want, roots)
	}
	for name, mode := range map[string]os.FileMode{EnrollmentFile: 0o600, RootsFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("folder holds %v, want only %s and %s", entries, EnrollmentFile, RootsFile)
	}
	must(t, os.WriteFile(filepath.Join(dir, EnrollmentFile), []byte("{"), 0o600))
	if _, err := ReadEnrollmentFile(dir); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("a torn enrollment.json: %v", err)
	}
	if err := WriteRoots(filepath.Join(dir, "missing"), roots); err == nil {
		t.Error("WriteRoots into a missing folder succeeded")
	}
}
