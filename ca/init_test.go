package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitLoadSignKeyTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		keyType   string
		wantAlg   x509.SignatureAlgorithm
		checkKey  func(any) bool
		encrypted bool
	}{
		{"", x509.ECDSAWithSHA256, isCurve(elliptic.P256()), false},
		{"P-256", x509.ECDSAWithSHA256, isCurve(elliptic.P256()), true},
		{"P-384", x509.ECDSAWithSHA384, isCurve(elliptic.P384()), true},
		{"RSA-2048", x509.SHA256WithRSA, isRSA(2048), false},
		{"RSA-3072", x509.SHA256WithRSA, isRSA(3072), true},
		{"rsa-4096", x509.SHA256WithRSA, isRSA(4096), false},
	}
	for _, tt := range tests {
		t.Run("type="+tt.keyType, func(t *testing.T) {
			t.Parallel()
			var pass []byte
			if tt.encrypted {
				pass = []byte("correct horse battery staple")
			}
			now := time.Now()
			p, a := newCA(t, InitOptions{KeyType: tt.keyType, Passphrase: pass, Name: "covalent", Now: func() time.Time { return now }})

			root, inter := a.Roots()[0], a.Intermediate()
			if got, want := root.Subject.CommonName, "covalent Root CA"; got != want {
				t.Errorf("root CN = %q, want %q", got, want)
			}
			if got, want := inter.Subject.CommonName, "covalent Intermediate CA"; got != want {
				t.Errorf("intermediate CN = %q, want %q", got, want)
			}
			for _, c := range []*x509.Certificate{root, inter} {
				checkRolesAnywhereCA(t, c)
				if !tt.checkKey(c.PublicKey) {
					t.Errorf("%s: public key %T is not a %s key", c.Subject.CommonName, c.PublicKey, tt.keyType)
				}
				if c.SignatureAlgorithm != tt.wantAlg {
					t.Errorf("%s: signature algorithm %v, want %v", c.Subject.CommonName, c.SignatureAlgorithm, tt.wantAlg)
				}
			}
			if root.MaxPathLen != 1 || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
				t.Errorf("path lengths: root %d, intermediate %d (zero %v); want 1 and 0", root.MaxPathLen, inter.MaxPathLen, inter.MaxPathLenZero)
			}
			if !bytes.Equal(root.AuthorityKeyId, root.SubjectKeyId) || !bytes.Equal(inter.AuthorityKeyId, root.SubjectKeyId) {
				t.Error("authority key identifiers do not name the issuer's key")
			}
			if got := inter.NotAfter.Sub(now); got < DefaultIntermediateValidity-time.Minute || got > DefaultIntermediateValidity+time.Minute {
				t.Errorf("intermediate validity %v, want %v", got, DefaultIntermediateValidity)
			}
			if got := root.NotAfter.Sub(now); got < DefaultRootValidity-time.Minute || got > DefaultRootValidity+time.Minute {
				t.Errorf("root validity %v, want %v", got, DefaultRootValidity)
			}
			requireLintClean(t, "root", root.Raw)
			requireLintClean(t, "intermediate", inter.Raw)

			// Encrypted at rest exactly when a passphrase was given.
			for _, k := range []string{p.RootKey, p.IntermediateKey} {
				b, err := os.ReadFile(k)
				if err != nil {
					t.Fatal(err)
				}
				if got := isEncryptedPEM(b); got != tt.encrypted {
					t.Errorf("%s encrypted = %v, want %v", k, got, tt.encrypted)
				}
			}

			der, leaf, _ := signLeaf(t, a, "host1.covalent.example.net")
			if !bytes.Equal(der, leaf.Raw) {
				t.Error("Sign returned DER and certificate that differ")
			}
			if leaf.SignatureAlgorithm != tt.wantAlg {
				t.Errorf("leaf signature algorithm %v, want %v", leaf.SignatureAlgorithm, tt.wantAlg)
			}
			if len(leaf.SubjectKeyId) != 20 || !bytes.Equal(leaf.AuthorityKeyId, inter.SubjectKeyId) {
				t.Errorf("leaf SKI %x / AKI %x, want 20-byte SKI and AKI %x", leaf.SubjectKeyId, leaf.AuthorityKeyId, inter.SubjectKeyId)
			}
			requireLintClean(t, "leaf", der)
			if _, err := leaf.Verify(x509.VerifyOptions{
				Roots:         pool(a.Roots()...),
				Intermediates: pool(a.Chain()...),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}); err != nil {
				t.Errorf("leaf does not verify: %v", err)
			}

			// The real openssl agrees.
			dir := t.TempDir()
			leafPath := writePEM(t, filepath.Join(dir, "leaf.pem"), der)
			if out, err := runOpenSSL(t, "verify", "-CAfile", p.RootCert, "-untrusted", p.IntermediateCert, "-purpose", "sslclient", leafPath); err != nil || !strings.Contains(out, "OK") {
				t.Errorf("openssl verify: %v\n%s", err, out)
			}
			if out, err := runOpenSSL(t, "verify", "-CAfile", p.RootCert, "-untrusted", p.IntermediateCert, "-purpose", "sslclient", p.AdminCert); err != nil || !strings.Contains(out, "OK") {
				t.Errorf("openssl verify admin.crt: %v\n%s", err, out)
			}
		})
	}
}

// checkRolesAnywhereCA checks IAM Roles Anywhere's rules for CA certificates.
func checkRolesAnywhereCA(t *testing.T, c *x509.Certificate) {
	t.Helper()
	name := c.Subject.CommonName
	if c.Version != 3 {
		t.Errorf("%s: version %d, want 3", name, c.Version)
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		t.Errorf("%s: not CA:TRUE", name)
	}
	want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	if c.KeyUsage&want != want {
		t.Errorf("%s: key usage %b lacks keyCertSign|cRLSign", name, c.KeyUsage)
	}
	critical := map[string]bool{}
	for _, e := range c.Extensions {
		critical[e.Id.String()] = e.Critical
	}
	if !critical["2.5.29.19"] || !critical["2.5.29.15"] {
		t.Errorf("%s: basicConstraints/keyUsage not critical: %v", name, critical)
	}
	if len(c.SubjectKeyId) == 0 || len(c.AuthorityKeyId) == 0 {
		t.Errorf("%s: missing SKI or AKI", name)
	}
	switch c.SignatureAlgorithm {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
	default:
		t.Errorf("%s: signature algorithm %v is not SHA-256+", name, c.SignatureAlgorithm)
	}
}

func isCurve(c elliptic.Curve) func(any) bool {
	return func(k any) bool { e, ok := k.(*ecdsa.PublicKey); return ok && e.Curve == c }
}

func isRSA(bits int) func(any) bool {
	return func(k any) bool { r, ok := k.(*rsa.PublicKey); return ok && r.N.BitLen() == bits }
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestInitRootKeyElsewhere(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	offline := filepath.Join(t.TempDir(), "offline", "lanyard-root.key")
	pass := []byte("s3cret")
	p, err := Init(InitOptions{Dir: dir, RootKeyPath: offline, Passphrase: pass})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if p.RootKey != offline {
		t.Errorf("Paths.RootKey = %q, want %q", p.RootKey, offline)
	}
	if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("root key also written in the CA folder: %v", err)
	}
	st, err := os.Stat(filepath.Dir(offline))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("root key folder: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	// Take the root key away entirely: the CA still loads and signs.
	if err := os.Remove(offline); err != nil {
		t.Fatal(err)
	}
	a, err := Load(LoadOptions{Dir: dir, Passphrase: pass})
	if err != nil {
		t.Fatalf("Load without root key: %v", err)
	}
	signLeaf(t, a, "host.example.net")
}

func TestInitFileModes(t *testing.T) {
	t.Parallel()
	p, _ := newCA(t, InitOptions{Passphrase: []byte("pw")})
	st, err := os.Stat(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("%s mode %v, want 0700", p.Dir, st.Mode().Perm())
	}
	tests := []struct {
		path string
		mode os.FileMode
	}{
		{p.RootKey, 0o600},
		{p.IntermediateKey, 0o600},
		{p.AdminKey, 0o600},
		{p.RootCert, 0o644},
		{p.IntermediateCert, 0o644},
		{p.AdminCert, 0o644},
	}
	for _, tt := range tests {
		st, err := os.Stat(tt.path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if st.Mode().Perm() != tt.mode {
			t.Errorf("%s mode %v, want %v", tt.path, st.Mode().Perm(), tt.mode)
		}
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left-over file %s", e.Name())
		}
	}
	// The admin credential is what IsAdminCertificate accepts, and loads as a TLS pair.
	admin := readCert(t, p.AdminCert)
	if !IsAdminCertificate(admin) {
		t.Errorf("admin.crt (%v, OU %v) is not an admin certificate", admin.Subject, admin.Subject.OrganizationalUnit)
	}
	if got := admin.NotAfter.Sub(admin.NotBefore); got < AdminValidity || got > AdminValidity+2*time.Minute {
		t.Errorf("admin validity %v, want about %v", got, AdminValidity)
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(dir string) InitOptions
	}{
		{"complete CA", func(dir string) InitOptions {
			if _, err := Init(InitOptions{Dir: dir}); err != nil {
				t.Fatal(err)
			}
			return InitOptions{Dir: dir}
		}},
		{"only intermediate.key", func(dir string) InitOptions {
			mustWrite(t, filepath.Join(dir, IntermediateKeyFile), "x")
			return InitOptions{Dir: dir}
		}},
		{"root key elsewhere exists", func(dir string) InitOptions {
			rk := filepath.Join(dir, "..", "offline.key")
			mustWrite(t, rk, "x")
			return InitOptions{Dir: dir, RootKeyPath: rk}
		}},
		{"kms uri file", func(dir string) InitOptions {
			mustWrite(t, filepath.Join(dir, IntermediateKeyURIFile), "softkms:path=x")
			return InitOptions{Dir: dir, KMS: "softkms:"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			opts := tt.prepare(dir)
			before := snapshot(t, dir)
			_, err := Init(opts)
			if !errors.Is(err, ErrExists) {
				t.Fatalf("Init over an existing CA: err = %v, want ErrExists", err)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("files changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestInitBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts InitOptions
		want string
	}{
		{"no dir", InitOptions{}, "no CA folder"},
		{"bad key type", InitOptions{Dir: "x", KeyType: "Ed25519"}, `unknown key type "Ed25519"`},
		{"empty passphrase", InitOptions{Dir: "x", Passphrase: []byte{}}, "passphrase is empty"},
		{"unknown kms", InitOptions{Dir: "x", KMS: "nosuchkms:"}, "nosuchkms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Dir != "" {
				tt.opts.Dir = filepath.Join(t.TempDir(), tt.opts.Dir)
			}
			_, err := Init(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init: err = %v, want it to contain %q", err, tt.want)
			}
			if tt.opts.Dir != "" {
				if entries, _ := os.ReadDir(tt.opts.Dir); len(entries) > 0 {
					t.Errorf("files left behind: %v", entries)
				}
			}
		})
	}
}

func TestInitValidities(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	_, a := newCA(t, InitOptions{
		Now:                  func() time.Time { return now },
		RootValidity:         48 * time.Hour,
		IntermediateValidity: 72 * time.Hour, // capped at the root's NotAfter
	})
	root, inter := a.Roots()[0], a.Intermediate()
	if !root.NotAfter.Equal(now.Add(48 * time.Hour)) {
		t.Errorf("root NotAfter %v", root.NotAfter)
	}
	if !inter.NotAfter.Equal(root.NotAfter) {
		t.Errorf("intermediate NotAfter %v, want the root's %v", inter.NotAfter, root.NotAfter)
	}
	if !root.NotBefore.Before(now) {
		t.Errorf("root NotBefore %v is not backdated", root.NotBefore)
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshot describes the names, sizes and contents of a folder's files.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + "=" + string(data) + ";")
	}
	return b.String()
}

func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCertificates(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
