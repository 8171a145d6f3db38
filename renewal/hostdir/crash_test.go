package hostdir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestOpenCleansUpCrash: what an agent killed mid-write leaves behind is
// removed by the next Open, and current stays valid.
func TestOpenCleansUpCrash(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, d *Dir)
		gone  []string // relative paths that must not survive Open
	}{
		{"half-written temp folder", func(t *testing.T, d *Dir) {
			tmp := filepath.Join(d.Path, VersionsDir, ".tmp-x")
			must(t, os.Mkdir(tmp, 0o700))
			must(t, os.WriteFile(filepath.Join(tmp, CertFile), []byte("-----BEGIN CERT"), 0o644))
		}, []string{"versions/.tmp-x"}},
		{"dangling temp symlink for current", func(t *testing.T, d *Dir) {
			must(t, os.Symlink("versions/000009", filepath.Join(d.Path, ".tmp-current-abc")))
		}, []string{".tmp-current-abc"}},
		{"temp symlink pointing at a real version", func(t *testing.T, d *Dir) {
			must(t, os.Symlink("versions/000001", filepath.Join(d.Path, ".tmp-cert.pem-1")))
		}, []string{".tmp-cert.pem-1"}},
		{"temp file of an atomic write", func(t *testing.T, d *Dir) {
			must(t, os.WriteFile(filepath.Join(d.Path, ".tmp-state-123"), []byte("x"), 0o600))
		}, []string{".tmp-state-123"}},
		{"complete version never swapped in", func(t *testing.T, d *Dir) {
			// Killed between renaming the folder and swapping current.
			must(t, d.writeVersion("000003", ca.issue(t, "ec")))
		}, []string{"versions/000003"}},
		{"missing Certbot link", func(t *testing.T, d *Dir) {
			must(t, os.Remove(filepath.Join(d.Path, FullchainFile)))
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := openTemp(t)
			mustWrite(t, d, ca.issue(t, "ec"))
			want := mustWrite(t, d, ca.issue(t, "ec"))
			tc.setup(t, d)

			d2, err := Open(d.Path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			for _, g := range tc.gone {
				if _, err := os.Lstat(filepath.Join(d.Path, g)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s survived Open (err %v)", g, err)
				}
			}
			v, err := d2.LoadCurrent()
			if err != nil || v.Name != want {
				t.Fatalf("LoadCurrent = %v, %v; want %s", v, err, want)
			}
			for _, name := range linkNames {
				if _, err := os.ReadFile(filepath.Join(d.Path, name)); err != nil {
					t.Errorf("link %s: %v", name, err)
				}
			}
			if vs, _ := d2.Versions(); !slices.Equal(vs, []string{"000001", "000002"}) {
				t.Errorf("Versions = %v", vs)
			}
			// And the next write continues the sequence.
			if got := mustWrite(t, d2, ca.issue(t, "ec")); got != "000003" {
				t.Errorf("next version = %s, want 000003", got)
			}
		})
	}
}

// TestOpenLeavesOtherWritersAlone: while another writer holds the lock, Open
// does not clean (the temp folder may be that writer's work in progress).
func TestOpenLeavesOtherWritersAlone(t *testing.T) {
	d := openTemp(t)
	tmp := filepath.Join(d.Path, VersionsDir, ".tmp-inflight")
	must(t, os.Mkdir(tmp, 0o700))
	unlock, err := lockFile(filepath.Join(d.Path, LockFile), true)
	must(t, err)
	// flock locks belong to the open file description, so a second open in
	// this process conflicts just like another process would.
	if _, err := Open(d.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("Open removed a folder while another writer held the lock: %v", err)
	}
	unlock()
	if _, err := Open(d.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open did not clean once the lock was free: %v", err)
	}
}

// TestWriteFailureKeepsPrevious: a failing write (injected at each step, and
// a real EFBIG from RLIMIT_FSIZE, which root cannot bypass) leaves the
// previous version current and no debris.
func TestWriteFailureKeepsPrevious(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name   string
		inject func(d *Dir) (restore func())
	}{
		{"fail writing a file", failAt("write-file")},
		{"fail renaming the version folder", failAt("rename-version")},
		{"fail swapping current", failAt("swap")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := openTemp(t)
			first := ca.issue(t, "ec")
			prev := mustWrite(t, d, first)
			before := snapshot(t, d.Path)
			m := ca.issue(t, "ec")

			restore := tc.inject(d)
			v, err := d.Write(m)
			restore()

			if err == nil || v != "" {
				t.Fatalf("Write = %q, %v; want an error", v, err)
			}
			t.Logf("error: %v", err)
			checkFailedWrite(t, d, prev, first, before, m)
		})
	}
}

// checkFailedWrite checks what a failed Write of m must leave: version
// prev (holding first) still current, the folder as snapshot before it
// (no debris), and a folder that still works (m then writes 000002).
func checkFailedWrite(t *testing.T, d *Dir, prev string, first Material, before []string, m Material) {
	t.Helper()
	cur, err := d.LoadCurrent()
	if err != nil || cur.Name != prev || !bytes.Equal(cur.CertPEM, first.CertPEM) {
		t.Fatalf("after failure current = %v, %v; want %s", cur, err, prev)
	}
	if after := snapshot(t, d.Path); !slices.Equal(before, after) {
		t.Errorf("debris left:\nbefore %v\nafter  %v", before, after)
	}
	if got := mustWrite(t, d, m); got != "000002" {
		t.Errorf("next version = %s, want 000002", got)
	}
}

func failAt(step string) func(d *Dir) func() {
	return func(d *Dir) func() {
		d.failpoint = func(s string) error {
			if s == step {
				return fmt.Errorf("injected failure at %s: %w", s, syscall.ENOSPC)
			}
			return nil
		}
		return func() { d.failpoint = nil }
	}
}

// TestWriteFailsOnRealFileSizeLimit makes writing really fail under root:
// a child process with RLIMIT_FSIZE below any PEM file gets EFBIG from
// write(2), as on a full disk. (The limit is per process, so it runs in a
// child: in this process it would also break the test framework's own log.)
func TestWriteFailsOnRealFileSizeLimit(t *testing.T) {
	ca := newTestCA(t)
	d := openTemp(t)
	first := ca.issue(t, "ec")
	prev := mustWrite(t, d, first)
	before := snapshot(t, d.Path)
	m := ca.issue(t, "ec")
	in := filepath.Join(t.TempDir(), "m")
	must(t, os.Mkdir(in, 0o700))
	must(t, os.WriteFile(filepath.Join(in, CertFile), m.CertPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(in, ChainFile), m.ChainPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(in, KeyFile), m.KeyPEM, 0o600))

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "HOSTDIR_HELPER_DIR="+d.Path, "HOSTDIR_HELPER_IN="+in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("file too large")) {
		t.Fatalf("helper did not report EFBIG:\n%s", out)
	}
	t.Logf("helper output:\n%s", out)

	checkFailedWrite(t, d, prev, first, before, m)
}

// TestMain runs the test binary as the file-size-limited child of
// TestWriteFailsOnRealFileSizeLimit when HOSTDIR_HELPER_DIR is set, and
// the tests otherwise.
func TestMain(m *testing.M) {
	if dir := os.Getenv("HOSTDIR_HELPER_DIR"); dir != "" {
		if err := writeUnderFileSizeLimit(dir, os.Getenv("HOSTDIR_HELPER_IN")); err != nil {
			fmt.Println("helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// writeUnderFileSizeLimit writes one version with RLIMIT_FSIZE below any
// PEM file's size; the write must fail (EFBIG) and the error is printed.
func writeUnderFileSizeLimit(dir, in string) error {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(in, name)) }
	var m Material
	var err error
	if m.CertPEM, err = read(CertFile); err != nil {
		return err
	}
	if m.ChainPEM, err = read(ChainFile); err != nil {
		return err
	}
	if m.KeyPEM, err = read(KeyFile); err != nil {
		return err
	}
	d, err := Open(dir)
	if err != nil {
		return err
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return err
	}
	lim.Cur = 64 // smaller than any PEM file
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return err
	}
	if v, err := d.Write(m); err == nil {
		return fmt.Errorf("Write under RLIMIT_FSIZE succeeded: %s", v)
	} else {
		fmt.Println("write error:", err)
	}
	return nil
}
