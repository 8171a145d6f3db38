// Package testca starts a real lanyard CA for tests: a CA initialised in
// t.TempDir(), a bbolt store, the issuance (enroll and renewal) and revocation
// services, and the server on a loopback TLS port. Tests build it with
// Start and change only what they are about through Options.
package testca

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Options change the CA a test gets. Zero values are sensible defaults.
type Options struct {
	// Profiles; default: covalent, *.covalent.example.net, 24h.
	Profiles map[string]issuance.ProfileConfig
	// Clock; default: real time (tests that move time pass NewClock).
	Clock *Clock
	// Dir reuses a CA and store folder (restart tests); default t.TempDir().
	Dir string
	// Web is mounted at /admin/.
	Web func(*CA) http.Handler
	// Server tweaks the server options before the server is built.
	Server func(*server.Options)
	// KeyType of the CA.
	KeyType string
}

// CA is a running test CA.
type CA struct {
	Dir        string
	URL        string
	Authority  *ca.Authority
	Store      store.Store
	Issuance   *issuance.Service
	Revocation *revocation.Service
	Server     *server.Server
	Admin      *caclient.Clients
	Anonymous  *caclient.Clients
	AdminCert  tls.Certificate
	Paths      *ca.Paths
	Now        func() time.Time
	stop       func()
}

// DefaultProfiles is the covalent profile of the dev configuration.
func DefaultProfiles() map[string]issuance.ProfileConfig {
	return map[string]issuance.ProfileConfig{
		"covalent": {CN: []string{"*.covalent.example.net"}, DNS: []string{"*.covalent.example.net"}},
	}
}

// Start runs a CA until the test ends.
func Start(t testing.TB, opts Options) *CA {
	t.Helper()
	if opts.Profiles == nil {
		opts.Profiles = DefaultProfiles()
	}
	now := time.Now
	if opts.Clock != nil {
		now = opts.Clock.Now
	}
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	p := ca.PathsIn(filepath.Join(dir, "ca"))
	if _, err := ca.Load(ca.LoadOptions{Dir: p.Dir}); err != nil {
		if _, err := ca.Init(ca.InitOptions{Dir: p.Dir, KeyType: opts.KeyType, Now: func() time.Time { return now().Add(-time.Hour) }}); err != nil {
			t.Fatalf("testca: init: %v", err)
		}
	}
	a, err := ca.Load(ca.LoadOptions{Dir: p.Dir})
	if err != nil {
		t.Fatalf("testca: load: %v", err)
	}
	db, err := store.Open(filepath.Join(dir, "lanyard.db"), store.Options{})
	if err != nil {
		t.Fatalf("testca: store: %v", err)
	}
	def := ""
	if _, ok := opts.Profiles["covalent"]; ok {
		def = "covalent"
	}
	ps, err := issuance.CompileProfiles(opts.Profiles, def)
	if err != nil {
		t.Fatalf("testca: profiles: %v", err)
	}
	iss, err := issuance.New(issuance.Config{Signer: a, Store: db, Profiles: ps, Now: now})
	if err != nil {
		t.Fatalf("testca: issuance: %v", err)
	}
	rev, err := revocation.New(revocation.Config{Store: db, Signer: a, Now: now})
	if err != nil {
		t.Fatalf("testca: revocation: %v", err)
	}
	c := &CA{Dir: dir, Authority: a, Store: db, Issuance: iss, Revocation: rev, Paths: p, Now: now}
	so := server.Options{CA: a, Store: db, Issuance: iss, Revocation: rev, Now: now}
	if opts.Web != nil {
		so.Web = opts.Web(c)
	}
	if opts.Server != nil {
		opts.Server(&so)
	}
	srv, err := server.New(so)
	if err != nil {
		t.Fatalf("testca: server: %v", err)
	}
	c.Server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.URL = "https://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
	}()
	c.stop = func() {
		cancel()
		<-done
		db.Close()
		a.Close()
	}
	t.Cleanup(c.Stop)
	c.AdminCert, err = tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin, err = caclient.New(c.URL, a.RootsPEM(), &c.AdminCert); err != nil {
		t.Fatal(err)
	}
	if c.Anonymous, err = caclient.New(c.URL, a.RootsPEM(), nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// Stop shuts the server down and closes the store (idempotent).
func (c *CA) Stop() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

// Token returns a fresh enrollment token for cn (default profile).
func (c *CA) Token(t testing.TB, cn string, dns ...string) string {
	t.Helper()
	resp, err := c.Admin.Admin.CreateEnrollmentToken(context.Background(), connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: cn, DnsNames: dns}))
	if err != nil {
		t.Fatalf("testca: token for %s: %v", cn, err)
	}
	return resp.Msg.GetToken()
}

// Client returns Connect clients presenting cert (nil: none).
func (c *CA) Client(t testing.TB, cert *tls.Certificate) *caclient.Clients {
	t.Helper()
	cl, err := caclient.New(c.URL, c.Authority.RootsPEM(), cert)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}
