package hostdir

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a throwaway issuing CA for the tests.
type testCA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test intermediate"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

var serial atomic.Int64

// issue returns material for a fresh key of the given kind ("ec", "ec-sec1",
// "rsa", "rsa-pkcs1"), with the serial number recorded in the CN.
func (ca *testCA) issue(t testing.TB, kind string) Material {
	t.Helper()
	var (
		signer crypto.Signer
		keyPEM []byte
		err    error
	)
	switch kind {
	case "ec", "ec-sec1":
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			t.Fatal(gerr)
		}
		signer = k
		if kind == "ec" {
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		} else {
			der, _ := x509.MarshalECPrivateKey(k)
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		}
	case "rsa", "rsa-pkcs1":
		k, gerr := rsa.GenerateKey(rand.Reader, 2048)
		if gerr != nil {
			t.Fatal(gerr)
		}
		signer = k
		if kind == "rsa" {
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		} else {
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
		}
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	n := serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000 + n),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("host-%d.covalent.example.net", n)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, signer.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return Material{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ChainPEM: ca.certPEM,
		KeyPEM:   keyPEM,
	}
}

func openTemp(t *testing.T) *Dir {
	t.Helper()
	d, err := Open(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustWrite(t testing.TB, d *Dir, m Material) string {
	t.Helper()
	v, err := d.Write(m)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return v
}

func TestOpenCreatesFolder(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b")
	d, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != DirMode {
		t.Errorf("DIR mode = %v, want %v", got, DirMode)
	}
	if _, err := d.Current(); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("Current on a new folder: %v, want ErrNotEnrolled", err)
	}
	if _, err := d.LoadCurrent(); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("LoadCurrent on a new folder: %v, want ErrNotEnrolled", err)
	}
	if vs, err := d.Versions(); err != nil || len(vs) != 0 {
		t.Errorf("Versions = %v, %v; want none", vs, err)
	}
}

func TestWriteThreeVersions(t *testing.T) {
	ca := newTestCA(t)
	kinds := []string{"ec", "ec-sec1", "ec"}
	d := openTemp(t)
	var mats []Material
	var names []string
	for _, k := range kinds {
		m := ca.issue(t, k)
		mats = append(mats, m)
		names = append(names, mustWrite(t, d, m))
	}
	if want := []string{"000001", "000002", "000003"}; !slices.Equal(names, want) {
		t.Fatalf("versions written = %v, want %v", names, want)
	}
	if vs, _ := d.Versions(); !slices.Equal(vs, names) {
		t.Errorf("Versions = %v, want %v", vs, names)
	}
	cur, err := d.Current()
	if err != nil || cur != "000003" {
		t.Fatalf("Current = %q, %v; want 000003", cur, err)
	}
	if got, _ := os.Readlink(filepath.Join(d.Path, CurrentLink)); got != "versions/000003" {
		t.Errorf("current -> %q, want versions/000003 (relative)", got)
	}
	newest := mats[2]
	full := append(append([]byte{}, newest.CertPEM...), newest.ChainPEM...)
	for _, tc := range []struct {
		name string
		want []byte
		mode os.FileMode
	}{
		{CertFile, newest.CertPEM, CertMode},
		{ChainFile, newest.ChainPEM, CertMode},
		{FullchainFile, full, CertMode},
		{KeyFile, newest.KeyPEM, KeyMode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link := filepath.Join(d.Path, tc.name)
			target, err := os.Readlink(link)
			if err != nil || target != filepath.Join(CurrentLink, tc.name) {
				t.Errorf("%s -> %q, %v; want current/%s", tc.name, target, err, tc.name)
			}
			for _, p := range []string{link, filepath.Join(d.Path, CurrentLink, tc.name), filepath.Join(d.VersionPath("000003"), tc.name)} {
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Errorf("%s: content differs from version 3 (err %v)", p, err)
				}
			}
			for _, v := range names {
				fi, err := os.Stat(filepath.Join(d.VersionPath(v), tc.name))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tc.mode {
					t.Errorf("version %s %s mode = %v, want %v", v, tc.name, fi.Mode().Perm(), tc.mode)
				}
			}
		})
	}
	for _, v := range names {
		fi, err := os.Stat(d.VersionPath(v))
		if err != nil || fi.Mode().Perm() != VersionMode {
			t.Errorf("version folder %s mode = %v (%v), want %v", v, fi.Mode().Perm(), err, VersionMode)
		}
	}
	// Load(version) returns that version's matching cert and key.
	for i, v := range names {
		ver, err := d.Load(v)
		if err != nil {
			t.Fatalf("Load(%s): %v", v, err)
		}
		if !bytes.Equal(ver.CertPEM, mats[i].CertPEM) || !bytes.Equal(ver.KeyPEM, mats[i].KeyPEM) {
			t.Errorf("Load(%s) returned another version's files", v)
		}
		if !ver.Cert.PublicKey.(*ecdsa.PublicKey).Equal(ver.Key.Public()) {
			t.Errorf("Load(%s): cert and key do not match", v)
		}
		if len(ver.Chain) != 1 || !ver.Chain[0].Equal(ca.cert) {
			t.Errorf("Load(%s): chain = %d certs, want the intermediate", v, len(ver.Chain))
		}
		if ver.Name != v || ver.Path != d.VersionPath(v) {
			t.Errorf("Load(%s): Name %q Path %q", v, ver.Name, ver.Path)
		}
	}
	// A second Open of the same folder sees the same state and changes nothing.
	d2, err := Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if vs, _ := d2.Versions(); !slices.Equal(vs, names) {
		t.Errorf("after re-Open Versions = %v", vs)
	}
}

func TestKeyFormatsAndTypeChange(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name      string
		first     string
		second    string
		allow     bool
		wantErr   error
		wantFinal string
	}{
		{"ec pkcs8 then sec1", "ec", "ec-sec1", false, nil, "000002"},
		{"rsa pkcs8 then pkcs1", "rsa", "rsa-pkcs1", false, nil, "000002"},
		{"ec to rsa refused", "ec", "rsa", false, ErrKeyTypeChanged, "000001"},
		{"rsa to ec refused", "rsa-pkcs1", "ec", false, ErrKeyTypeChanged, "000001"},
		{"ec to rsa allowed", "ec", "rsa", true, nil, "000002"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := openTemp(t)
			d.AllowKeyTypeChange = tc.allow
			mustWrite(t, d, ca.issue(t, tc.first))
			_, err := d.Write(ca.issue(t, tc.second))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("second Write: %v, want %v", err, tc.wantErr)
			}
			if cur, _ := d.Current(); cur != tc.wantFinal {
				t.Errorf("current = %s, want %s", cur, tc.wantFinal)
			}
			if _, err := d.LoadCurrent(); err != nil {
				t.Errorf("LoadCurrent: %v", err)
			}
		})
	}
}

func TestWriteRefusesBadMaterial(t *testing.T) {
	ca := newTestCA(t)
	good := ca.issue(t, "ec")
	other := ca.issue(t, "ec")
	ed := func() []byte {
		_, k, _ := ed25519Key()
		return k
	}()
	tests := []struct {
		name string
		m    Material
		want error
	}{
		{"cert of another key", Material{CertPEM: good.CertPEM, ChainPEM: good.ChainPEM, KeyPEM: other.KeyPEM}, ErrMismatch},
		{"empty cert", Material{KeyPEM: good.KeyPEM}, ErrInvalidMaterial},
		{"two certs in cert.pem", Material{CertPEM: append(append([]byte{}, good.CertPEM...), ca.certPEM...), KeyPEM: good.KeyPEM}, ErrInvalidMaterial},
		{"garbage cert", Material{CertPEM: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), KeyPEM: good.KeyPEM}, ErrInvalidMaterial},
		{"truncated cert", Material{CertPEM: good.CertPEM[:len(good.CertPEM)/2], KeyPEM: good.KeyPEM}, ErrInvalidMaterial},
		{"key in chain", Material{CertPEM: good.CertPEM, ChainPEM: good.KeyPEM, KeyPEM: good.KeyPEM}, ErrInvalidMaterial},
		{"no key", Material{CertPEM: good.CertPEM}, ErrInvalidMaterial},
		{"two keys", Material{CertPEM: good.CertPEM, KeyPEM: append(append([]byte{}, good.KeyPEM...), other.KeyPEM...)}, ErrInvalidMaterial},
		{"cert as key", Material{CertPEM: good.CertPEM, KeyPEM: good.CertPEM}, ErrInvalidMaterial},
		{"ed25519 key", Material{CertPEM: good.CertPEM, KeyPEM: ed}, ErrUnsupportedKey},
	}
	d := openTemp(t)
	first := mustWrite(t, d, ca.issue(t, "ec"))
	before := snapshot(t, d.Path)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := d.Write(tc.m)
			if !errors.Is(err, tc.want) || v != "" {
				t.Fatalf("Write = %q, %v; want error %v", v, err, tc.want)
			}
			if cur, _ := d.Current(); cur != first {
				t.Errorf("current = %s, want %s", cur, first)
			}
			if after := snapshot(t, d.Path); !slices.Equal(before, after) {
				t.Errorf("folder changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func ed25519Key() (crypto.PublicKey, []byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	return pub, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), err
}

// snapshot lists every path under root with its link target or size.
func snapshot(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == LockFile {
			return nil
		}
		desc := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size())
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out = append(out, desc)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConcurrentReaders: readers resolving current in a tight loop while 200
// versions are written never see a certificate that does not match its key.
func TestConcurrentReaders(t *testing.T) {
	const versions = 200
	ca := newTestCA(t)
	d := openTemp(t)
	mats := make([]Material, versions)
	for i := range mats {
		mats[i] = ca.issue(t, "ec")
	}
	mustWrite(t, d, mats[0])

	var (
		stop  atomic.Bool
		reads atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	seen := make([]sync.Map, 4)
	for r := range 4 {
		wg.Go(func() {
			for !stop.Load() {
				v, err := d.LoadCurrent()
				if err == nil && !v.Cert.PublicKey.(*ecdsa.PublicKey).Equal(v.Key.Public()) {
					err = fmt.Errorf("version %s: certificate does not match key", v.Name)
				}
				if err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					return
				}
				// The Certbot-style links too must always resolve to something whole.
				if _, err := os.ReadFile(filepath.Join(d.Path, KeyFile)); err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					return
				}
				seen[r].Store(v.Name, true)
				reads.Add(1)
			}
		})
	}
	for _, m := range mats[1:] {
		mustWrite(t, d, m)
	}
	stop.Store(true)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	distinct := 0
	seen[0].Range(func(any, any) bool { distinct++; return true })
	t.Logf("%d versions written, %d reads, reader 0 saw %d distinct versions", versions, reads.Load(), distinct)
	if cur, _ := d.Current(); cur != fmt.Sprintf("%06d", versions) {
		t.Errorf("current = %s, want %06d", cur, versions)
	}
}

func TestOpenRefusesBrokenLayout(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, p string)
	}{
		{"versions is a file", func(t *testing.T, p string) {
			must(t, os.MkdirAll(p, 0o700))
			must(t, os.WriteFile(filepath.Join(p, VersionsDir), nil, 0o600))
		}},
		{"DIR is a file", func(t *testing.T, p string) {
			must(t, os.WriteFile(p, nil, 0o600))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "pki")
			tc.setup(t, p)
			if _, err := Open(p); err == nil {
				t.Fatal("Open succeeded on a broken layout")
			}
		})
	}
}

func TestCurrentRejectsForeignTargets(t *testing.T) {
	tests := []struct{ target string }{
		{"/etc"}, {"versions/../../etc"}, {"versions/abc"}, {"elsewhere/000001"}, {"versions/12"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			d := openTemp(t)
			must(t, os.Symlink(tc.target, filepath.Join(d.Path, CurrentLink)))
			if _, err := d.Current(); !errors.Is(err, ErrInvalidVersion) {
				t.Errorf("Current: %v, want ErrInvalidVersion", err)
			}
		})
	}
	d := openTemp(t)
	for _, v := range []string{"", "..", "../versions/000001", "00001", "000001/"} {
		if _, err := d.Load(v); !errors.Is(err, ErrInvalidVersion) {
			t.Errorf("Load(%q): %v, want ErrInvalidVersion", v, err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefusesUnsafeFolder is issue 9 item 9: a host folder, versions
// folder or version folder planted as a symlink, owned by someone else or
// writable by group or others is refused, and nothing is written through
// it; a .lock planted as a symlink is not followed.
func TestOpenRefusesUnsafeFolder(t *testing.T) {
	ca := newTestCA(t)
	mat := ca.issue(t, "ec")
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, elsewhere string) // dir does not exist yet
		write bool                                      // Open or Write fails, not necessarily with ErrUnsafe
	}{
		{"host folder is a symlink", func(t *testing.T, dir, elsewhere string) {
			must(t, os.Symlink(elsewhere, dir))
		}, false},
		{"versions is a symlink", func(t *testing.T, dir, elsewhere string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Symlink(elsewhere, filepath.Join(dir, VersionsDir)))
		}, false},
		{"host folder group-writable", func(t *testing.T, dir, _ string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chmod(dir, 0o770))
		}, false},
		{"host folder world-writable", func(t *testing.T, dir, _ string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chmod(dir, 0o777))
		}, false},
		{"versions world-writable", func(t *testing.T, dir, _ string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Mkdir(filepath.Join(dir, VersionsDir), 0o755))
			must(t, os.Chmod(filepath.Join(dir, VersionsDir), 0o777))
		}, false},
		{"host folder owned by another user", func(t *testing.T, dir, _ string) {
			if os.Geteuid() != 0 {
				t.Skip("giving a folder to another user needs root (CI runs as root)")
			}
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chown(dir, 65534, 65534))
		}, false},
		{".lock is a symlink", func(t *testing.T, dir, elsewhere string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Symlink(filepath.Join(elsewhere, "planted"), filepath.Join(dir, LockFile)))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir, elsewhere := filepath.Join(root, "pki"), filepath.Join(root, "attacker")
			must(t, os.Mkdir(elsewhere, 0o700))
			tt.setup(t, dir, elsewhere)
			d, err := Open(dir)
			if tt.write {
				if err == nil {
					_, err = d.Write(mat)
				}
				if err == nil {
					t.Fatal("Open and Write through a planted .lock succeeded")
				}
			} else if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("Open = %v, want ErrUnsafe", err)
			}
			if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
				t.Fatalf("written through the planted link: %v", entries)
			}
			if tt.write {
				return
			}
			if err := CheckSafe(dir); !errors.Is(err, ErrUnsafe) {
				t.Errorf("CheckSafe = %v, want ErrUnsafe", err)
			}
		})
	}
	t.Run("version folder is a symlink", func(t *testing.T) {
		d := openTemp(t)
		mustWrite(t, d, mat)
		elsewhere := t.TempDir()
		v := d.VersionPath("000001")
		must(t, os.Rename(v, filepath.Join(elsewhere, "000001")))
		must(t, os.Symlink(filepath.Join(elsewhere, "000001"), v))
		if _, err := d.LoadCurrent(); !errors.Is(err, ErrUnsafe) {
			t.Fatalf("LoadCurrent = %v, want ErrUnsafe", err)
		}
		if err := CheckSafe(d.Path); !errors.Is(err, ErrUnsafe) {
			t.Errorf("CheckSafe = %v, want ErrUnsafe", err)
		}
	})
	t.Run("a safe folder passes", func(t *testing.T) {
		d := openTemp(t)
		mustWrite(t, d, mat)
		must(t, os.Chmod(d.Path, 0o750)) // a group may read the certificates
		if err := CheckSafe(d.Path); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(d.Path); err != nil {
			t.Fatal(err)
		}
	})
}

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
