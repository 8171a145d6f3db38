package x509sigv4

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/testpki"
)

// testPKI is a root, an intermediate and a leaf, with the leaf's key.
type testPKI struct {
	root, inter, leaf *x509.Certificate
	leafKey           crypto.Signer
}

func newPKI(t testing.TB, leafKind string) testPKI {
	t.Helper()
	now := time.Now()
	rootKey := testpki.Key(t, "ec")
	rootT := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	root := testpki.Issue(t, rootT, rootT, rootKey.Public(), rootKey)
	interKey := testpki.Key(t, "ec")
	interT := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	inter := testpki.Issue(t, interT, root, interKey.Public(), rootKey)
	leafKey := testpki.Key(t, leafKind)
	leafT := &x509.Certificate{
		SerialNumber: big.NewInt(0x1234ABCD), Subject: pkix.Name{CommonName: "host.example.net"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	leaf := testpki.Issue(t, leafT, inter, leafKey.Public(), interKey)
	return testPKI{root: root, inter: inter, leaf: leaf, leafKey: leafKey}
}

func writePEM(t testing.TB, path, typ string, ders ...[]byte) {
	t.Helper()
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeFiles writes cert.pem, key.pem (PKCS #8) and chain.pem into dir.
func (p testPKI) writeFiles(t testing.TB, dir string) (cert, key, chain string) {
	t.Helper()
	cert, key, chain = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "chain.pem")
	writePEM(t, cert, "CERTIFICATE", p.leaf.Raw)
	der, err := x509.MarshalPKCS8PrivateKey(p.leafKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, key, "PRIVATE KEY", der)
	writePEM(t, chain, "CERTIFICATE", p.inter.Raw)
	return cert, key, chain
}
