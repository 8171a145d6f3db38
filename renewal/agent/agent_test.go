package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/revocation"
)

// agentRun starts an agent with a fake clock and returns its events.
type agentRun struct {
	t      *testing.T
	clock  *clock.Fake
	events chan Event
	agent  *Agent
	done   chan error
}

func startAgent(t *testing.T, cfg *Config, opts Options) *agentRun {
	t.Helper()
	r := &agentRun{t: t, clock: clock.NewFake(time.Now()), events: make(chan Event, 1000), done: make(chan error, 1)}
	opts.Clock = r.clock
	opts.OnEvent = func(e Event) { r.events <- e }
	if opts.Rand == nil {
		opts.Rand = func(n int64) int64 { return n - 1 } // highest draw: delays equal their caps
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return r
}

// next returns the next event, failing on any other kind than want.
func (r *agentRun) next(want EventKind) Event {
	r.t.Helper()
	select {
	case e := <-r.events:
		if e.Kind != want {
			r.t.Fatalf("event %s (%v), want %s", e.Kind, e.Err, want)
		}
		return e
	case <-time.After(30 * time.Second):
		r.t.Fatalf("no %s event", want)
	}
	return Event{}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func scrape(t *testing.T, a *Agent) string {
	t.Helper()
	resp, err := http.Get("http://" + a.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestAgentRetriesUntilCARestarts: the CA is down when the renewal is due;
// the agent falls back to the default window, retries with capped
// exponential backoff, and renews at the first attempt after the CA is
// back (same store, restarted).
func TestAgentRetriesUntilCARestarts(t *testing.T) {
	caDir := t.TempDir()
	ca1 := testca.Start(t, testca.Options{Dir: caDir})
	proxy := newSwitchProxy(t)
	proxy.Point(ca1.URL)
	dir := enroll(t, ca1, proxy.URL(), "a1.covalent.example.net", "P-256")
	enrolled := currentVersion(t, dir)
	ca1.Stop()
	before := snapshot(t, dir)

	r := startAgent(t, &Config{Dirs: []DirConfig{{Path: dir}}, BackoffInitial: time.Second, BackoffMax: 8 * time.Second}, Options{})
	ev := r.next(EventScheduled)
	def := schedule.Scheduled(enrolled.Cert.NotBefore, enrolled.Cert.NotAfter)
	if ev.At.Before(def.Start) || ev.At.After(def.End) {
		t.Fatalf("CA down: scheduled at %s, want inside the default window %s–%s", ev.At, def.Start, def.End)
	}
	r.clock.AdvanceTo(t, ev.At)
	wantCaps := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	var retry Event
	for i, c := range wantCaps {
		retry = r.next(EventRetry)
		if got := retry.At.Sub(r.clock.Now()); got != c {
			t.Errorf("retry %d in %s, want %s (capped exponential backoff)", i+1, got, c)
		}
		if IsFinal(retry.Err) {
			t.Fatalf("retry on a final error: %v", retry.Err)
		}
		sameSnapshot(t, "while the CA is down", before, snapshot(t, dir))
		if i < len(wantCaps)-1 {
			r.clock.AdvanceTo(t, retry.At)
		}
	}
	ca2 := testca.Start(t, testca.Options{Dir: caDir})
	proxy.Point(ca2.URL)
	back := r.clock.Now()
	r.clock.AdvanceTo(t, retry.At)
	ren := r.next(EventRenewed)
	if took := r.clock.Now().Sub(back); took > 8*time.Second {
		t.Errorf("renewed %s after the CA came back; want within one backoff step (8s)", took)
	}
	if rec, err := ca2.Store.GetCert(ren.Result.Serial); err != nil || rec.PreviousSerial != lanyardv1.FormatSerial(enrolled.Cert.SerialNumber) {
		t.Fatalf("renewal not in the restarted CA's store: %+v %v", rec, err)
	}
	// Scheduled again from the CA's answer (the CA runs on real time, the
	// agent's clock is hours ahead: the moment may be "now").
	next := r.next(EventScheduled)
	if next.At.Before(r.clock.Now()) || next.Reason != schedule.ReasonScheduled || next.Version != ren.Result.Version {
		t.Errorf("after the renewal: %+v", next)
	}
}

// TestAgentFinalErrorStops: a revoked certificate is refused for good; the
// agent does not retry.
func TestAgentFinalErrorStops(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	dir := enroll(t, ca, ca.URL, "a2.covalent.example.net", "P-256")
	serial := lanyardv1.FormatSerial(currentVersion(t, dir).Cert.SerialNumber)
	if _, err := ca.Revocation.Revoke(context.Background(), revocation.Request{Serial: serial, Reason: 1, By: "admin:test"}); err != nil {
		t.Fatal(err)
	}
	r := startAgent(t, &Config{Dirs: []DirConfig{{Path: dir}}, MetricsListen: "127.0.0.1:0"}, Options{})
	ev := r.next(EventScheduled)
	if ev.Reason != schedule.ReasonRevoked {
		t.Errorf("reason %q, want %q", ev.Reason, schedule.ReasonRevoked)
	}
	r.clock.AdvanceTo(t, ev.At)
	gave := r.next(EventGaveUp)
	if !IsFinal(gave.Err) {
		t.Fatalf("gave up on a retryable error: %v", gave.Err)
	}
	// It now only watches the folder (one cheap check a minute), no retry.
	for range 5 {
		r.clock.WaitTimers(t, 1)
		r.clock.Advance(DefaultSuspendCheck)
	}
	select {
	case e := <-r.events:
		t.Fatalf("after a final error: %s event (%v)", e.Kind, e.Err)
	default:
	}
	m := scrape(t, r.agent)
	if !strings.Contains(m, `lanyard_agent_renewal_failures_total{dir="`+dir+`",final="true"} 1`) {
		t.Errorf("metrics do not count the final failure:\n%s", m)
	}
}

// TestAgentSuspend: the host sleeps past the renewal moment (the wall clock
// jumps, no timer fires); the agent renews at the next suspend check.
func TestAgentSuspend(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	dir := enroll(t, ca, ca.URL, "a3.covalent.example.net", "P-256")
	r := startAgent(t, &Config{Dirs: []DirConfig{{Path: dir}}, SuspendCheck: time.Minute}, Options{})
	ev := r.next(EventScheduled)
	r.clock.WaitTimers(t, 1)
	if p := r.clock.Pending(); len(p) != 1 || p[0] != time.Minute {
		t.Fatalf("a sleeping agent should have one timer, the 1m suspend check; has %v", p)
	}
	r.clock.Jump(ev.At.Sub(r.clock.Now()) + time.Hour) // slept an hour past the moment
	r.clock.Advance(time.Minute)                       // the next check
	ren := r.next(EventRenewed)
	if ren.Result.Serial == "" {
		t.Fatal("no renewal")
	}
}

// TestAgentHooksHelperMetrics: after a renewal the agent runs its hooks
// (command with environment, signal to a pid file), restarts the supervised
// aws_signing_helper serve on the new version, and exports metrics.
func TestAgentHooksHelperMetrics(t *testing.T) {
	helper := realtools.SigningHelper(t)
	ca := testca.Start(t, testca.Options{})
	emu, anchorArn, profileArn := ca.SeededEmulator(t, testRole)
	dir := enroll(t, ca, ca.URL, "a4.covalent.example.net", "P-256")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "hook.out")
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	sleeperDone := make(chan error, 1)
	go func() { sleeperDone <- sleeper.Wait() }()
	t.Cleanup(func() { _ = sleeper.Process.Kill() })
	pidFile := filepath.Join(tmp, "sleep.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := servetest.FreePort(t)
	cfg := &Config{MetricsListen: "127.0.0.1:0", Dirs: []DirConfig{{
		Path: dir,
		Hooks: []HookConfig{
			{Command: []string{"sh", "-c", `echo "$LANYARD_SERIAL $LANYARD_VERSION" > ` + out}, Timeout: 10 * time.Second},
			{Command: []string{"sleep", "5"}, Timeout: 100 * time.Millisecond}, // times out, logged, the rest goes on
			{Signal: "TERM", PIDFile: pidFile},
		},
		SuperviseHelper: &HelperConfig{Path: helper, Port: port, Args: []string{
			"--trust-anchor-arn", anchorArn, "--profile-arn", profileArn, "--role-arn", testRole, "--endpoint", emu.URL}},
	}}}
	r := startAgent(t, cfg, Options{HelperEnv: realtools.HelperEnv(), HelperOutput: io.Discard})
	first := r.next(EventHelperRestarted)
	ev := r.next(EventScheduled)
	if !strings.HasSuffix(first.Version, ev.Version) {
		t.Fatalf("helper started on %s, current is %s", first.Version, ev.Version)
	}
	cred := imdsCredentials(t, port)
	if cred.AccessKeyId == "" {
		t.Fatal("helper serve gave no credentials")
	}
	r.clock.Jump(ev.At.Sub(r.clock.Now()))
	r.clock.WaitTimers(t, 1)
	r.clock.Advance(time.Minute)
	ren := r.next(EventRenewed)
	moved := r.next(EventHelperRestarted)
	if moved.Version != filepath.Join(dir, "versions", ren.Result.Version) {
		t.Errorf("helper moved to %s, want the new version %s", moved.Version, ren.Result.Version)
	}
	b, err := os.ReadFile(out)
	if err != nil || strings.TrimSpace(string(b)) != ren.Result.Serial+" "+ren.Result.Version {
		t.Errorf("hook output %q (%v), want %q", b, err, ren.Result.Serial+" "+ren.Result.Version)
	}
	select {
	case <-sleeperDone:
	case <-time.After(10 * time.Second):
		t.Error("the signal hook did not reach the pid file's process")
	}
	if cred := imdsCredentials(t, port); cred.AccessKeyId == "" {
		t.Fatal("restarted helper gave no credentials")
	}
	s := emu.Sessions()
	if got := lanyardv1.FormatSerial(s[len(s)-1].Serial); got != ren.Result.Serial {
		t.Errorf("restarted helper sent serial %s, want the new %s", got, ren.Result.Serial)
	}
	r.next(EventScheduled)
	m := scrape(t, r.agent)
	for _, name := range []string{"lanyard_agent_last_renewal_timestamp_seconds", "lanyard_agent_next_renewal_timestamp_seconds",
		"lanyard_agent_certificate_not_after_timestamp_seconds", `lanyard_agent_renewals_total{dir="` + dir + `"} 1`} {
		if !strings.Contains(m, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

// TestAgentRetiresSupersededKey: after a renewal the replaced version
// keeps its private key for hostdir's MinAge (readers that resolved
// current before the swap), then the agent deletes it; its certificate
// stays.
func TestAgentRetiresSupersededKey(t *testing.T) {
	caClock := clock.NewFake(time.Now())
	ca := testca.Start(t, testca.Options{Clock: caClock})
	dir := enroll(t, ca, ca.URL, "retire.covalent.example.net", "P-256")
	first := currentVersion(t, dir)
	r := startAgent(t, &Config{Dirs: []DirConfig{{Path: dir}}}, Options{})
	ev := r.next(EventScheduled)
	caClock.Set(ev.At) // the CA issues at the agent's time: the next window is hours away
	r.clock.AdvanceTo(t, ev.At)
	renewed := r.next(EventRenewed)
	swapped := r.clock.Now()
	r.next(EventScheduled)
	oldKey := filepath.Join(first.Path, hostdir.KeyFile)
	if _, err := os.Stat(oldKey); err != nil {
		t.Fatalf("the replaced version lost its key at once: %v", err)
	}
	r.clock.AdvanceTo(t, swapped.Add(hostdir.DefaultMinAge+time.Second))
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(oldKey)
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("superseded key still there %s after the swap: %v", hostdir.DefaultMinAge, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(first.Path, hostdir.CertFile)); err != nil {
		t.Errorf("the replaced version's certificate is gone: %v", err)
	}
	if cur := currentVersion(t, dir); cur.Name != renewed.Version {
		t.Errorf("current is %s, want %s", cur.Name, renewed.Version)
	}
}
