package emulator

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/testpki"
)

var serialCounter atomic.Int64

func init() { serialCounter.Store(0x1234ABCD) }

// testCA is a CA certificate and its key.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func caTemplate(cn string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(serialCounter.Add(1)), Subject: pkix.Name{CommonName: cn, Organization: []string{"lanyard test"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

func newRootCA(t testing.TB, cn string) *testCA {
	t.Helper()
	k := testpki.Key(t, "ec")
	tmpl := caTemplate(cn)
	return &testCA{cert: testpki.Issue(t, tmpl, tmpl, k.Public(), k), key: k}
}

func (ca *testCA) intermediate(t testing.TB, cn string) *testCA {
	t.Helper()
	k := testpki.Key(t, "ec")
	return &testCA{cert: testpki.Issue(t, caTemplate(cn), ca.cert, k.Public(), ca.key), key: k}
}

// leaf issues an end-entity certificate; mod may change the template.
func (ca *testCA) leaf(t testing.TB, kind, cn string, mod func(*x509.Certificate)) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	k := testpki.Key(t, kind)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serialCounter.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{cn},
	}
	if mod != nil {
		mod(tmpl)
	}
	return testpki.Issue(t, tmpl, ca.cert, k.Public(), ca.key), k
}

// crl signs a PEM CRL revoking serials.
func (ca *testCA) crl(t testing.TB, serials ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(serialCounter.Add(1)), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// writeCredentialFiles writes cert.pem, key.pem and (if chain) chain.pem.
func writeCredentialFiles(t testing.TB, leaf *x509.Certificate, key crypto.Signer, chain ...*x509.Certificate) (certFile, keyFile, chainFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(certFile, certPEM(leaf), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	if len(chain) > 0 {
		chainFile = filepath.Join(dir, "chain.pem")
		must(t, os.WriteFile(chainFile, certPEM(chain...), 0o600))
	}
	return certFile, keyFile, chainFile
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
