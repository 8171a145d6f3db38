package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// TestSignLeafEncodesLikeCreateCertificate proves SignLeaf's TBS is
// byte-for-byte what crypto/x509 would encode for the same certificate,
// for every CA key type and leaf key type.
func TestSignLeafEncodesLikeCreateCertificate(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, caType := range []string{KeyTypeP256, KeyTypeP384, KeyTypeRSA2048} {
		for _, leafKey := range []any{p256, p384, rsaKey} {
			for _, tc := range []struct {
				name string
				dns  []string
				cn   string
				dp   string
				nb   time.Time
			}{
				{"cn only", nil, "host1.covalent.example.net", "", time.Now()},
				{"with SANs", []string{"a.covalent.example.net", "b.covalent.example.net"}, "a.covalent.example.net", "", time.Now()},
				{"utf8 CN and CRL DP", nil, "host_1@x", "http://ca.example.net/crl", time.Now()},
			} {
				_, a := newCA(t, InitOptions{KeyType: caType})
				var pub crypto.PublicKey = &rsaKey.PublicKey
				if k, ok := leafKey.(*ecdsa.PrivateKey); ok {
					pub = &k.PublicKey
				}
				nb := tc.nb.Truncate(time.Second).Add(-time.Minute)
				req := LeafRequest{Serial: big.NewInt(0).SetBytes([]byte{0x18, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}),
					CommonName: tc.cn, DNSNames: tc.dns, NotBefore: nb, NotAfter: nb.Add(24 * time.Hour), PublicKey: pub, CRLDistributionPoint: tc.dp}
				der, cert, err := a.SignLeaf(req)
				if err != nil {
					t.Fatalf("%s/%T/%s: %v", caType, leafKey, tc.name, err)
				}
				tmpl := &x509.Certificate{SerialNumber: req.Serial, Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.dns,
					NotBefore: req.NotBefore, NotAfter: req.NotAfter, KeyUsage: x509.KeyUsageDigitalSignature,
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true}
				if tc.dp != "" {
					tmpl.CRLDistributionPoints = []string{tc.dp}
				}
				_, want, err := a.Sign(tmpl, pub)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(cert.RawTBSCertificate, want.RawTBSCertificate) {
					t.Fatalf("%s/%T/%s: TBS differs from crypto/x509's\n got %x\nwant %x", caType, leafKey, tc.name, cert.RawTBSCertificate, want.RawTBSCertificate)
				}
				if err := cert.CheckSignatureFrom(a.Intermediate()); err != nil {
					t.Fatalf("signature: %v", err)
				}
				requireLintClean(t, "leaf", der)
			}
		}
	}
}

func TestSignLeafRefusesBadRequests(t *testing.T) {
	_, a := newCA(t, InitOptions{})
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	for _, req := range []LeafRequest{
		{CommonName: "a", NotBefore: now, NotAfter: now.Add(time.Hour), PublicKey: &k.PublicKey},
		{Serial: big.NewInt(-1), CommonName: "a", NotBefore: now, NotAfter: now.Add(time.Hour), PublicKey: &k.PublicKey},
		{Serial: big.NewInt(1), CommonName: "a", NotBefore: now, NotAfter: now.Add(-time.Hour), PublicKey: &k.PublicKey},
		{Serial: big.NewInt(1), CommonName: "a", DNSNames: []string{"ü.example"}, NotBefore: now, NotAfter: now.Add(time.Hour), PublicKey: &k.PublicKey},
	} {
		if _, _, err := a.SignLeaf(req); err == nil {
			t.Errorf("SignLeaf(%+v) succeeded", req)
		}
	}
}

func BenchmarkSignLeaf(b *testing.B) {
	_, a := newCA(b, InitOptions{})
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := a.SignLeaf(LeafRequest{Serial: big.NewInt(int64(i + 1)), CommonName: "bench.covalent.example.net",
			NotBefore: now, NotAfter: now.Add(time.Hour), PublicKey: &k.PublicKey}); err != nil {
			b.Fatal(err)
		}
	}
}
