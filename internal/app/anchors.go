package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/lanyard/lanyard/admincred"
	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/server"
)

// Dev-mode emulator: with anchors.emulator the Roles Anywhere emulator runs
// in-process on its own loopback listener, plain HTTP (aws_signing_helper
// v1.5 and the SDK take an http:// endpoint), with the emulator's fixed
// default credentials (emulator.DefaultAccessKeyID and
// DefaultSecretAccessKey), and the sync creates an anchor and a profile for
// DevRoleARN in it on every start (the emulator keeps no state).
const (
	// DevRoleARN is the role the dev emulator's profile allows.
	DevRoleARN = "arn:aws:iam::123456789012:role/covalent-dev"
	// AnchorsStatusPath serves the Syncer's status to the admin credential
	// (used by `lanyard anchors status` while serve holds the store).
	AnchorsStatusPath = "/_anchors/status"
	// firstSyncTimeout bounds the sync Build runs before serving.
	firstSyncTimeout = 30 * time.Second
	// emulatorReadHeaderTimeout bounds a request's headers on the
	// emulator's listener, as on any HTTP server lanyard runs.
	emulatorReadHeaderTimeout = 10 * time.Second
)

// AnchorsConfig maps lanyard.yaml's anchors section to anchors.Config,
// filling in the emulator's endpoint, credentials and role in emulator mode.
func AnchorsConfig(c config.Anchors) anchors.Config {
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
			cfg.RoleARN = DevRoleARN
		}
		cfg.Create = true
		cfg.Credentials = credentials.NewStaticCredentialsProvider(emulator.DefaultAccessKeyID, emulator.DefaultSecretAccessKey, "")
	}
	return cfg
}

// startAnchors starts the trust-anchor sync when anchors.enabled: in
// emulator mode the emulator first; then one sync (so the ARNs are known
// before the dev welcome prints them) and the revocation service's
// publisher. Serve runs the drift checks.
func (a *App) startAnchors(ctx context.Context) error {
	if !a.Config.Anchors.Enabled {
		return nil
	}
	cfg := AnchorsConfig(a.Config.Anchors)
	log := a.Log.With("component", "anchors")
	if a.Config.Anchors.Emulator {
		devEndpoint := "http://" + a.Config.Anchors.EmulatorListen
		if a.Config.Anchors.Endpoint != "" && a.Config.Anchors.Endpoint != devEndpoint {
			return fmt.Errorf("anchors: the in-process emulator listens on %s; anchors.endpoint %q points elsewhere (drop it, or turn anchors.emulator off)",
				devEndpoint, a.Config.Anchors.Endpoint)
		}
		emu := emulator.New(emulator.Options{Region: cfg.Region, Logger: a.Log.With("component", "emulator")})
		ln, err := net.Listen("tcp", a.Config.Anchors.EmulatorListen)
		if err != nil {
			return fmt.Errorf("anchors: start the Roles Anywhere emulator: %w (is another lanyard serve running?)", err)
		}
		srv := &http.Server{Handler: emu.Handler(), ReadHeaderTimeout: emulatorReadHeaderTimeout}
		go func() { _ = srv.Serve(ln) }()
		a.closers = append([]func() error{srv.Close}, a.closers...)
		// A fresh emulator: forget the anchor a previous run recorded.
		cfg.TrustAnchorARN, cfg.ProfileARN = "", ""
		if err := a.Store.PutMeta(ctx, anchors.StatusKey, anchors.Status{}); err != nil {
			return fmt.Errorf("anchors: reset status: %w", err)
		}
		log.Info("Roles Anywhere emulator listening", "endpoint", devEndpoint, "access_key", emu.AccessKeyID())
	}
	client, err := anchors.NewClient(ctx, cfg)
	if err != nil {
		return err
	}
	s := anchors.New(cfg, client, a.CA, a.Store, a.Now, log)
	a.closers = append([]func() error{func() error {
		a.Revocation.SetPublisher(nil)
		return s.Close()
	}}, a.closers...)
	sctx, cancel := context.WithTimeout(ctx, firstSyncTimeout)
	rep, err := s.Sync(sctx, false)
	cancel()
	switch {
	case err != nil && a.Config.Anchors.Emulator:
		return fmt.Errorf("anchors: first sync to the emulator: %w", err)
	case err != nil:
		// AWS may be unreachable for now: serve anyway, Run retries.
		log.Error("anchors: first sync failed; retrying in the background", "err", err)
	default:
		log.Info("anchors: trust anchor in sync", "trust_anchor", rep.TrustAnchorARN, "profile", rep.ProfileARN, "drift", rep.Drift())
	}
	a.Anchors, a.AnchorsConfig = s, cfg
	a.Revocation.SetPublisher(s)
	return nil
}

// anchorsStatusHandler serves the Syncer's status as JSON to the admin
// client certificate only.
func anchorsStatusHandler(s *anchors.Syncer, admin *admincred.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// server.ClientCert is the client certificate verified against
		// the CA by the server's middleware; admin.Check reads its record
		// (unknown, revoked) on every request.
		if err := admin.Check(server.ClientCert(r.Context())); err != nil {
			http.Error(w, "the anchors status needs the admin client certificate: "+err.Error(), http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(s.Status())
	})
}
