package ca

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestImportRoundTrip(t *testing.T) {
	t.Parallel()
	srcPass := []byte("source")
	tests := []struct {
		name    string
		keyType string
		srcPass []byte // the key handed to Import is encrypted with this
		dstPass []byte // Import's passphrase
	}{
		{"encrypted key, kept encrypted", "P-256", srcPass, srcPass},
		{"plain key, encrypted on import", "P-384", nil, []byte("new")},
		{"plain key, kept plain", "RSA-2048", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src, srcCA := newCA(t, InitOptions{KeyType: tt.keyType, Passphrase: tt.srcPass})
			rootPEM, _ := os.ReadFile(src.RootCert)
			intPEM, _ := os.ReadFile(src.IntermediateCert)
			keyPEM, _ := os.ReadFile(src.IntermediateKey)

			dir := filepath.Join(t.TempDir(), "imported")
			p, err := Import(dir, rootPEM, intPEM, keyPEM, tt.dstPass, time.Now())
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if p.RootKey != "" {
				t.Errorf("Paths.RootKey = %q after import", p.RootKey)
			}
			if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("root.key exists after import")
			}
			for _, k := range []string{p.IntermediateKey, p.AdminKey} {
				if st, err := os.Stat(k); err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("%s: %v", k, err)
				}
			}
			written, _ := os.ReadFile(p.IntermediateKey)
			if got := isEncryptedPEM(written); got != (tt.dstPass != nil) {
				t.Errorf("imported key encrypted = %v, want %v", got, tt.dstPass != nil)
			}
			a, err := Load(LoadOptions{Dir: dir, Passphrase: tt.dstPass})
			if err != nil {
				t.Fatalf("Load imported CA: %v", err)
			}
			if a.Fingerprint() != srcCA.Fingerprint() {
				t.Error("imported root differs")
			}
			if !a.Intermediate().Equal(srcCA.Intermediate()) {
				t.Error("imported intermediate differs")
			}
			_, leaf, _ := signLeaf(t, a, "imported.example.net")
			if err := leaf.CheckSignatureFrom(srcCA.Intermediate()); err != nil {
				t.Errorf("leaf of imported CA: %v", err)
			}
			if !IsAdminCertificate(readCert(t, p.AdminCert)) {
				t.Error("no admin credential after import")
			}

			// Importing again refuses to overwrite.
			if _, err := Import(dir, rootPEM, intPEM, keyPEM, tt.dstPass, time.Now()); !errors.Is(err, ErrExists) {
				t.Errorf("second Import: err = %v, want ErrExists", err)
			}
		})
	}
}

func TestImportFilesErrors(t *testing.T) {
	t.Parallel()
	pass := []byte("pw")
	a, _ := newCA(t, InitOptions{Passphrase: pass})
	b, _ := newCA(t, InitOptions{Name: "other"})
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	mustWrite(t, garbage, "garbage")
	missing := filepath.Join(t.TempDir(), "missing.pem")

	tests := []struct {
		name             string
		root, inter, key string
		pass             []byte
		wantErr          error
		want             string
	}{
		{"ok", a.RootCert, a.IntermediateCert, a.IntermediateKey, pass, nil, ""},
		{"root garbage", garbage, a.IntermediateCert, a.IntermediateKey, pass, nil, garbage},
		{"root missing", missing, a.IntermediateCert, a.IntermediateKey, pass, os.ErrNotExist, missing},
		{"intermediate garbage", a.RootCert, garbage, a.IntermediateKey, pass, nil, garbage},
		{"key garbage", a.RootCert, a.IntermediateCert, garbage, pass, nil, garbage},
		{"wrong passphrase", a.RootCert, a.IntermediateCert, a.IntermediateKey, []byte("bad"), ErrBadPassphrase, a.IntermediateKey},
		{"no passphrase", a.RootCert, a.IntermediateCert, a.IntermediateKey, nil, ErrBadPassphrase, a.IntermediateKey},
		{"key of another CA", a.RootCert, a.IntermediateCert, b.IntermediateKey, nil, ErrKeyMismatch, "not the key of"},
		{"root of another CA", b.RootCert, a.IntermediateCert, a.IntermediateKey, pass, ErrNotChained, "not signed by the root"},
		{"root is not self-signed", a.IntermediateCert, a.IntermediateCert, a.IntermediateKey, pass, nil, "not a self-signed CA"},
		{"intermediate is a leaf", a.RootCert, a.AdminCert, a.AdminKey, nil, ErrNotChained, "not a CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "ca")
			_, err := ImportFiles(dir, tt.root, tt.inter, tt.key, tt.pass, time.Now())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ImportFiles: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ImportFiles succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed import created %s", dir)
			}
		})
	}
}

func TestImportBytesNamesInputs(t *testing.T) {
	t.Parallel()
	_, err := Import(filepath.Join(t.TempDir(), "ca"), []byte("nope"), nil, nil, nil, time.Now())
	if err == nil || !strings.Contains(err.Error(), "the root certificate") {
		t.Errorf("err = %v, want it to name the root certificate", err)
	}
}
