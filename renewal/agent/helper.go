package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// HelperEnvVar names the environment variable that gives the path of
// aws_signing_helper when no path is configured.
const HelperEnvVar = "LANYARD_SIGNING_HELPER"

// HelperName is aws_signing_helper's executable name, looked up on PATH.
const HelperName = "aws_signing_helper"

// ErrHelperArgs means helper flags try to name the certificate or key
// files themselves; the resolved version decides those.
var ErrHelperArgs = errors.New("helper flags must not name --certificate, --private-key or --intermediates")

// FindHelper returns the aws_signing_helper to run: explicit if set, else
// $LANYARD_SIGNING_HELPER, else aws_signing_helper on PATH.
func FindHelper(explicit string) (string, error) {
	p := explicit
	if p == "" {
		p = os.Getenv(HelperEnvVar)
	}
	if p == "" {
		found, err := exec.LookPath(HelperName)
		if err != nil {
			return "", fmt.Errorf("%s not found on PATH (install it, or pass --helper or set %s): %w", HelperName, HelperEnvVar, err)
		}
		return found, nil
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("aws_signing_helper: %w", err)
	}
	return p, nil
}

// ResolveVersion resolves DIR/current once and returns that version
// folder's path. It never creates or changes anything in dir.
func ResolveVersion(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	d, err := hostdir.OpenReadOnly(abs)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	name, err := d.Current()
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	vp := d.VersionPath(name)
	for _, f := range []string{hostdir.CertFile, hostdir.KeyFile} {
		if _, err := os.Stat(filepath.Join(vp, f)); err != nil {
			return "", fmt.Errorf("resolve %s: version %s: %w", dir, name, err)
		}
	}
	return vp, nil
}

// ResolveHelperArgs resolves DIR/current once and returns the arguments
// (without the program name) of the real aws_signing_helper for that one
// version:
//
//	credential-process --certificate V/cert.pem --private-key V/privkey.pem
//	  --intermediates V/chain.pem <helperArgs…>
//
// (--intermediates only when the chain is not empty). The helper reads the
// certificate and the key at two different moments; version folders are
// immutable, so both reads see the same version even if the agent swaps
// `current` in between.
func ResolveHelperArgs(dir string, helperArgs []string) ([]string, error) {
	vp, err := ResolveVersion(dir)
	if err != nil {
		return nil, err
	}
	return versionArgs("credential-process", vp, helperArgs)
}

// versionArgs builds `<command> --certificate … --private-key …
// [--intermediates …] <extra…>` for the version folder vp.
func versionArgs(command, vp string, extra []string) ([]string, error) {
	for _, a := range extra {
		name, _, _ := strings.Cut(a, "=")
		switch strings.TrimLeft(name, "-") {
		case "certificate", "private-key", "intermediates":
			if strings.HasPrefix(name, "-") {
				return nil, fmt.Errorf("%w (got %s)", ErrHelperArgs, name)
			}
		}
	}
	out := []string{command,
		"--certificate", filepath.Join(vp, hostdir.CertFile),
		"--private-key", filepath.Join(vp, hostdir.KeyFile),
	}
	chain := filepath.Join(vp, hostdir.ChainFile)
	if fi, err := os.Stat(chain); err == nil && fi.Size() > 0 {
		out = append(out, "--intermediates", chain)
	}
	return append(out, extra...), nil
}

// Supervisor runs `aws_signing_helper serve` on one version folder's files
// and moves it to the next version after each renewal (DESIGN's hand-off
// for a long-running helper): a helper only ever reads one immutable
// version, so it can never pair a new certificate with an old key, and
// since it runs from versions/N it never sees a file being replaced.
// A helper that exits by itself is restarted with backoff.
type Supervisor struct {
	// Helper is the aws_signing_helper executable.
	Helper string
	// Port is serve's --port (default DefaultHelperPort).
	Port int
	// Args are the Roles Anywhere flags passed after the file flags.
	Args []string
	// Env is the helper's environment; nil means os.Environ().
	Env []string
	// Output receives the helper's stdout and stderr; nil means os.Stderr.
	Output io.Writer
	// Clock paces crash restarts; nil means clock.System.
	Clock clock.Clock
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for a new helper to listen (default 30s).
	ReadyTimeout time.Duration

	mu      sync.Mutex
	cur     *helperProc
	version string
	closed  bool
	gen     int // incremented by every Run; stale restart loops stop
}

type helperProc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	stopped bool          // the supervisor asked it to stop
	err     error
}

// ErrHelperStart means aws_signing_helper serve did not come up.
var ErrHelperStart = errors.New("aws_signing_helper serve did not start")

func (s *Supervisor) port() int {
	if s.Port == 0 {
		return DefaultHelperPort
	}
	return s.Port
}

func (s *Supervisor) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Version returns the version folder the helper currently serves.
func (s *Supervisor) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// PID returns the running helper's process id, or 0.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.cur.cmd.Process == nil {
		return 0
	}
	return s.cur.cmd.Process.Pid
}

// Run (re)starts the helper on the version folder versionPath: it stops
// the running helper (if any), starts a new one and waits until it
// listens. ctx bounds only the start.
func (s *Supervisor) Run(ctx context.Context, versionPath string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: supervisor stopped", ErrHelperStart)
	}
	s.stopLocked()
	s.gen++
	err := s.startLocked(ctx, versionPath)
	if err != nil {
		// Keep trying in the background: a helper that is down serves nobody.
		go s.restartLoop(s.gen, versionPath, err)
	}
	return err
}

// Stop stops the helper and the supervision (idempotent).
func (s *Supervisor) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.stopLocked()
}

func (s *Supervisor) stopLocked() {
	p := s.cur
	if p == nil {
		return
	}
	s.cur = nil
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (s *Supervisor) startLocked(ctx context.Context, vp string) error {
	args, err := versionArgs("serve", vp, append([]string{"--port", strconv.Itoa(s.port())}, s.Args...))
	if err != nil {
		return err
	}
	cmd := exec.Command(s.Helper, args...)
	cmd.Env = s.Env
	out := s.Output
	if out == nil {
		out = os.Stderr
	}
	cmd.Stdout, cmd.Stderr = out, out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: %w", ErrHelperStart, err)
	}
	p := &helperProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		s.exited(p, vp)
	}()
	if err := waitListening(ctx, s.port(), p.done, s.ReadyTimeout); err != nil {
		p.stopped = true
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%w on %s (port %d): %w", ErrHelperStart, vp, s.port(), err)
	}
	s.cur, s.version = p, vp
	s.log().Info("aws_signing_helper serve running", "version", vp, "port", s.port(), "pid", cmd.Process.Pid)
	return nil
}

// exited restarts a helper that exited without being asked to.
func (s *Supervisor) exited(p *helperProc, vp string) {
	s.mu.Lock()
	if p.stopped || s.closed || s.cur != p {
		s.mu.Unlock()
		return
	}
	s.cur = nil
	gen := s.gen
	s.mu.Unlock()
	s.restartLoop(gen, vp, p.err)
}

// restartLoop starts the helper on vp with capped exponential backoff
// until it runs, the supervisor stops, or a newer Run takes over.
func (s *Supervisor) restartLoop(gen int, vp string, err error) {
	clk := clock.OrSystem(s.Clock)
	b := Backoff{Initial: time.Second, Max: time.Minute}
	for attempt := 0; ; attempt++ {
		d := b.Cap(attempt)
		s.log().Error("aws_signing_helper serve is not running; restarting", "err", err, "version", vp, "in", d)
		<-clk.After(d)
		s.mu.Lock()
		if s.closed || s.gen != gen || s.cur != nil {
			s.mu.Unlock()
			return
		}
		err = s.startLocked(context.Background(), vp)
		s.mu.Unlock()
		if err == nil {
			return
		}
	}
}

// waitListening waits until 127.0.0.1:port accepts connections, the
// process exits (done), or the timeout passes.
func waitListening(ctx context.Context, port int, done <-chan struct{}, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("the helper exited (see its output above)")
		case <-ctx.Done():
			return fmt.Errorf("not listening after %s: %w", timeout, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
