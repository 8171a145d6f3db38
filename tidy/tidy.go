// Package tidy owns retention: it turns the configured retentions into a
// store tidy (expired certificates, spent tokens, expired sessions, old
// audit events), runs it by hand (`lanyard tidy`, with a dry run) or on a
// schedule on the leader replica, and audits every tidy that removed
// anything or was asked for.
package tidy

import (
	"context"
	"log/slog"
	"time"

	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/store"
)

// Store is what tidy needs of the store: one consistent, batched tidy.
type Store interface {
	Tidy(ctx context.Context, req store.TidyRequest) (*store.TidyResult, error)
}

// Leader reports whether this replica does the cluster's periodic work.
// With bbolt the single server is always the leader (Config.Leader nil).
type Leader interface {
	IsLeader() bool
}

// Defaults of lanyard.yaml's tidy section.
const (
	// DefaultInterval is the time between two automatic tidies on the
	// leader: four a day keep a store near its steady size.
	DefaultInterval = 6 * time.Hour
	// DefaultCertRetention keeps a month of expired certificates: history
	// for the admin page, and more than Vault PKI's 72 h safety buffer.
	DefaultCertRetention = 30 * 24 * time.Hour
	// DefaultTokenRetention keeps a week of spent or expired tokens.
	DefaultTokenRetention = 7 * 24 * time.Hour
	// DefaultSessionRetention keeps a day of expired web sessions.
	DefaultSessionRetention = 24 * time.Hour
	// DefaultAuditRetention keeps 400 days of audit events: a year plus a
	// month, so a yearly audit sees a whole year.
	DefaultAuditRetention = 400 * 24 * time.Hour
)

// Retention is how long each kind of record is kept once it stops
// mattering; 0 keeps it forever.
type Retention struct {
	Certs, Tokens, Sessions, Audit time.Duration
}

// Config builds a Service.
type Config struct {
	Store     Store
	Retention Retention
	// Leader, when set, gates Loop: only the leader tidies.
	Leader Leader
	// ACME, when set, removes the ACME records nothing needs any more
	// (package acme: expired orders and authorizations) in every run.
	ACME ACMETidier
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Service runs tidies.
type Service struct {
	cfg Config
}

// New returns a Service.
func New(cfg Config) *Service {
	cfg.Now = clock.Or(cfg.Now)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg}
}

// Request turns the retentions into the store's cut-offs at now.
func (r Retention) Request(now time.Time) store.TidyRequest {
	cut := func(d time.Duration) time.Time {
		if d <= 0 {
			return time.Time{}
		}
		return now.Add(-d)
	}
	return store.TidyRequest{
		CertsExpiredBefore:    cut(r.Certs),
		TokensBefore:          cut(r.Tokens),
		SessionsExpiredBefore: cut(r.Sessions),
		AuditBefore:           cut(r.Audit),
	}
}

// ACMETidier removes expired ACME records at now (acme.Server.Tidy); a
// dry run counts. It returns how many records it removed.
type ACMETidier interface {
	Tidy(ctx context.Context, now time.Time, dryRun bool) (int, error)
}

// Report is what one tidy did.
type Report struct {
	store.TidyResult
	// ACMERecords is how many ACME records (orders, authorizations,
	// their marks) were removed.
	ACMERecords int
	// Request is the cut-offs it applied.
	Request store.TidyRequest
	DryRun  bool
	At      time.Time
	Took    time.Duration
}

// Run tidies once now as actor ("admin:cli", "server"). A dry run only
// counts. A real run is audited (action "tidy", detail the counts) even
// when it removed nothing, so the audit log shows every tidy asked for.
func (s *Service) Run(ctx context.Context, actor string, dryRun bool) (*Report, error) {
	now := s.cfg.Now()
	req := s.cfg.Retention.Request(now)
	req.DryRun = dryRun
	if !dryRun {
		req.Event = &store.AuditEvent{At: now, Actor: actor, Action: store.ActionTidy, Subject: "store"}
	}
	res, err := s.cfg.Store.Tidy(ctx, req)
	rep := &Report{Request: req, DryRun: dryRun, At: now, Took: s.cfg.Now().Sub(now)}
	if res != nil {
		rep.TidyResult = *res
	}
	if err != nil {
		return rep, err
	}
	if s.cfg.ACME != nil {
		n, err := s.cfg.ACME.Tidy(ctx, now, dryRun)
		rep.ACMERecords = n
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// Loop tidies every interval while ctx lives, on the leader only; a
// follower checks again at the next tick. Errors are logged and the next
// tick tries again. tick, when non-nil, replaces the interval ticker
// (tests drive it).
func (s *Service) Loop(ctx context.Context, interval time.Duration, tick <-chan time.Time) {
	if tick == nil {
		if interval <= 0 {
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if s.cfg.Leader != nil && !s.cfg.Leader.IsLeader() {
			continue
		}
		rep, err := s.Run(ctx, "server", false)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Logger.Error("tidy", "err", err)
			}
			continue
		}
		s.cfg.Logger.Info("tidy", "certs", rep.Certs, "tokens", rep.Tokens, "sessions", rep.Sessions, "audit", rep.Audit, "took", rep.Took)
	}
}
