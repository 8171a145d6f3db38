package anchors

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/store"
)

const testRole = "arn:aws:iam::123456789012:role/covalent-test"

// testCA is a root (and intermediate) made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newRoot(t testing.TB, cn string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"lanyard test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{cert: c, key: key}
}

func pemOf(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// staticSource is a Source with fixed roots.
type staticSource struct {
	roots []*x509.Certificate
	inter *x509.Certificate
}

func (s staticSource) Roots() []*x509.Certificate      { return s.roots }
func (s staticSource) Intermediate() *x509.Certificate { return s.inter }

// counter is an http.RoundTripper that records every request the SDK
// sends ("PATCH trustanchor", "GET trustanchor", ...).
type counter struct {
	mu   sync.Mutex
	reqs []string
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	op := r.Method + " " + segs[0]
	if len(segs) == 3 {
		op += " " + segs[2]
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, op)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *counter) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.reqs {
		if r == op {
			n++
		}
	}
	return n
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs)
}

func (c *counter) reset() {
	c.mu.Lock()
	c.reqs = nil
	c.mu.Unlock()
}

// fixture is an emulator, a real SDK client (through NewClient) counting
// its requests, and a store.
type fixture struct {
	srv *emulator.Server
	cnt *counter
	db  store.Store
	cfg Config
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := emulator.NewServer(emulator.Options{})
	t.Cleanup(srv.Close)
	db, err := store.Open(filepath.Join(t.TempDir(), "lanyard.db"), store.Options{NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{srv: srv, cnt: &counter{}, db: db}
	f.cfg = Config{
		Region: emulator.DefaultRegion, Endpoint: srv.URL, RoleARN: testRole,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKeyID(), srv.SecretAccessKey(), ""),
		HTTPClient:  &http.Client{Transport: f.cnt, Timeout: 10 * time.Second},
		MaxBackoff:  50 * time.Millisecond,
	}
	return f
}

// syncer builds a Syncer on a real SDK client made by NewClient.
func (f *fixture) syncer(t *testing.T, cfg Config, src Source) *Syncer {
	t.Helper()
	cl, err := NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg, cl, src, f.db, nil, nil)
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writes counts the requests that are not GETs.
func (c *counter) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.reqs {
		if !strings.HasPrefix(r, "GET ") {
			n++
		}
	}
	return n
}
