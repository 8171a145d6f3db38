package replicas_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/acmeclient"
	"github.com/lanyard/lanyard/internal/testca"
)

// splitTransport sends finalize and certificate requests to replica b and
// everything else to a, under one name (a's URL), as a load balancer in
// front of both would.
type splitTransport struct {
	a, b    http.RoundTripper
	pattern []string
	// toB counts the requests sent to b, failedB b's error answers (a
	// badNonce the client would retry among them).
	toB, failedB atomic.Int64
}

func (s *splitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	for _, p := range s.pattern {
		if strings.Contains(r.URL.Path, p) {
			s.toB.Add(1)
			resp, err := s.b.RoundTrip(r)
			if err == nil && resp.StatusCode >= 400 {
				s.failedB.Add(1)
			}
			return resp, err
		}
	}
	return s.a.RoundTrip(r)
}

// TestACMEOrderAcrossReplicas: an ACME account opened and an order
// created and validated on replica A is finalized, and its certificate
// downloaded, on replica B (one PostgreSQL): B accepts A's nonces and
// account, the order pays for one certificate, recorded once.
func TestACMEOrderAcrossReplicas(t *testing.T) {
	resp, err := acmeclient.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	a, b := twoReplicasWith(t, testca.Options{ACME: config.ACME{HTTP01Port: resp.Port(), ResolveTo: "127.0.0.1"}})
	ctx := context.Background()
	kid, hk, err := a.App.ACME.CreateEAB(ctx, "covalent", "", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.Authority.RootsPEM())
	bURL, err := url.Parse(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: pool}
	st := &splitTransport{a: &http.Transport{TLSClientConfig: tlsCfg}, pattern: []string{"/finalize/", "/cert/"},
		b: &http.Transport{TLSClientConfig: tlsCfg, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, bURL.Host)
		}}}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: st}
	cl, err := acmeclient.Register(ctx, a.URL+"/acme/covalent/directory", hc, kid, hk, resp)
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := cl.Obtain(ctx, "replicas.covalent.example.net")
	if err != nil {
		t.Fatalf("order on A, finalized on B: %v", err)
	}
	if st.toB.Load() < 2 || st.failedB.Load() != 0 {
		t.Fatalf("%d requests reached replica B, %d refused (a nonce of A's?), want the finalize and the download, none refused",
			st.toB.Load(), st.failedB.Load())
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		t.Fatal(err)
	}
	serials, err := a.Store.SerialsByCN("replicas.covalent.example.net")
	if err != nil || len(serials) != 1 || serials[0] != lanyardv1.FormatSerial(leaf.SerialNumber) {
		t.Fatalf("store holds %v (%v) for the CN, want the one certificate %s", serials, err, lanyardv1.FormatSerial(leaf.SerialNumber))
	}
}
