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
	"errors"
	"math/big"
	"strings"
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

func BenchmarkSignLeaf(b *testing.B) { benchSignLeaf(b, InitOptions{}) }

// benchSignLeaf signs b.N leaves (P-256 keys) with a CA made with opts.
func benchSignLeaf(b *testing.B, opts InitOptions) {
	_, a := newCA(b, opts)
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

// FuzzSignLeafMatchesX509 is the differential test of the leaf encoder:
// random leaf shapes (CA key type, leaf key type, serial, CN, DNS SANs,
// CRL distribution point, validity) through SignLeaf and through
// x509.CreateCertificate with the same inputs must fail together or give
// the same TBSCertificate. dns is split at commas; the validity is capped
// to the intermediate's on both sides, as SignLeaf documents.
func FuzzSignLeafMatchesX509(f *testing.F) {
	caTypes := []string{KeyTypeP256, KeyTypeP384, KeyTypeRSA2048}
	auths := make([]*Authority, len(caTypes))
	for i, kt := range caTypes {
		_, auths[i] = newCA(f, InitOptions{KeyType: kt})
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafKeys := []crypto.PublicKey{&p256.PublicKey, &p384.PublicKey, &rsaKey.PublicKey}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).Unix()
	f.Add(uint8(0), uint8(0), []byte{0x18, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, "host1.covalent.example.net", "", "", now, int64(86400))
	f.Add(uint8(1), uint8(2), []byte{0x80, 1}, "a.covalent.example.net", "a.covalent.example.net,b.covalent.example.net", "http://ca.example.net/crl", now, int64(3600))
	f.Add(uint8(2), uint8(1), []byte{1}, "", "only-san.example.net", "", now, int64(60))
	f.Add(uint8(0), uint8(0), []byte{0x7f, 0xff}, "host_1@x ü", "", "http://x/crl", now-86400*365, int64(86400*3650))
	f.Fuzz(func(t *testing.T, caKey, leafKey uint8, serial []byte, cn, dns, dp string, notBefore, ttl int64) {
		a := auths[int(caKey)%len(auths)]
		pub := leafKeys[int(leafKey)%len(leafKeys)]
		var names []string
		if dns != "" {
			names = strings.Split(dns, ",")
		}
		nb := time.Unix(notBefore, 0).UTC()
		req := LeafRequest{Serial: new(big.Int).SetBytes(serial), CommonName: cn, DNSNames: names,
			NotBefore: nb, NotAfter: nb.Add(time.Duration(ttl) * time.Second), PublicKey: pub, CRLDistributionPoint: dp}
		_, got, err := a.SignLeaf(req)

		ski, skiErr := subjectKeyID(pub)
		if skiErr != nil {
			t.Fatal(skiErr)
		}
		cnb, cna := req.NotBefore, req.NotAfter
		if cnb.Before(a.intermediate.NotBefore) {
			cnb = a.intermediate.NotBefore
		}
		if cna.After(a.intermediate.NotAfter) {
			cna = a.intermediate.NotAfter
		}
		tmpl := &x509.Certificate{SerialNumber: req.Serial, Subject: pkix.Name{CommonName: cn}, DNSNames: names,
			NotBefore: cnb, NotAfter: cna, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
			SubjectKeyId: ski, AuthorityKeyId: a.intermediate.SubjectKeyId, SignatureAlgorithm: a.sigAlg}
		if dp != "" {
			tmpl.CRLDistributionPoints = []string{dp}
		}
		var refErr error
		var want *x509.Certificate
		switch {
		case !cna.After(cnb):
			refErr = errors.New("empty validity") // SignLeaf's rule; x509 has none
		case req.Serial.Sign() == 0:
			refErr = errors.New("zero serial") // SignLeaf's rule: RFC 5280 wants a positive serial
		default:
			var der []byte
			if der, refErr = x509.CreateCertificate(rand.Reader, tmpl, a.intermediate, pub, a.signer); refErr == nil {
				if want, refErr = x509.ParseCertificate(der); refErr != nil {
					t.Fatalf("parse x509's certificate: %v", refErr)
				}
			}
		}
		if (err == nil) != (refErr == nil) {
			t.Fatalf("SignLeaf: %v; x509: %v", err, refErr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
			t.Fatalf("TBS differs from crypto/x509's\n got %x\nwant %x", got.RawTBSCertificate, want.RawTBSCertificate)
		}
		if err := got.CheckSignatureFrom(a.intermediate); err != nil {
			t.Fatalf("signature: %v", err)
		}
	})
}
