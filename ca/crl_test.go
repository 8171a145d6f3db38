package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
)

// revokedCert encodes a CRL entry or fails the test.
func revokedCert(t testing.TB, serial *big.Int, at time.Time, reason int) *RevokedCert {
	t.Helper()
	r, err := NewRevokedCert(serial, at, reason)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// x509CRL signs req through x509.CreateRevocationList with a's key: the
// reference SignCRL must match byte for byte (but for the signature).
func x509CRL(a *Authority, req CRLRequest) ([]byte, error) {
	tmpl := &x509.RevocationList{
		SignatureAlgorithm:        a.sigAlg,
		Number:                    big.NewInt(req.Number),
		ThisUpdate:                req.ThisUpdate,
		NextUpdate:                req.NextUpdate,
		RevokedCertificateEntries: make([]x509.RevocationListEntry, len(req.Entries)),
	}
	for i, e := range req.Entries {
		tmpl.RevokedCertificateEntries[i] = x509.RevocationListEntry{SerialNumber: e.Serial(), RevocationTime: e.RevokedAt(), ReasonCode: e.Reason()}
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, a.intermediate, a.signer)
}

// sameCRL fails unless ours and ref (from x509CRL) are the same CRL: the
// same TBSCertList and signature algorithm, and ours verifies.
func sameCRL(t testing.TB, a *Authority, ours, ref []byte) {
	t.Helper()
	got, err := x509.ParseRevocationList(ours)
	if err != nil {
		t.Fatalf("parse SignCRL's CRL: %v", err)
	}
	want, err := x509.ParseRevocationList(ref)
	if err != nil {
		t.Fatalf("parse x509's CRL: %v", err)
	}
	if !bytes.Equal(got.RawTBSRevocationList, want.RawTBSRevocationList) {
		t.Fatalf("TBSCertList differs:\nSignCRL: %x\nx509:    %x", got.RawTBSRevocationList, want.RawTBSRevocationList)
	}
	if got.SignatureAlgorithm != want.SignatureAlgorithm {
		t.Fatalf("signature algorithm %v, x509 %v", got.SignatureAlgorithm, want.SignatureAlgorithm)
	}
	if err := got.CheckSignatureFrom(a.intermediate); err != nil {
		t.Fatalf("SignCRL's signature: %v", err)
	}
}

func TestSignCRL(t *testing.T) {
	t.Parallel()
	for _, keyType := range []string{"P-256", "P-384", "RSA-2048"} {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			p, a := newCA(t, InitOptions{KeyType: keyType})
			_, leaf, _ := signLeaf(t, a, "revoked.example.net")
			now := time.Now()
			der, err := a.SignCRL(CRLRequest{
				Number:     42,
				ThisUpdate: now,
				NextUpdate: now.Add(24 * time.Hour),
				Entries:    []*RevokedCert{revokedCert(t, leaf.SerialNumber, now, 1)},
			})
			if err != nil {
				t.Fatalf("SignCRL: %v", err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(a.Intermediate()); err != nil {
				t.Errorf("CRL signature: %v", err)
			}
			if !bytes.Equal(crl.AuthorityKeyId, a.Intermediate().SubjectKeyId) {
				t.Errorf("CRL AKI %x, want %x", crl.AuthorityKeyId, a.Intermediate().SubjectKeyId)
			}
			if crl.SignatureAlgorithm != a.SignatureAlgorithm() {
				t.Errorf("CRL signed with %v", crl.SignatureAlgorithm)
			}
			zcrl, err := zx509.ParseRevocationList(der)
			if err != nil {
				t.Fatalf("zcrypto parse CRL: %v", err)
			}
			if f := lintFindings(zlint.LintRevocationListEx(zcrl, rfcLints(t)).Results); len(f) > 0 {
				t.Errorf("CRL zlint findings:\n  %s", strings.Join(f, "\n  "))
			}

			crlPath := filepath.Join(t.TempDir(), "crl.der")
			if err := os.WriteFile(crlPath, der, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runOpenSSL(t, "crl", "-inform", "DER", "-in", crlPath, "-noout", "-text")
			if err != nil {
				t.Fatalf("openssl crl: %v\n%s", err, out)
			}
			serialHex := strings.ToUpper(leaf.SerialNumber.Text(16))
			for _, want := range []string{"Certificate Revocation List", "X509v3 CRL Number", "42", "Key Compromise", "X509v3 Authority Key Identifier"} {
				if !strings.Contains(out, want) {
					t.Errorf("openssl crl -text lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(strings.ToUpper(out), serialHex) {
				t.Errorf("openssl crl -text lacks revoked serial %s", serialHex)
			}
			out, err = runOpenSSL(t, "crl", "-inform", "DER", "-in", crlPath, "-noout", "-CAfile", p.IntermediateCert)
			if err != nil || !strings.Contains(out, "verify OK") {
				t.Errorf("openssl crl -CAfile: %v\n%s", err, out)
			}
		})
	}
}

func TestSignCRLBadRequest(t *testing.T) {
	t.Parallel()
	_, a := newCA(t, InitOptions{})
	now := time.Now()
	tests := []struct {
		name string
		req  CRLRequest
		want string
	}{
		{"nextUpdate before thisUpdate", CRLRequest{Number: 1, ThisUpdate: now, NextUpdate: now.Add(-time.Second)}, "nextUpdate is before thisUpdate"},
		{"negative number", CRLRequest{Number: -1, ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, "negative"},
		{"year 10000", CRLRequest{Number: 1, ThisUpdate: now, NextUpdate: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "encode CRL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.SignCRL(tt.req); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		name   string
		serial *big.Int
		reason int
	}{
		{"nil serial", nil, 0},
		{"negative serial", big.NewInt(-1), 0},
		{"reason 11", big.NewInt(1), 11},
		{"reason -1", big.NewInt(1), -1},
	} {
		if _, err := NewRevokedCert(tt.serial, now, tt.reason); err == nil {
			t.Errorf("NewRevokedCert(%s) accepted", tt.name)
		}
	}
}

// TestSignCRLMatchesX509 compares SignCRL with x509.CreateRevocationList
// for every key type ca supports and the edge cases of the encoding.
func TestSignCRLMatchesX509(t *testing.T) {
	t.Parallel()
	tests := []struct {
		keyType    string
		entries    int
		thisUpdate time.Time
	}{
		{"P-256", 0, time.Now()},
		{"P-256", 50, time.Now()},
		{"P-384", 50, time.Now()},
		{"RSA-2048", 50, time.Now()},
		{"P-256", 5, time.Date(2049, 12, 31, 20, 0, 0, 0, time.UTC)}, // nextUpdate a GeneralizedTime
		{"P-256", 5, time.Date(2051, 1, 2, 3, 4, 5, 0, time.UTC)},    // every time a GeneralizedTime
		{"P-256", 5, time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	auths := map[string]*Authority{}
	for _, tt := range tests {
		a := auths[tt.keyType]
		if a == nil {
			_, a = newCA(t, InitOptions{KeyType: tt.keyType})
			auths[tt.keyType] = a
		}
		this := tt.thisUpdate.UTC().Truncate(time.Second)
		req := CRLRequest{Number: 42, ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour)}
		for i := range tt.entries {
			serial := new(big.Int).SetBytes(randomBytes(t, 16))
			switch i % 3 {
			case 0:
				serial.SetBit(serial, 127, 0) // a leading zero byte in hex
			case 1:
				serial.SetBit(serial, 127, 1) // the top bit set: DER adds a zero byte
			}
			at := this.Add(-time.Duration(i) * time.Second).Add(-time.Duration(i%1000) * time.Millisecond)
			req.Entries = append(req.Entries, revokedCert(t, serial, at, []int{0, 1, 3, 4, 5, 9}[i%6]))
		}
		ours, err := a.SignCRL(req)
		if err != nil {
			t.Fatalf("%s/%d/%d: SignCRL: %v", tt.keyType, tt.entries, tt.thisUpdate.Year(), err)
		}
		ref, err := x509CRL(a, req)
		if err != nil {
			t.Fatal(err)
		}
		sameCRL(t, a, ours, ref)
	}
}

func TestSignCRLRefusesWrongKey(t *testing.T) {
	t.Parallel()
	_, a := newCA(t, InitOptions{})
	_, other := newCA(t, InitOptions{})
	sa := crlSigAlgs[a.sigAlg]
	now := time.Now()
	tbs, err := encodeTBSCertList(sa.algID, a.intermediate, CRLRequest{Number: 1, ThisUpdate: now, NextUpdate: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signTBSCertList(other.signer, a.sigAlg, sa, a.intermediate, tbs); err == nil {
		t.Fatal("a CRL signed by another key was accepted")
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzSignCRLMatchesX509 is the differential test of the CRL encoder: the
// same random CRL (key type, number, validity, entries with serials of 0 to
// 20 bytes, times and reasons) through SignCRL and through
// x509.CreateRevocationList must fail together or give the same
// TBSCertList. entries is read as a sequence of: one byte n (the serial
// length, n mod 21), n serial bytes, a 4-byte big-endian offset in seconds
// before thisUpdate (the revocation time) and one reason byte (mod 11).
func FuzzSignCRLMatchesX509(f *testing.F) {
	keyTypes := []string{KeyTypeP256, KeyTypeP384, KeyTypeRSA2048}
	auths := make([]*Authority, len(keyTypes))
	for i, kt := range keyTypes {
		_, auths[i] = newCA(f, InitOptions{KeyType: kt})
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).Unix()
	f.Add(uint8(0), int64(1), now, int64(86400), []byte{})
	f.Add(uint8(1), int64(2), now, int64(3600), []byte{16, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 0, 0, 60, 1})
	f.Add(uint8(2), int64(1<<40), time.Date(2049, 12, 31, 0, 0, 0, 0, time.UTC).Unix(), int64(86400*2), []byte{1, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(0), int64(0), time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), int64(0), []byte{20, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0xff, 0xff, 0xff, 0xff, 10})
	f.Fuzz(func(t *testing.T, key uint8, number, thisUnix, validity int64, entries []byte) {
		a := auths[int(key)%len(auths)]
		this := time.Unix(thisUnix, 0).UTC()
		req := CRLRequest{Number: number, ThisUpdate: this, NextUpdate: this.Add(time.Duration(validity) * time.Second)}
		for len(entries) > 0 {
			n := int(entries[0]) % 21
			if len(entries) < 1+n+5 {
				break
			}
			serial := new(big.Int).SetBytes(entries[1 : 1+n])
			back := time.Duration(binary.BigEndian.Uint32(entries[1+n:])) * time.Second
			reason := int(entries[1+n+4]) % 11
			entries = entries[1+n+5:]
			e, err := NewRevokedCert(serial, this.Add(-back), reason)
			if err != nil {
				t.Fatalf("NewRevokedCert(%x, %d): %v", serial, reason, err)
			}
			req.Entries = append(req.Entries, e)
		}
		ours, err := a.SignCRL(req)
		ref, refErr := x509CRL(a, req)
		switch {
		case number < 0:
			if err == nil {
				t.Fatal("SignCRL accepted a negative CRL number")
			}
		case (err == nil) != (refErr == nil):
			t.Fatalf("SignCRL: %v; x509: %v", err, refErr)
		case err == nil:
			sameCRL(t, a, ours, ref)
		}
	})
}

// BenchmarkSignCRL100k signs a CRL of 100,000 pre-encoded entries through
// SignCRL ("direct") and the same CRL through x509.CreateRevocationList
// ("x509"), which re-encodes every entry, for comparison.
func BenchmarkSignCRL100k(b *testing.B) {
	const n = 100000
	_, a := newCA(b, InitOptions{})
	now := time.Now().UTC().Truncate(time.Second)
	req := CRLRequest{Number: 7, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), Entries: make([]*RevokedCert, n)}
	for i := range req.Entries {
		req.Entries[i] = revokedCert(b, new(big.Int).SetBytes(randomBytes(b, 16)), now.Add(-time.Duration(i)*time.Second), i%6)
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			der, err := a.SignCRL(req)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(der)), "der_bytes")
		}
	})
	b.Run("x509", func(b *testing.B) {
		for b.Loop() {
			if _, err := x509CRL(a, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
