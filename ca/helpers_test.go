package ca

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"go.step.sm/crypto/keyutil"
)

var (
	rfcRegistryOnce sync.Once
	rfcRegistry     lint.Registry
	rfcRegistryErr  error
)

// rfcLints returns the zlint registry restricted to the RFC 5280 lints.
func rfcLints(t testing.TB) lint.Registry {
	t.Helper()
	rfcRegistryOnce.Do(func() {
		rfcRegistry, rfcRegistryErr = lint.GlobalRegistry().Filter(lint.FilterOptions{
			IncludeSources: lint.SourceList{lint.RFC5280},
		})
	})
	if rfcRegistryErr != nil {
		t.Fatalf("zlint registry: %v", rfcRegistryErr)
	}
	return rfcRegistry
}

// lintFindings returns every zlint RFC 5280 result at warn level or above.
func lintFindings(results map[string]*lint.LintResult) []string {
	var out []string
	for name, r := range results {
		if r.Status >= lint.Warn {
			out = append(out, name+": "+r.Status.String()+" "+r.Details)
		}
	}
	sort.Strings(out)
	return out
}

// requireLintClean fails unless der passes zlint's RFC 5280 lints with no
// warnings or errors.
func requireLintClean(t *testing.T, what string, der []byte) {
	t.Helper()
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("%s: zcrypto parse: %v", what, err)
	}
	if f := lintFindings(zlint.LintCertificateEx(zc, rfcLints(t)).Results); len(f) > 0 {
		t.Errorf("%s: zlint findings:\n  %s", what, strings.Join(f, "\n  "))
	}
}

// newCA inits a CA in a fresh temporary folder and loads it.
func newCA(t testing.TB, opts InitOptions) (*Paths, *Authority) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "ca")
	}
	p, err := Init(opts)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	a, err := Load(LoadOptions{Dir: opts.Dir, Passphrase: opts.Passphrase, KMS: opts.KMS})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return p, a
}

// leafTemplate is a Roles Anywhere style client certificate template.
func leafTemplate(cn string, now time.Time, ttl time.Duration) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// signLeaf signs a P-256 leaf for cn with a.
func signLeaf(t testing.TB, a *Authority, cn string) ([]byte, *x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := keyutil.GenerateSigner("EC", "P-256", 0)
	if err != nil {
		t.Fatal(err)
	}
	der, cert, err := a.Sign(leafTemplate(cn, time.Now(), 24*time.Hour), key.Public())
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return der, cert, key
}

// writePEM writes certificates as a PEM file and returns its path.
func writePEM(t testing.TB, path string, ders ...[]byte) string {
	t.Helper()
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runOpenSSL runs the real openssl binary and returns its combined output.
func runOpenSSL(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl binary not found: %v", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func hexLower(b []byte) string { return hex.EncodeToString(b) }
