// Package testca starts a real lanyard CA for tests: a CA initialised in
// t.TempDir(), assembled by app.Build exactly as `lanyard serve` assembles
// it (the bbolt store, the issuance (enroll and renewal) and revocation services with
// the CRL refresh loop) and served on a loopback TLS port. Tests build it
// with Start and change only what they are about through Options.
package testca

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/admincred"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// Options change the CA a test gets. Zero values are sensible defaults.
type Options struct {
	// Profiles; default: covalent, *.covalent.example.net, 24h.
	Profiles map[string]issuance.ProfileConfig
	// Clock; default: real time (tests that move time pass clock.NewFake).
	Clock *clock.Fake
	// Dir reuses a CA and store folder (restart tests); default t.TempDir().
	Dir string
	// Store is the store location (a postgres:// URL for replica tests);
	// default Dir/lanyard.db.
	Store string
	// Web is mounted at /admin/.
	Web func(*CA) http.Handler
	// Server tweaks the server options before the server is built.
	Server func(*server.Options)
	// KeyType of the CA.
	KeyType string
	// CRLDistributionPoint puts the CA's own /crl URL in issued
	// certificates (crl.distribution_url).
	CRLDistributionPoint bool
	// ACME sets the dev/test-only ACME validation settings.
	ACME config.ACME
	// Anchors configures the trust-anchor sync (off by default; point
	// it at an anchors/emulator server).
	Anchors config.Anchors
}

// CA is a running test CA.
type CA struct {
	// App is the assembled server; the fields below are its parts.
	App        *app.App
	Dir        string
	URL        string
	Authority  *ca.Authority
	Store      store.Store
	Issuance   *issuance.Service
	Revocation *revocation.Service
	// AdminCred checks, rotates and renews the admin credential (the CA
	// folder's admin.crt is recorded, as `lanyard serve` does).
	AdminCred *admincred.Service
	Server    *server.Server
	Admin     *caclient.Clients
	Anonymous *caclient.Clients
	AdminCert tls.Certificate
	Paths     *ca.Paths
	Now       func() time.Time
	stop      func()
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
	var now func() time.Time
	if opts.Clock != nil {
		now = opts.Clock.Now
	}
	now = clock.Or(now)
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	p := ca.PathsIn(filepath.Join(dir, "ca"))
	if old, err := ca.Load(ca.LoadOptions{Dir: p.Dir}); err == nil {
		old.Close()
	} else {
		if _, err := ca.Init(ca.InitOptions{Dir: p.Dir, KeyType: opts.KeyType, Now: func() time.Time { return now().Add(-time.Hour) }}); err != nil {
			t.Fatalf("testca: init: %v", err)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	def := ""
	if _, ok := opts.Profiles["covalent"]; ok {
		def = "covalent"
	}
	cfg := &config.Config{
		Listen:         ln.Addr().String(),
		URL:            "https://" + ln.Addr().String(),
		DataDir:        dir,
		CADir:          p.Dir,
		Store:          cmp.Or(opts.Store, filepath.Join(dir, "lanyard.db")),
		Profiles:       opts.Profiles,
		DefaultProfile: def,
		ACME:           opts.ACME,
		Anchors:        opts.Anchors,
	}
	if opts.CRLDistributionPoint {
		cfg.CRL.DistributionURL = cfg.URL + "/crl"
	}
	c := &CA{Dir: dir, URL: cfg.URL, Paths: p, Now: now}
	ao := app.Options{Now: now, Logger: slog.New(slog.DiscardHandler), ServerOptions: opts.Server, Testing: true}
	if opts.Web != nil {
		ao.AdminPage = func(a *app.App) (http.Handler, error) {
			c.fill(a)
			return opts.Web(c), nil
		}
	}
	a, err := app.Build(context.Background(), cfg, ao)
	if err != nil {
		ln.Close()
		t.Fatalf("testca: %v", err)
	}
	c.fill(a)
	c.Server = a.Server
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Serve(ctx, ln)
	}()
	c.stop = func() {
		cancel()
		<-done
		a.Close()
	}
	t.Cleanup(c.Stop)
	c.AdminCert, err = tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin, err = caclient.New(c.URL, c.Authority.RootsPEM(), &c.AdminCert); err != nil {
		t.Fatal(err)
	}
	if c.Anonymous, err = caclient.New(c.URL, c.Authority.RootsPEM(), nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// fill copies the assembled parts into c.
func (c *CA) fill(a *app.App) {
	c.App, c.Authority, c.Store, c.Issuance, c.Revocation, c.AdminCred = a, a.CA, a.Store, a.Issuance, a.Revocation, a.Admin
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
