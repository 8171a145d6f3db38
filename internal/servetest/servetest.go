// Package servetest helps the tests that run real `lanyard serve`
// processes (crashtest, internal/replicas, the end-to-end tests of
// cmd/lanyard): it builds the binary once per test binary, fetches what a
// server publishes (its CRL), and keeps the Ledger of what clients
// received, which the crash and replica tests check against the store
// after a crash or a takeover (every certificate recorded with its token
// or predecessor, no token paid for two).
package servetest

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/testpki"
	"github.com/lanyard/lanyard/store"
)

// ServeProfile is the part of lanyard.yaml the serve tests share: one
// profile, covalent (any name under covalent.example.net), the default,
// and no per-client rate limit (the tests' clients all come from
// loopback).
const ServeProfile = `default_profile: covalent
profiles:
  covalent:
    cn: ["*.covalent.example.net"]
limits:
  rate_per_client: 0
`

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/lanyard once for the test binary and returns its
// path; RemoveBinary (from TestMain) removes it.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lanyard-serve-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "lanyard")
		if out, err := exec.Command("go", "build", "-o", binPath, "github.com/lanyard/lanyard/cmd/lanyard").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build lanyard: %v", buildErr)
	}
	return binPath
}

// RemoveBinary removes what Binary built, if anything.
func RemoveBinary() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

// FreePort returns a loopback TCP port that is free now, for a server the
// test starts later on it (a lanyard serve, an ACME http-01 solver).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Splice copies between a and b both ways until either direction ends
// (a test proxy's connection to its backend); the caller closes both.
func Splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, a); done <- struct{}{} }()
	go func() { _, _ = io.Copy(a, b); done <- struct{}{} }()
	<-done
}

// Held is one certificate a client received, with its key.
type Held struct {
	Serial string
	Cert   *tls.Certificate
}

// Ledger is what clients received: every serial they were handed, with
// the token that paid for it or the serial it renews. It is safe for
// concurrent use; the zero value is not: use NewLedger.
type Ledger struct {
	mu      sync.Mutex
	byToken map[string]string // serial -> token id
	renewed map[string]string // serial -> previous serial
	certs   []Held
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{byToken: map[string]string{}, renewed: map[string]string{}}
}

// Add records serial, paid for by tokenID or (tokenID "") renewing prev.
func (l *Ledger) Add(serial, tokenID, prev string, cert *tls.Certificate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tokenID != "" {
		l.byToken[serial] = tokenID
	} else {
		l.renewed[serial] = prev
	}
	l.certs = append(l.certs, Held{serial, cert})
}

// Pick returns a received certificate at random (false while there is
// none).
func (l *Ledger) Pick() (Held, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.certs) == 0 {
		return Held{}, false
	}
	return l.certs[mrand.IntN(len(l.certs))], true
}

// Received is how many certificates clients received.
func (l *Ledger) Received() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byToken) + len(l.renewed)
}

// Enroll redeems token (whose id is tokenID) on cl with a new key and
// records the certificate it received.
func (l *Ledger) Enroll(ctx context.Context, t testing.TB, cl *caclient.Clients, token, tokenID string) error {
	key, der := KeyAndCSR(t)
	resp, err := cl.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: token, Csr: der}))
	if err != nil {
		return err
	}
	l.Add(resp.Msg.GetBundle().GetSerial(), tokenID, "", BundleCert(resp.Msg.GetBundle(), key))
	return nil
}

// Renew renews h at url (trusting roots) with a new key and records the
// renewal.
func (l *Ledger) Renew(ctx context.Context, t testing.TB, url string, roots *x509.CertPool, h Held) error {
	rc, err := caclient.NewWithHTTP(url, caclient.HTTPClient(roots, h.Cert))
	if err != nil {
		return err
	}
	defer rc.HTTP.CloseIdleConnections()
	key, der := KeyAndCSR(t)
	resp, err := rc.Certificates.Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: der}))
	if err != nil {
		return err
	}
	l.Add(resp.Msg.GetBundle().GetSerial(), "", h.Serial, BundleCert(resp.Msg.GetBundle(), key))
	return nil
}

// Lookup returns the token id and predecessor a CA recorded for serial,
// or an error when it has no record of it.
type Lookup func(serial string) (tokenID, previous string, err error)

// Check fails t unless lookup finds every certificate in the ledger with
// its token (or predecessor), and returns how many it checked.
func (l *Ledger) Check(t testing.TB, lookup Lookup) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	check := func(serial, want, what string, got func(tokenID, previous string) string) {
		tokenID, previous, err := lookup(serial)
		if err != nil {
			t.Fatalf("certificate %s was handed out but is not in the store: %v", serial, err)
		}
		if got(tokenID, previous) != want {
			t.Fatalf("certificate %s is stored without its %s %s", serial, what, want)
		}
	}
	for serial, tok := range l.byToken {
		check(serial, tok, "token", func(tokenID, _ string) string { return tokenID })
	}
	for serial, prev := range l.renewed {
		check(serial, prev, "predecessor", func(_, previous string) string { return previous })
	}
	return len(l.byToken) + len(l.renewed)
}

// StoreLookup is the Lookup of db.
func StoreLookup(db store.Certs) Lookup {
	return func(serial string) (string, string, error) {
		c, err := db.GetCert(serial)
		if err != nil {
			return "", "", err
		}
		return c.TokenID, c.PreviousSerial, nil
	}
}

// AdminLookup is the Lookup of a running CA, asked as its admin.
func AdminLookup(admin *caclient.Clients) Lookup {
	return func(serial string) (string, string, error) {
		resp, err := admin.Admin.GetCertificate(context.Background(), connect.NewRequest(&v1.GetCertificateRequest{Serial: serial}))
		if err != nil {
			return "", "", err
		}
		return resp.Msg.GetCertificate().GetTokenId(), resp.Msg.GetCertificate().GetPreviousSerial(), nil
	}
}

// CheckSingleUse fails t when db records two certificates paid for by one
// token, and returns how many certificates db holds.
func CheckSingleUse(t testing.TB, db store.Certs) int {
	t.Helper()
	perToken := map[string]int{}
	after, total := "", 0
	for {
		// No Status filter, so the query needs no Now.
		certs, next, err := db.ListCerts(store.CertQuery{Limit: 1000, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			total++
			if c.TokenID != "" {
				perToken[c.TokenID]++
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	for id, n := range perToken {
		if n > 1 {
			t.Errorf("token %s paid for %d certificates", id, n)
		}
	}
	return total
}

// FetchCRL downloads baseURL's /crl with hc and parses it.
func FetchCRL(hc *http.Client, baseURL string) (*x509.RevocationList, error) {
	resp, err := hc.Get(baseURL + "/crl")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s/crl: %w", baseURL, err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parse %s/crl: %w", baseURL, err)
	}
	return rl, nil
}

// KeyAndCSR returns a new P-256 key and a CSR of it with no names (the
// token or the certificate renewed decides them).
func KeyAndCSR(t testing.TB) (crypto.Signer, []byte) {
	t.Helper()
	k := testpki.Key(t, "ec")
	return k, testpki.CSR(t, k, nil)
}

// BundleCert is b's leaf and first chain certificate with key, as a TLS
// client certificate.
func BundleCert(b *v1.Bundle, key crypto.Signer) *tls.Certificate {
	leaf, _ := pem.Decode([]byte(b.GetCertificatePem()))
	chain, _ := pem.Decode([]byte(b.GetChainPem()))
	return &tls.Certificate{Certificate: [][]byte{leaf.Bytes, chain.Bytes}, PrivateKey: key}
}
