// Package app assembles a lanyard CA server from its configuration: the CA
// (package ca), the store, the issuance (enroll and renewal) and revocation services,
// the IAM Roles Anywhere trust-anchor sync (and, in development, the
// in-process Roles Anywhere emulator), and the TLS server that serves them.
// It is the one composition root: `lanyard serve` and the tests (through
// internal/testca) build the server with Build, so what the tests run is
// what production runs.
//
// The admin web page is the one part passed in (Options.AdminPage) rather
// than built here: package web's own tests run on internal/testca, so this
// package cannot import web.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lanyard/lanyard/acme"
	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/admincred"
	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/engine"
	"github.com/lanyard/lanyard/tidy"
)

// Options are what Build takes besides the configuration. The zero value
// is what `lanyard serve` uses but for AdminPage.
type Options struct {
	// Now is the clock every service reads (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default).
	Logger *slog.Logger
	// AdminPage, when set, builds the handler mounted at /admin/ from the
	// assembled App (serve passes the web package's page).
	AdminPage func(*App) (http.Handler, error)
	// ServerOptions, when set, adjusts the server's options just before
	// the server is built (tests).
	ServerOptions func(*server.Options)
	// Testing allows the dev-only settings (acme.http01_port,
	// acme.tls_alpn01_port, acme.resolve_to) without dev mode; only
	// internal/testca sets it.
	Testing bool
}

// App is an assembled server. Build makes it, Serve runs it, Close
// releases it. Its fields are the parts, for the commands and tests that
// need one; they must not be replaced.
type App struct {
	Config     *config.Config
	Log        *slog.Logger
	Now        func() time.Time
	CA         *ca.Authority
	Store      store.Store
	Issuance   *issuance.Service
	Revocation *revocation.Service
	// Admin checks, rotates and renews the admin credential.
	Admin *admincred.Service
	// Anchors is the trust-anchor sync; nil unless anchors.enabled.
	Anchors *anchors.Syncer
	// AnchorsConfig is the configuration Anchors runs with.
	AnchorsConfig anchors.Config
	// AnchorsTargets are every target's Syncer, Anchors (the default
	// target) first.
	AnchorsTargets anchors.Syncers
	Server         *server.Server
	// Tidy prunes the store after the configured retentions (TidyPath by
	// hand, every tidy.interval by itself).
	Tidy *tidy.Service
	// ACME is the ACME server mounted at /acme/.
	ACME *acme.Server
	// AdminAPI is the one admin service behind the Connect AdminService
	// and the admin page (pass it to web.Config.Admin).
	AdminAPI *admin.Service

	// anchorsOnLeader: the trust-anchor sync runs only while this
	// replica leads (a shared store), started by Serve.
	anchorsOnLeader bool
	// pubMu guards pubTerm, the leader term that last set the CRL
	// publisher (leaderAnchors), so the end of an old term does not clear
	// a newer term's publisher.
	pubMu   sync.Mutex
	pubTerm int

	closers []func() error // in the order they run
}

// Build loads the CA and opens the store named by cfg, builds the
// services on them and, when anchors.enabled, starts the emulator (dev)
// and runs the first trust-anchor sync. ctx bounds that start-up work
// only. On error everything opened so far is closed again.
func Build(ctx context.Context, cfg *config.Config, opts Options) (_ *App, err error) {
	opts.Now = clock.Or(opts.Now)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &App{Config: cfg, Log: opts.Logger, Now: opts.Now}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	pass, err := cfg.Passphrase()
	if err != nil {
		return nil, err
	}
	a.CA, err = ca.Load(ca.LoadOptions{Dir: cfg.CADir, Passphrase: pass, KMS: cfg.KMS, Now: a.Now})
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w (create one with `lanyard init`)", cfg.CADir, err)
	}
	a.closers = append(a.closers, a.CA.Close)
	a.Store, err = engine.Open(ctx, cfg.Store, engine.Options{Logger: a.Log, Replica: true})
	if err != nil {
		return nil, err
	}
	a.closers = append([]func() error{a.Store.Close}, a.closers...)
	profiles, err := cfg.CompileProfiles()
	if err != nil {
		return nil, err
	}
	a.Issuance, err = issuance.New(issuance.Config{Signer: a.CA, Store: a.Store, Profiles: profiles, Logger: a.Log, Now: a.Now,
		CRLDistributionPoint: cfg.CRL.DistributionURL})
	if err != nil {
		return nil, err
	}
	a.Revocation, err = revocation.New(revocation.Config{Store: a.Store, Signer: a.CA, Validity: cfg.CRL.Validity, Logger: a.Log,
		Now: a.Now, DistributionPointURL: cfg.CRL.DistributionURL, Leader: a.leads})
	if err != nil {
		return nil, err
	}
	a.closers = append([]func() error{a.Revocation.Close}, a.closers...)
	a.Admin = admincred.New(admincred.Config{Signer: a.CA, Store: a.Store, Revocation: a.Revocation, Now: a.Now, Logger: a.Log})
	if err := a.adoptAdminCredential(ctx); err != nil {
		return nil, err
	}
	if err := a.startAnchors(ctx); err != nil {
		return nil, err
	}
	so := server.Options{CA: a.CA, Store: a.Store, Issuance: a.Issuance, Revocation: a.Revocation, Admin: a.Admin,
		ServerNames: cfg.ServerNames, MaxBody: cfg.Limits.MaxBody, RatePerClient: cfg.Limits.RatePerClient, Burst: cfg.Limits.Burst,
		MaxHandshakes: cfg.Limits.MaxHandshakes, ReadTimeout: cfg.Limits.ReadTimeout, WriteTimeout: cfg.Limits.WriteTimeout,
		IdleTimeout: cfg.Limits.IdleTimeout, Logger: a.Log, Now: a.Now, Extra: map[string]http.Handler{}}
	if (cfg.ACME.HTTP01Port != 0 || cfg.ACME.TLSALPN01Port != 0 || cfg.ACME.ResolveTo != "") && !cfg.Dev && !opts.Testing {
		return nil, errors.New("acme.http01_port, acme.tls_alpn01_port and acme.resolve_to are for dev mode and tests only")
	}
	a.ACME = acme.New(acme.Config{Issuer: a.Issuance, Revocation: a.Revocation, Store: a.Store, ChainPEM: a.CA.ChainPEM(),
		Now: a.Now, Logger: a.Log, ValidationPort: cfg.ACME.HTTP01Port,
		TLSALPNPort: cfg.ACME.TLSALPN01Port, ResolveTo: cfg.ACME.ResolveTo})
	so.Extra["/acme/"] = a.ACME
	// Only the leader tidies by itself (tidy.interval); TidyPath runs a
	// tidy on the replica asked.
	a.Tidy = tidy.New(tidy.Config{Store: a.Store, Retention: TidyRetention(cfg.Tidy), ACME: a.ACME, Now: a.Now,
		Logger: a.Log, Leader: leaderFunc(a.leads)})
	so.Extra["POST "+TidyPath] = tidyHandler(a.Tidy, a.Admin, a.Log)
	var anchorTargets []string // nil: no sync, the admin service says so
	for _, s := range a.AnchorsTargets {
		anchorTargets = append(anchorTargets, s.Target())
	}
	a.AdminAPI = admin.New(admin.Config{Store: a.Store, Issuance: a.Issuance, Revocation: a.Revocation, ACME: a.ACME,
		AnchorTargets: anchorTargets, Now: a.Now})
	so.AdminAPI = a.AdminAPI
	if opts.AdminPage != nil {
		if so.Web, err = opts.AdminPage(a); err != nil {
			return nil, fmt.Errorf("admin web page: %w", err)
		}
	}
	if opts.ServerOptions != nil {
		opts.ServerOptions(&so)
	}
	if a.Server, err = server.New(so); err != nil {
		return nil, err
	}
	return a, nil
}

// adoptAdminCredential records the CA folder's admin.crt in the store when
// it is not yet (a new or imported CA, or one from before admin
// certificates were recorded), so the admin checks accept it, and warns
// when it is about to expire. No admin.crt (moved off the CA host) is fine.
func (a *App) adoptAdminCredential(ctx context.Context) error {
	path := ca.PathsIn(a.Config.CADir).AdminCert
	cert, err := admincred.ReadCertificate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	recorded, err := a.Admin.Adopt(ctx, cert)
	if err != nil {
		return err
	}
	if recorded {
		a.Log.Info("admin credential recorded", "path", path, "not_after", cert.NotAfter)
	}
	if w := admincred.ExpiryWarning(cert, a.Now()); w != "" {
		a.Log.Warn(w)
	}
	return nil
}

// Serve runs the server on ln, the CRL refresh loop and the trust-anchor
// drift checks until ctx ends; it returns nil then.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.Revocation.Run(ctx)
	go a.Tidy.Loop(ctx, a.Config.Tidy.Interval, nil)
	if l, ok := a.Store.(store.Leadership); ok && l.LeaderChanged() != nil {
		// Replicas on a shared store: CRLs follow the leader's, and only
		// the leader syncs trust anchors.
		go a.Revocation.Follow(ctx)
		go a.whileLeader(ctx, l, func(ctx context.Context) {
			if a.anchorsOnLeader {
				go a.leaderAnchors(ctx)
				return
			}
			for _, s := range a.AnchorsTargets {
				go s.Run(ctx)
			}
		})
	} else {
		for _, s := range a.AnchorsTargets {
			go s.Run(ctx)
		}
	}
	err := a.Server.Serve(ctx, ln)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Close stops the anchors sync and the emulator and closes the services,
// the store and the CA, in that order. It is safe to call more than once.
func (a *App) Close() error {
	var errs []error
	for _, c := range a.closers {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}

// sharedStore reports whether the store is shared by replicas that elect
// a leader (PostgreSQL with a lease).
func (a *App) sharedStore() bool {
	l, ok := a.Store.(store.Leadership)
	return ok && l.LeaderChanged() != nil
}

// leaderFunc adapts App.leads to tidy.Leader.
type leaderFunc func() bool

func (f leaderFunc) IsLeader() bool { return f() }

// leads reports whether this replica holds the store's leader lease
// (always, for an engine without one).
func (a *App) leads() bool {
	l, ok := a.Store.(store.Leadership)
	if !ok {
		return true
	}
	_, leads := l.Leader()
	return leads
}

// whileLeader runs start with a context that ends when this replica stops
// leading (or ctx ends), every time it becomes leader.
func (a *App) whileLeader(ctx context.Context, l store.Leadership, start func(context.Context)) {
	var term *context.CancelFunc // the current term's cancel
	defer func() {
		if term != nil {
			(*term)()
		}
	}()
	leading := false
	for {
		changed := l.LeaderChanged()
		_, now := l.Leader()
		if now && !leading {
			lctx, cancel := context.WithCancel(ctx)
			term = &cancel
			start(lctx)
		} else if !now && leading && term != nil {
			(*term)()
			term = nil
		}
		leading = now
		// The lease also lapses locally without a change event (a renewal
		// that failed): look again at least every second.
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}
