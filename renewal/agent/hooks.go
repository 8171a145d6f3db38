package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrHook means a post-renewal hook failed (the renewal itself succeeded).
var ErrHook = errors.New("post-renewal hook failed")

// RunHook runs one post-renewal hook for the renewal res: the command (with
// its timeout; LANYARD_DIR, LANYARD_VERSION, LANYARD_SERIAL and
// LANYARD_NOT_AFTER in its environment), then the signal to the pid in the
// pid file. Errors wrap ErrHook.
func RunHook(ctx context.Context, h HookConfig, res *Result) error {
	if len(h.Command) > 0 {
		timeout := h.Timeout
		if timeout <= 0 {
			timeout = DefaultHookTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(cctx, h.Command[0], h.Command[1:]...)
		cmd.Env = append(os.Environ(),
			"LANYARD_DIR="+res.Dir,
			"LANYARD_VERSION="+res.Version,
			"LANYARD_SERIAL="+res.Serial,
			"LANYARD_NOT_AFTER="+res.NotAfter.UTC().Format(time.RFC3339),
		)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		if cctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%w: %s: timed out after %s", ErrHook, strings.Join(h.Command, " "), timeout)
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %w: %s", ErrHook, strings.Join(h.Command, " "), err, tail(out.String(), 512))
		}
	}
	if h.Signal != "" {
		sig, err := ParseSignal(h.Signal)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrHook, err)
		}
		raw, err := os.ReadFile(h.PIDFile)
		if err != nil {
			return fmt.Errorf("%w: signal %s: %w", ErrHook, h.Signal, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 1 {
			return fmt.Errorf("%w: signal %s: %s does not hold a usable pid", ErrHook, h.Signal, h.PIDFile)
		}
		p, err := os.FindProcess(pid)
		if err == nil {
			err = p.Signal(sig)
		}
		if err != nil {
			return fmt.Errorf("%w: signal %s to pid %d (%s): %w", ErrHook, h.Signal, pid, h.PIDFile, err)
		}
	}
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
