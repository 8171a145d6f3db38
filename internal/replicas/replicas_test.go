package replicas_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

func TestMain(m *testing.M) { pgtest.Main(m, servetest.RemoveBinary) }

// twoReplicas starts two CA servers on one CA folder and one database.
func twoReplicas(t *testing.T) (a, b *testca.CA) { return twoReplicasWith(t, testca.Options{}) }

// twoReplicasWith is twoReplicas with opts (its Dir and Store are set).
func twoReplicasWith(t *testing.T, opts testca.Options) (a, b *testca.CA) {
	opts.Store, opts.Dir = pgtest.NewDatabase(t), t.TempDir()
	a = testca.Start(t, opts)
	b = testca.Start(t, opts)
	return a, b
}

func newCSR(t testing.TB, cn string) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestOneTokenOneCertificateAcrossReplicas: 1,000 concurrent redemptions
// of one token, split across two replicas, yield exactly one certificate.
func TestOneTokenOneCertificateAcrossReplicas(t *testing.T) {
	a, b := twoReplicas(t)
	const cn = "race.covalent.example.net"
	tok := a.Token(t, cn, cn)
	csr := newCSR(t, cn)
	testca.RedeemConcurrently(t, []*testca.CA{a, b}, tok, csr, 1000).CheckOneWinner(t, 1000)
	serials, err := a.Store.SerialsByCN(cn)
	if err != nil || len(serials) != 1 {
		t.Fatalf("database holds %d certificates for the token (%v), want 1", len(serials), err)
	}
}

// TestRevocationOnOneReplicaInTheOthersCRL: a revocation on A is listed in
// the CRL B serves within a second, and the CRL number B serves never goes
// back.
func TestRevocationOnOneReplicaInTheOthersCRL(t *testing.T) {
	a, b := twoReplicas(t)
	for _, r := range []struct {
		name     string
		revokeOn *testca.CA
		readFrom *testca.CA
	}{{"A to B", a, b}, {"B to A", b, a}} {
		t.Run(r.name, func(t *testing.T) {
			const cn = "crl.covalent.example.net"
			resp, err := r.revokeOn.Anonymous.Certificates.Enroll(context.Background(),
				connect.NewRequest(&v1.EnrollRequest{Token: r.revokeOn.Token(t, cn, cn), Csr: newCSR(t, cn)}))
			if err != nil {
				t.Fatal(err)
			}
			serial, _ := new(big.Int).SetString(resp.Msg.GetBundle().GetSerial(), 16)
			before := crlNumber(t, r.readFrom)
			revoked := time.Now()
			// Bounded, so a revocation that waits for a CRL that never comes
			// fails here rather than at the test binary's timeout.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := r.revokeOn.Revocation.Revoke(ctx, revocation.Request{Serial: resp.Msg.GetBundle().GetSerial(), Reason: 1, By: "admin:test"}); err != nil {
				t.Fatal(err)
			}
			for {
				rl := fetchCRL(t, r.readFrom)
				if rl.Number.Int64() < before {
					t.Fatalf("CRL number went back: %d after %d", rl.Number.Int64(), before)
				}
				if listed(rl, serial) {
					t.Logf("listed by the other replica after %v", time.Since(revoked))
					break
				}
				if time.Since(revoked) > time.Second {
					t.Fatalf("the other replica's CRL %d does not list %x a second after the revocation", rl.Number, serial)
				}
				time.Sleep(20 * time.Millisecond) // poll interval
			}
		})
	}
	la, _ := a.Store.(store.Leadership).Leader()
	lb, _ := b.Store.(store.Leadership).Leader()
	_, aLeads := a.Store.(store.Leadership).Leader()
	_, bLeads := b.Store.(store.Leadership).Leader()
	if aLeads == bLeads {
		t.Fatalf("leaders: A %v (epoch %d), B %v (epoch %d); want exactly one", aLeads, la, bLeads, lb)
	}
}

func fetchCRL(t *testing.T, c *testca.CA) *x509.RevocationList {
	t.Helper()
	rl, err := servetest.FetchCRL(c.Anonymous.HTTP, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	return rl
}

func crlNumber(t *testing.T, c *testca.CA) int64 { return fetchCRL(t, c).Number.Int64() }

func listed(rl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}
