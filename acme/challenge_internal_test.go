package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/testpki"
)

// TestCheckACMEIdentifier: RFC 8737's certificate must name exactly the
// identifier and carry, critical, the key authorization's digest.
func TestCheckACMEIdentifier(t *testing.T) {
	const cn, ka = "alpn.covalent.example.net", "token.thumb"
	sum := sha256.Sum256([]byte(ka))
	good, _ := asn1.Marshal(sum[:])
	other := sha256.Sum256([]byte("another.key"))
	wrong, _ := asn1.Marshal(other[:])
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := func(dns []string, ips []net.IP, ext []pkix.Extension) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: dns, IPAddresses: ips, ExtraExtensions: ext,
			NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
		return testpki.Issue(t, tmpl, tmpl, key.Public(), key)
	}
	ext := func(critical bool, v []byte) []pkix.Extension {
		return []pkix.Extension{{Id: idPeACMEIdentifier, Critical: critical, Value: v}}
	}
	for _, tt := range []struct {
		name string
		c    *x509.Certificate
		ok   bool
	}{
		{"good", cert([]string{cn}, nil, ext(true, good)), true},
		{"not critical", cert([]string{cn}, nil, ext(false, good)), false},
		{"wrong digest", cert([]string{cn}, nil, ext(true, wrong)), false},
		{"no extension", cert([]string{cn}, nil, nil), false},
		{"another name", cert([]string{"evil.covalent.example.net"}, nil, ext(true, good)), false},
		{"two names", cert([]string{cn, "evil.covalent.example.net"}, nil, ext(true, good)), false},
		{"an IP too", cert([]string{cn}, []net.IP{net.IPv4(127, 0, 0, 1)}, ext(true, good)), false},
		{"trailing bytes", cert([]string{cn}, nil, ext(true, append(append([]byte{}, good...), 0))), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkACMEIdentifier(tt.c, cn, ka); (err == nil) != tt.ok {
				t.Fatalf("checkACMEIdentifier = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
