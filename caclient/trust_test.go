package caclient

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/pembundle"
	"github.com/lanyard/lanyard/internal/testpki"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type testKey struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newRoot returns a self-signed root named cn.
func newRoot(t *testing.T, cn string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := caTemplate(cn, testNow.Add(-time.Hour), testNow.Add(time.Hour))
	return testKey{cert: testpki.Issue(t, tmpl, tmpl, k.Public(), k), key: k}
}

func caTemplate(cn string, nb, na time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// crossCert issues a certificate of r's subject and key under issuer.
func crossCert(t *testing.T, r, issuer testKey, mod func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := caTemplate(r.cert.Subject.CommonName, testNow.Add(-time.Hour), testNow.Add(time.Hour))
	if mod != nil {
		mod(tmpl)
	}
	return testpki.Issue(t, tmpl, issuer.cert, r.cert.PublicKey, issuer.key)
}

// TestPinnedRoots: the pinned root is kept alone, except for a second
// root delivered with a valid cross-certificate under the pinned root.
func TestPinnedRoots(t *testing.T) {
	pinned := newRoot(t, "lanyard root")
	next := newRoot(t, "lanyard root 2")
	attacker := newRoot(t, "lanyard root")
	// A look-alike of the pinned root: same subject, the attacker's key.
	lookalike := testKey{cert: testpki.Issue(t, caTemplate("lanyard root", testNow.Add(-time.Hour), testNow.Add(time.Hour)), attacker.cert, attacker.cert.PublicKey, attacker.key), key: attacker.key}
	tests := []struct {
		name    string
		bundle  []*x509.Certificate
		want    []*x509.Certificate
		wantErr error
	}{
		{"pinned alone", []*x509.Certificate{pinned.cert}, []*x509.Certificate{pinned.cert}, nil},
		{"extra root dropped", []*x509.Certificate{pinned.cert, attacker.cert}, []*x509.Certificate{pinned.cert}, nil},
		{"extra root first, dropped", []*x509.Certificate{attacker.cert, pinned.cert}, []*x509.Certificate{pinned.cert}, nil},
		{"new root with a cross-certificate from the pinned root", []*x509.Certificate{pinned.cert, next.cert, crossCert(t, next, pinned, nil)}, []*x509.Certificate{pinned.cert, next.cert}, nil},
		{"new root, no cross-certificate", []*x509.Certificate{pinned.cert, next.cert}, []*x509.Certificate{pinned.cert}, nil},
		{"cross-certificate signed by a look-alike of the pinned root", []*x509.Certificate{pinned.cert, next.cert, crossCert(t, next, lookalike, nil)}, []*x509.Certificate{pinned.cert}, nil},
		{"attacker root with a cross-certificate of another key", []*x509.Certificate{pinned.cert, attacker.cert, crossCert(t, next, pinned, func(c *x509.Certificate) { c.Subject.CommonName = "lanyard root" })}, []*x509.Certificate{pinned.cert}, nil},
		{"expired cross-certificate", []*x509.Certificate{pinned.cert, next.cert, crossCert(t, next, pinned, func(c *x509.Certificate) { c.NotAfter = testNow.Add(-time.Minute) })}, []*x509.Certificate{pinned.cert}, nil},
		{"cross-certificate that is not a CA", []*x509.Certificate{pinned.cert, next.cert, crossCert(t, next, pinned, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })}, []*x509.Certificate{pinned.cert}, nil},
		{"no root matches", []*x509.Certificate{attacker.cert, next.cert}, nil, ErrFingerprint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PinnedRoots(pembundle.Encode(tt.bundle...), "SHA256:"+Fingerprint(pinned.cert), testNow)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := pembundle.Encode(tt.want...); string(got) != string(want) {
				certs, _ := pembundle.Parse(got)
				var names []string
				for _, c := range certs {
					names = append(names, c.Subject.CommonName+" "+Fingerprint(c)[:8])
				}
				t.Fatalf("trusted %q, want %d roots", names, len(tt.want))
			}
		})
	}
}

// TestRefreshRoots: a host learns a new root only through a
// cross-certificate from a root it stores, and forgets a root the CA no
// longer serves; a bundle of strangers is refused.
func TestRefreshRoots(t *testing.T) {
	old := newRoot(t, "lanyard root")
	next := newRoot(t, "lanyard root 2")
	stranger := newRoot(t, "lanyard root 2")
	enc := pembundle.Encode
	tests := []struct {
		name    string
		stored  []*x509.Certificate
		served  []*x509.Certificate
		want    []*x509.Certificate
		wantErr error
	}{
		{"unchanged", []*x509.Certificate{old.cert}, []*x509.Certificate{old.cert}, []*x509.Certificate{old.cert}, nil},
		{"unsigned extra root dropped", []*x509.Certificate{old.cert}, []*x509.Certificate{old.cert, stranger.cert}, []*x509.Certificate{old.cert}, nil},
		{"cross-signed new root learned", []*x509.Certificate{old.cert}, []*x509.Certificate{old.cert, next.cert, crossCert(t, next, old, nil)}, []*x509.Certificate{old.cert, next.cert}, nil},
		{"old root retired", []*x509.Certificate{old.cert, next.cert}, []*x509.Certificate{next.cert}, []*x509.Certificate{next.cert}, nil},
		{"both kept while both served", []*x509.Certificate{old.cert, next.cert}, []*x509.Certificate{old.cert, next.cert}, []*x509.Certificate{old.cert, next.cert}, nil},
		{"only strangers served", []*x509.Certificate{old.cert}, []*x509.Certificate{stranger.cert}, nil, ErrRootsRefused},
		{"new root alone, never cross-signed to the host", []*x509.Certificate{old.cert}, []*x509.Certificate{next.cert}, nil, ErrRootsRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RefreshRoots(enc(tt.stored...), enc(tt.served...), testNow)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("got %d bytes, err = %v, want %v", len(got), err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(enc(tt.want...)) {
				t.Fatalf("trusted set differs from the %d roots wanted", len(tt.want))
			}
		})
	}
}
