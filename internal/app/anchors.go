package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/anchors/trust"
	"github.com/lanyard/lanyard/config"
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
	// firstSyncTimeout bounds the sync Build runs before serving.
	firstSyncTimeout = 30 * time.Second
	// emulatorReadHeaderTimeout bounds a request's headers on the
	// emulator's listener, as on any HTTP server lanyard runs.
	emulatorReadHeaderTimeout = 10 * time.Second
)

// AnchorsConfig maps lanyard.yaml's anchors section to the default
// target's anchors.Config (see AnchorsConfigs).
func AnchorsConfig(c config.Anchors) (anchors.Config, error) {
	cfgs, err := AnchorsConfigs(c)
	if err != nil {
		return anchors.Config{}, err
	}
	return cfgs[0], nil
}

// AnchorsConfigs maps lanyard.yaml's anchors section to one
// anchors.Config per target, the default first, filling in the emulator's
// endpoint, credentials and role in emulator mode (where lanyard also owns
// the settings by default).
func AnchorsConfigs(c config.Anchors) ([]anchors.Config, error) {
	var out []anchors.Config
	for i, t := range append([]config.AnchorsTarget{c.AnchorsTarget}, c.Targets...) {
		cfg := anchors.Config{
			Region: t.Region, Endpoint: t.Endpoint, TrustAnchorARN: t.TrustAnchorARN, ProfileARN: t.ProfileARN,
			RoleARN: t.RoleARN, Name: t.Name, Create: t.Create, Interval: c.Interval, Target: t.Target,
		}
		if i == 0 {
			cfg.Target = ""
		}
		manage := t.Manage
		if c.Emulator && i == 0 {
			if cfg.Endpoint == "" {
				cfg.Endpoint = "http://" + c.EmulatorListen
			}
			if cfg.Region == "" {
				cfg.Region = emulator.DefaultRegion
			}
			if cfg.RoleARN == "" {
				cfg.RoleARN = DevRoleARN
			}
			cfg.Create, manage = true, true
			cfg.Credentials = credentials.NewStaticCredentialsProvider(emulator.DefaultAccessKeyID, emulator.DefaultSecretAccessKey, "")
		}
		if manage {
			if err := anchorsSettings(&cfg, t); err != nil {
				name := t.Target
				if name == "" {
					name = "(default)"
				}
				return nil, fmt.Errorf("anchors target %s: %w", name, err)
			}
		}
		out = append(out, cfg)
	}
	return out, nil
}

// anchorsSettings fills cfg's managed settings from t.
func anchorsSettings(cfg *anchors.Config, t config.AnchorsTarget) error {
	p := &anchors.ProfileSettings{
		RoleARNs: t.Profile.RoleARNs, ManagedPolicyARNs: t.Profile.ManagedPolicyARNs,
		DurationSeconds: t.Profile.DurationSeconds, AcceptRoleSessionName: t.Profile.AcceptRoleSessionName,
	}
	switch {
	case len(t.Profile.SourceIPs) > 0:
		doc, err := anchors.SessionPolicy(t.Profile.SourceIPs)
		if err != nil {
			return fmt.Errorf("profile.source_ips: %w", err)
		}
		p.SessionPolicy = string(doc)
	case t.Profile.SessionPolicyFile != "":
		doc, err := os.ReadFile(t.Profile.SessionPolicyFile)
		if err != nil {
			return fmt.Errorf("profile.session_policy_file: %w", err)
		}
		if !json.Valid(doc) {
			return fmt.Errorf("profile.session_policy_file %s: not JSON", t.Profile.SessionPolicyFile)
		}
		p.SessionPolicy = string(doc)
	}
	if len(t.Profile.AttributeMappings) > 0 {
		fields := make([]string, 0, len(t.Profile.AttributeMappings))
		for f := range t.Profile.AttributeMappings {
			fields = append(fields, f)
		}
		slices.Sort(fields)
		p.Mappings = []trust.Mapping{}
		for _, f := range fields {
			p.Mappings = append(p.Mappings, trust.Mapping{Field: f, Specifiers: t.Profile.AttributeMappings[f]})
		}
	}
	if err := p.Validate(); err != nil {
		return err
	}
	n := &anchors.NotificationSettings{CAExpiryDays: t.CAExpiryDays, EndEntityExpiryDays: t.EndEntityExpiryDays}
	if err := n.Validate(); err != nil {
		return err
	}
	cfg.Profile, cfg.Notifications, cfg.CRLDPRevocation = p, n, &t.CRLDPRevocation
	return nil
}

// startAnchors starts the trust-anchor sync when anchors.enabled: in
// emulator mode the emulator first; then one sync (so the ARNs are known
// before the dev welcome prints them) and the revocation service's
// publisher. Serve runs the drift checks.
func (a *App) startAnchors(ctx context.Context) error {
	if !a.Config.Anchors.Enabled {
		return nil
	}
	cfgs, err := AnchorsConfigs(a.Config.Anchors)
	if err != nil {
		return err
	}
	cfg := cfgs[0]
	log := a.Log.With("component", "anchors")
	var emu *emulator.Emulator
	if a.Config.Anchors.Emulator {
		devEndpoint := "http://" + a.Config.Anchors.EmulatorListen
		if a.Config.Anchors.Endpoint != "" && a.Config.Anchors.Endpoint != devEndpoint {
			return fmt.Errorf("anchors: the in-process emulator listens on %s; anchors.endpoint %q points elsewhere (drop it, or turn anchors.emulator off)",
				devEndpoint, a.Config.Anchors.Endpoint)
		}
		emu = emulator.New(emulator.Options{Region: cfg.Region, Logger: a.Log.With("component", "emulator")})
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
	cfgs[0] = cfg
	var syncers anchors.Syncers
	for _, c := range cfgs {
		client, err := anchors.NewClient(ctx, c)
		if err != nil {
			return fmt.Errorf("anchors target %q: %w", c.Target, err)
		}
		x := anchors.New(c, client, a.CA, a.Store, a.Now, log.With("target", c.Target))
		x.SetInventory(anchors.StoreInventory{DB: a.Store})
		syncers = append(syncers, x)
	}
	a.closers = append([]func() error{func() error {
		a.Revocation.SetPublisher(nil)
		for _, s := range syncers {
			_ = s.Close()
		}
		return nil
	}}, a.closers...)
	s := syncers[0]
	a.Anchors, a.AnchorsConfig, a.AnchorsTargets = s, cfg, syncers
	if emu == nil && a.sharedStore() {
		// Replicas on a shared store: the leader alone syncs and pushes
		// CRLs, from the moment it takes the lease (Serve, leaderAnchors),
		// so two replicas never create two anchors or push one CRL twice.
		a.anchorsOnLeader = true
		return nil
	}
	if err := a.firstSync(ctx, log); err != nil {
		return err
	}
	if emu != nil {
		// IAM is not emulated: give the emulator the trust policy lanyard
		// generates for the dev role, so CreateSession evaluates what
		// `lanyard anchors policy` prints (and `anchors explain` explains).
		if doc, err := a.devTrustPolicy(s.TrustAnchorARN()); err != nil {
			log.Warn("anchors: no trust policy for the dev role", "err", err)
		} else if err := emu.SetRoleTrustPolicy(cfg.RoleARN, doc); err != nil {
			log.Warn("anchors: emulator refused the dev trust policy", "err", err)
		}
	}
	a.Revocation.SetPublisher(syncers)
	return nil
}

// firstSync runs one sync of every target, bounded by firstSyncTimeout.
// Only the emulator's failing is fatal: AWS may be unreachable for now,
// Run retries, and one target's failure does not hold the others.
func (a *App) firstSync(ctx context.Context, log *slog.Logger) error {
	sctx, cancel := context.WithTimeout(ctx, firstSyncTimeout)
	results := anchors.SyncAll(sctx, a.AnchorsTargets, false)
	cancel()
	for _, r := range results {
		switch {
		case r.Err != nil && a.Config.Anchors.Emulator && r.Target == "":
			return fmt.Errorf("anchors: first sync to the emulator: %w", r.Err)
		case r.Err != nil:
			log.Error("anchors: first sync failed; retrying in the background", "target", r.Target, "err", r.Err)
		default:
			log.Info("anchors: trust anchor in sync", "target", r.Target, "trust_anchor", r.Report.TrustAnchorARN,
				"profile", r.Report.ProfileARN, "drift", r.Report.Drift())
		}
	}
	return nil
}

// leaderAnchors runs the trust-anchor sync for one leader term of a
// replica on a shared store, until ctx ends with the term: it takes up
// the status the previous leader persisted, syncs once, hands new CRLs
// to the targets (the current one first, which pushCRL skips when the
// previous leader pushed it already), and runs the drift checks.
func (a *App) leaderAnchors(ctx context.Context) {
	log := a.Log.With("component", "anchors")
	for _, s := range a.AnchorsTargets {
		s.Reload()
	}
	_ = a.firstSync(ctx, log) // not the emulator: never fatal
	if ctx.Err() != nil {
		return
	}
	a.pubMu.Lock()
	a.pubTerm++
	term := a.pubTerm
	a.Revocation.SetPublisher(a.AnchorsTargets)
	a.pubMu.Unlock()
	for _, s := range a.AnchorsTargets {
		go s.Run(ctx)
	}
	<-ctx.Done()
	a.pubMu.Lock()
	if a.pubTerm == term { // a later term (leadership lost and regained) keeps its publisher
		a.Revocation.SetPublisher(nil)
	}
	a.pubMu.Unlock()
}

// DevProfile is the lanyard profile (and AWS profile) of dev mode.
const DevProfile = "covalent"

// devTrustPolicy is the trust policy of the dev role: the dev profile's CN
// rules, this CA's intermediate, the trust anchor.
func (a *App) devTrustPolicy(trustAnchorARN string) ([]byte, error) {
	p, ok := a.Config.Profiles[DevProfile]
	if !ok {
		return nil, fmt.Errorf("no %q profile in the configuration", DevProfile)
	}
	return anchors.TrustPolicy(anchors.PolicyInput{CNRules: p.CN, DNSRules: p.DNS, IssuerCN: a.CA.Intermediate().Subject.CommonName, TrustAnchorARN: trustAnchorARN})
}
