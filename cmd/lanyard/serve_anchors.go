package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// Dev-mode emulator: `lanyard serve` with anchors.emulator runs the Roles
// Anywhere emulator in-process on its own loopback listener, plain HTTP
// (aws_signing_helper v1.5 and the SDK take an http:// endpoint), with the
// emulator's fixed default credentials (emulator.DefaultAccessKeyID
// and DefaultSecretAccessKey), and the sync creates an anchor and a profile
// for anchorsDevRole in it on every start (the emulator keeps no state).
const (
	anchorsDevRole    = "arn:aws:iam::123456789012:role/covalent-dev"
	anchorsDevProfile = "covalent"
	// anchorsStatusPath serves the Syncer's status to the admin credential
	// (used by `lanyard anchors status` while serve holds the store).
	anchorsStatusPath = "/_anchors/status"
)

// anchorsRunning is the sync that serve started (nil if none), for the
// dev welcome's enroll flags.
var anchorsRunning struct {
	syncer *anchors.Syncer
	cfg    anchors.Config
}

func init() {
	startHooks = append(startHooks, startAnchors)
	devEnrollExtra = append(devEnrollExtra, anchorsEnrollFlags)
}

// anchorsConfigFrom maps lanyard.yaml's anchors section to anchors.Config,
// filling in the emulator's endpoint, credentials and role in emulator mode.
func anchorsConfigFrom(c config.Anchors) anchors.Config {
	cfg := anchors.Config{
		Region: c.Region, Endpoint: c.Endpoint, TrustAnchorARN: c.TrustAnchorARN, ProfileARN: c.ProfileARN,
		RoleARN: c.RoleARN, Name: c.Name, Create: c.Create, Interval: c.Interval,
	}
	if c.Emulator {
		if cfg.Endpoint == "" {
			cfg.Endpoint = "http://" + c.EmulatorListen
		}
		if cfg.Region == "" {
			cfg.Region = emulator.DefaultRegion
		}
		if cfg.RoleARN == "" {
			cfg.RoleARN = anchorsDevRole
		}
		cfg.Create = true
		cfg.Credentials = credentials.NewStaticCredentialsProvider(emulator.DefaultAccessKeyID, emulator.DefaultSecretAccessKey, "")
	}
	return cfg
}

// startAnchors starts the trust-anchor sync when anchors.enabled: in
// emulator mode the emulator first; then one sync (so the ARNs are known
// before the dev welcome prints them), the background loop, and the
// revocation service's publisher.
func startAnchors(ctx context.Context, a *app, _ io.Writer) error {
	if !a.cfg.Anchors.Enabled {
		return nil
	}
	cfg := anchorsConfigFrom(a.cfg.Anchors)
	log := a.log.With("component", "anchors")
	if a.cfg.Anchors.Emulator {
		devEndpoint := "http://" + a.cfg.Anchors.EmulatorListen
		if a.cfg.Anchors.Endpoint != "" && a.cfg.Anchors.Endpoint != devEndpoint {
			return fmt.Errorf("anchors: the in-process emulator listens on %s; anchors.endpoint %q points elsewhere (drop it, or turn anchors.emulator off)",
				devEndpoint, a.cfg.Anchors.Endpoint)
		}
		emu := emulator.New(emulator.Options{Region: cfg.Region, Logger: a.log.With("component", "emulator")})
		ln, err := net.Listen("tcp", a.cfg.Anchors.EmulatorListen)
		if err != nil {
			return fmt.Errorf("anchors: start the Roles Anywhere emulator: %w (is another lanyard serve running?)", err)
		}
		srv := &http.Server{Handler: emu.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
		// A fresh emulator: forget the anchor a previous run recorded.
		cfg.TrustAnchorARN, cfg.ProfileARN = "", ""
		if err := a.db.PutMeta(ctx, anchors.StatusKey, anchors.Status{}); err != nil {
			return fmt.Errorf("anchors: reset status: %w", err)
		}
		log.Info("Roles Anywhere emulator listening", "endpoint", devEndpoint, "access_key", emu.AccessKeyID())
	}
	client, err := anchors.NewClient(ctx, cfg)
	if err != nil {
		return err
	}
	s := anchors.New(cfg, client, a.ca, a.db, nil, log)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	rep, err := s.Sync(sctx, false)
	cancel()
	switch {
	case err != nil && a.cfg.Anchors.Emulator:
		s.Close()
		return fmt.Errorf("anchors: first sync to the emulator: %w", err)
	case err != nil:
		// AWS may be unreachable for now: serve anyway, Run retries.
		log.Error("anchors: first sync failed; retrying in the background", "err", err)
	default:
		log.Info("anchors: trust anchor in sync", "trust_anchor", rep.TrustAnchorARN, "profile", rep.ProfileARN, "drift", rep.Drift())
	}
	anchorsRunning.syncer, anchorsRunning.cfg = s, cfg
	a.opts.Extra["GET "+anchorsStatusPath] = anchorsStatusHandler(s)
	go s.Run(ctx, a.rev.Current)
	go func() {
		<-ctx.Done()
		a.rev.SetPublisher(nil)
		_ = s.Close()
	}()
	a.rev.SetPublisher(s)
	return nil
}

// anchorsStatusHandler serves the Syncer's status as JSON to the admin
// client certificate only.
func anchorsStatusHandler(s *anchors.Syncer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// server.ClientCert is the client certificate verified against
		// the CA by the server's middleware.
		if !ca.IsAdminCertificate(server.ClientCert(r.Context())) {
			http.Error(w, "the anchors status needs the admin client certificate", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(s.Status())
	})
}

// anchorsEnrollFlags adds to the dev welcome's enroll command the flags
// that make the written AWS profile work against the trust anchor.
func anchorsEnrollFlags(_ *app) []string {
	s := anchorsRunning.syncer
	if s == nil || s.TrustAnchorARN() == "" || s.ProfileARN() == "" {
		return nil
	}
	cfg := anchorsRunning.cfg
	flags := []string{"--aws-profile", anchorsDevProfile, "--trust-anchor-arn", s.TrustAnchorARN(), "--profile-arn", s.ProfileARN(),
		"--role-arn", cfg.RoleARN, "--region", cfg.Region}
	if cfg.Endpoint != "" {
		flags = append(flags, "--endpoint", cfg.Endpoint)
	}
	return flags
}

// anchorsOpenStore opens the store for a CLI command, giving up after one
// second when `lanyard serve` holds its lock.
func anchorsOpenStore(path string) (store.Store, error) {
	db, err := store.Open(path, store.Options{Timeout: time.Second, NoBackup: true})
	if err != nil {
		return nil, fmt.Errorf("open the store %s: %w (is `lanyard serve` running? it holds the store)", path, err)
	}
	return db, nil
}
