package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/renewal/schedule"
)

// EventKind says what an [Event] reports.
type EventKind string

// Event kinds.
const (
	// EventScheduled: the next renewal of Dir is at At (Reason says why).
	EventScheduled EventKind = "scheduled"
	// EventRenewed: Dir was renewed (Result).
	EventRenewed EventKind = "renewed"
	// EventRetry: a renewal attempt failed with a retryable error (Err);
	// the next attempt is at At.
	EventRetry EventKind = "retry"
	// EventGaveUp: a renewal failed with a final error (Err); the agent
	// waits until the folder changes (for example a manual enroll).
	EventGaveUp EventKind = "gave-up"
	// EventHelperRestarted: the supervised helper now serves Version.
	EventHelperRestarted EventKind = "helper-restarted"
)

// Event is one thing the agent did, for tests and diagnostics.
type Event struct {
	Kind    EventKind
	Dir     string
	At      time.Time
	Reason  string
	Err     error
	Result  *Result
	Version string
}

// Options are the agent's dependencies. The zero value uses the real clock,
// slog.Default() and math/rand/v2.
type Options struct {
	// Clock; nil means clock.System.
	Clock clock.Clock
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Rand returns a value in [0, n); nil means math/rand/v2's Int64N.
	Rand func(n int64) int64
	// HelperEnv is the environment of supervised helpers; nil means
	// os.Environ().
	HelperEnv []string
	// HelperOutput receives supervised helpers' output; nil means os.Stderr.
	HelperOutput io.Writer
	// OnEvent, when set, is called (synchronously) for every [Event].
	OnEvent func(Event)
	// Ready, when set, is called once the agent has started (metrics
	// listening, folders opened); `lanyard agent` tells systemd.
	Ready func()
}

// Agent keeps the folders of a [Config] fresh. Create it with [New] and
// call [Agent.Run].
type Agent struct {
	cfg     *Config
	opts    Options
	clock   clock.Clock
	log     *slog.Logger
	metrics *metrics
	backoff Backoff
	check   time.Duration

	mu          sync.Mutex
	metricsAddr net.Addr
}

// New returns an agent for cfg (validated here).
func New(cfg *Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, opts: opts, clock: clock.OrSystem(opts.Clock), log: opts.Logger, metrics: newMetrics(),
		backoff: Backoff{Initial: cfg.BackoffInitial, Max: cfg.BackoffMax}, check: cfg.SuspendCheck}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.check <= 0 {
		a.check = DefaultSuspendCheck
	}
	return a, nil
}

// MetricsAddr returns the metrics listener's address once Run has started
// it (nil without metrics_listen).
func (a *Agent) MetricsAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metricsAddr
}

func (a *Agent) emit(e Event) {
	if a.opts.OnEvent != nil {
		a.opts.OnEvent(e)
	}
}

// Run keeps every folder fresh until ctx ends, then stops supervised
// helpers and returns nil. It returns an error only when it cannot start
// (the metrics listener). A folder whose renewal fails for good is logged
// and watched until it changes; the other folders go on.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errc <-chan error
	if a.cfg.MetricsListen != "" {
		addr, ec, err := a.metrics.serve(ctx, a.cfg.MetricsListen)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.metricsAddr = addr
		a.mu.Unlock()
		errc = ec
		a.log.Info("metrics listening", "addr", addr.String())
	}
	var wg sync.WaitGroup
	for _, dc := range a.cfg.Dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runDir(ctx, dc)
		}()
	}
	if a.opts.Ready != nil {
		a.opts.Ready()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("metrics listener: %w", err)
		}
		cancel()
	}
	wg.Wait()
	return err
}

// runDir is the life of one folder: schedule, sleep, renew (with retries),
// hooks, helper hand-off, again.
func (a *Agent) runDir(ctx context.Context, dc DirConfig) {
	path, err := filepath.Abs(dc.Path)
	if err != nil {
		path = dc.Path
	}
	log := a.log.With("dir", path)
	// Opening cleans up what an interrupted write left (a version written
	// but never swapped in, temporary files).
	if _, err := hostdir.Open(path); err != nil {
		log.Error("cannot open the folder", "err", err)
	}
	var sup *Supervisor
	if dc.SuperviseHelper != nil {
		sup, err = a.supervisor(path, dc.SuperviseHelper, log)
		if err != nil {
			log.Error("cannot supervise aws_signing_helper serve", "err", err)
		} else {
			defer sup.Stop()
		}
	}
	var hint *schedule.Window // the CA's window from the last renewal
	var retireAt time.Time    // when the last renewal's predecessor key goes
	for ctx.Err() == nil {
		st, err := a.status(ctx, path, hint)
		hint = nil
		if err != nil {
			log.Error("cannot read the folder; looking again later", "err", err)
			a.emit(Event{Kind: EventGaveUp, Dir: path, Err: err})
			if clock.SleepUntil(ctx, a.clock, a.clock.Now().Add(a.check), a.check) != nil {
				return
			}
			continue
		}
		v := st.Version
		a.metrics.notAfter.WithLabelValues(path).Set(ts(v.Cert.NotAfter))
		if sup != nil && sup.Version() != v.Path {
			a.startHelper(ctx, sup, path, v.Path, log)
		}
		now := a.clock.Now()
		w := st.Window
		if st.WindowErr != nil {
			log.Warn("cannot ask the CA for the renewal window; using the default window", "err", st.WindowErr)
		}
		if !now.Before(v.Cert.NotAfter) {
			w = schedule.Window{Start: now, End: now, Reason: "expired"}
		}
		target := PickMoment(w, now, a.opts.Rand)
		a.metrics.nextRenewal.WithLabelValues(path).Set(ts(target))
		log.Info(fmt.Sprintf("next renewal of %s at %s (reason %s)", path, target.UTC().Format(time.RFC3339), w.Reason),
			"at", target, "reason", w.Reason, "window_start", w.Start, "window_end", w.End,
			"serial", st.Serial, "not_after", v.Cert.NotAfter, "ca_answered", st.WindowErr == nil)
		a.emit(Event{Kind: EventScheduled, Dir: path, At: target, Reason: w.Reason, Version: v.Name})
		if !retireAt.IsZero() && retireAt.Before(target) {
			// The version the last renewal replaced keeps its key for
			// hostdir's MinAge (readers that resolved current before the
			// swap); then the key goes (hostdir.Dir.Prune).
			if clock.SleepUntil(ctx, a.clock, retireAt, a.check) != nil {
				return
			}
			d, err := hostdir.Open(path)
			if err == nil {
				d.Keep, d.Now = dc.Keep, a.clock.Now
				err = d.Prune()
			}
			if err != nil {
				log.Warn("cannot remove superseded private keys", "err", err)
			}
		}
		retireAt = time.Time{}
		if clock.SleepUntil(ctx, a.clock, target, a.check) != nil {
			return
		}
		res, err := a.renewWithRetry(ctx, dc, path, log)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("renewal failed for good; not retrying until the folder changes (enroll again, or fix the cause and restart the agent)",
				"err", err, "version", v.Name, "serial", st.Serial, "not_after", v.Cert.NotAfter)
			a.emit(Event{Kind: EventGaveUp, Dir: path, Err: err, Version: v.Name})
			if a.waitForChange(ctx, path, v.Name) != nil {
				return
			}
			continue
		}
		a.metrics.lastRenewal.WithLabelValues(path).Set(ts(a.clock.Now()))
		a.metrics.notAfter.WithLabelValues(path).Set(ts(res.NotAfter))
		a.metrics.renewals.WithLabelValues(path).Inc()
		a.emit(Event{Kind: EventRenewed, Dir: path, Result: res, Version: res.Version})
		retireAt = a.clock.Now().Add(hostdir.DefaultMinAge)
		for i, h := range dc.Hooks {
			if err := RunHook(ctx, h, res); err != nil {
				log.Error("post-renewal hook failed", "hook", i, "err", err)
			}
		}
		if sup != nil {
			a.startHelper(ctx, sup, path, filepath.Join(path, hostdir.VersionsDir, res.Version), log)
		}
		hint = &res.Window
	}
}

// status loads the folder's current version and its window (hint, when
// the last renewal brought one, else asking the CA).
func (a *Agent) status(ctx context.Context, path string, hint *schedule.Window) (*Status, error) {
	if hint == nil {
		return CheckDir(ctx, path)
	}
	d, err := hostdir.OpenReadOnly(path)
	if err != nil {
		return nil, err
	}
	v, err := d.LoadCurrent()
	if err != nil {
		return nil, err
	}
	return &Status{Version: v, Serial: lanyardv1.FormatSerial(v.Cert.SerialNumber), Window: *hint}, nil
}

// renewWithRetry renews until success, a final error, or ctx's end,
// waiting a capped, fully jittered exponential backoff between attempts.
func (a *Agent) renewWithRetry(ctx context.Context, dc DirConfig, path string, log *slog.Logger) (*Result, error) {
	opts := RenewOptions{
		Now: a.clock.Now, KeyType: dc.KeyType, AllowKeyTypeChange: dc.AllowKeyTypeChange,
		ReenrollTokenFile: dc.ReenrollTokenFile, Keep: dc.Keep, Logger: log,
	}
	for attempt := 0; ; attempt++ {
		res, err := RenewDir(ctx, path, opts)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		final := IsFinal(err)
		a.metrics.failures.WithLabelValues(path, fmt.Sprint(final)).Inc()
		if final {
			return nil, err
		}
		d := a.backoff.Delay(attempt, a.opts.Rand)
		at := a.clock.Now().Add(d)
		log.Warn(fmt.Sprintf("renewal of %s failed; retrying in %s", path, d.Round(time.Millisecond)),
			"err", err, "attempt", attempt+1, "retry_at", at)
		a.emit(Event{Kind: EventRetry, Dir: path, At: at, Err: err})
		if err := clock.SleepUntil(ctx, a.clock, at, a.check); err != nil {
			return nil, err
		}
	}
}

// waitForChange sleeps until `current` no longer names version (a manual
// enroll or renew fixed the folder), looking once per suspend check.
func (a *Agent) waitForChange(ctx context.Context, path, version string) error {
	for {
		if err := clock.SleepUntil(ctx, a.clock, a.clock.Now().Add(a.check), a.check); err != nil {
			return err
		}
		d, err := hostdir.OpenReadOnly(path)
		if err != nil {
			continue
		}
		if cur, err := d.Current(); err == nil && cur != version {
			a.log.Info("folder changed; scheduling again", "dir", path, "version", cur)
			return nil
		}
	}
}

func (a *Agent) supervisor(path string, hc *HelperConfig, log *slog.Logger) (*Supervisor, error) {
	bin, err := FindHelper(hc.Path)
	if err != nil {
		return nil, err
	}
	args := hc.Args
	if len(args) == 0 {
		enr, _, err := hostdir.ReadEnrollment(path)
		if err != nil {
			return nil, err
		}
		if enr.AWS == nil {
			return nil, errors.New("supervise_helper needs args (the folder's enrollment recorded no AWS settings)")
		}
		args = enr.AWS.HelperArgs.Flags()
	}
	return &Supervisor{Helper: bin, Port: hc.Port, Args: args, Env: a.opts.HelperEnv,
		Output: a.opts.HelperOutput, Clock: a.clock, Logger: log}, nil
}

func (a *Agent) startHelper(ctx context.Context, sup *Supervisor, path, vp string, log *slog.Logger) {
	if err := sup.Run(ctx, vp); err != nil {
		log.Error("cannot start aws_signing_helper serve", "err", err)
		return
	}
	a.emit(Event{Kind: EventHelperRestarted, Dir: path, Version: vp})
}
