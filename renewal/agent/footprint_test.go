package agent

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/testca"
)

// Issue 4's targets for an idle agent.
const (
	maxIdleRSSMB = 15
	idleWindow   = 3 * time.Second
)

// agentBinary is one way to run the agent: the lanyard binary, or
// cmd/lanyard-agent (the same agent without the rest of lanyard).
type agentBinary struct {
	name string
	argv []string // the config file path is appended
}

// buildAgents builds the slim lanyard-agent and the full lanyard binary.
func buildAgents(t *testing.T) []agentBinary {
	t.Helper()
	root := realtools.RepoRoot(t)
	build := func(pkg, name string) string {
		bin := filepath.Join(t.TempDir(), name)
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
		return bin
	}
	return []agentBinary{
		{name: "lanyard-agent", argv: []string{build("./cmd/lanyard-agent", "lanyard-agent"), "--config"}},
		{name: "lanyard agent", argv: []string{build("./cmd/lanyard", "lanyard"), "agent", "--config"}},
	}
}

// procStatus reads fields of /proc/PID/status (kB values as numbers).
func procStatus(t *testing.T, path string, fields ...string) map[string]int64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if k == f {
				n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				out[f] = n
			}
		}
	}
	return out
}

// contextSwitches sums the context switches of every thread of pid: each
// wake-up of an idle thread is one (voluntary) switch.
func contextSwitches(t *testing.T, pid int) int64 {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "status"))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var n int64
	for _, p := range tasks {
		s := procStatus(t, p, "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
		n += s["voluntary_ctxt_switches"] + s["nonvoluntary_ctxt_switches"]
	}
	return n
}

// TestAgentIdleFootprint builds the agent binaries, runs each against a
// real CA with a 24-hour certificate (next renewal hours away), and
// measures what an idle agent costs: resident memory and wake-ups. Issue 4
// asks for ≤ 15 MB and no periodic wake-ups but the cheap suspend check
// (once a minute, so none in the measured seconds).
func TestAgentIdleFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("footprint measurement: make test runs it, make test-quick (-short) does not")
	}
	ca := testca.Start(t, testca.Options{})
	dir := enroll(t, ca, ca.URL, "idle.covalent.example.net", "P-256")
	cfgPath := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte("dirs:\n  - path: "+dir+"\nmetrics_listen: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, b := range buildAgents(t) {
		t.Run(b.name, func(t *testing.T) {
			rssMB, anonMB, wakeups := measureIdle(t, append(b.argv, cfgPath))
			t.Logf("idle agent (%s): RSS %.1f MB (private/anonymous %.1f MB; the rest is clean, shared pages of the executable), %d context switches in %s",
				b.name, rssMB, anonMB, wakeups, idleWindow)
			// The agent's own memory is the anonymous part; file-backed
			// pages of the binary depend on its size and the kernel's
			// fault-around, and are reclaimable.
			// The slim binary must meet the figure in total RSS;
			// for the full binary (CA code linked in) its own memory,
			// the anonymous part, must.
			if b.name == "lanyard-agent" && rssMB > maxIdleRSSMB {
				t.Errorf("idle RSS %.1f MB, want ≤ %d MB", rssMB, maxIdleRSSMB)
			}
			if anonMB > maxIdleRSSMB {
				t.Errorf("idle anonymous RSS %.1f MB, want ≤ %d MB", anonMB, maxIdleRSSMB)
			}
			// The only timer is the 1-minute suspend check: allow the Go
			// runtime's own housekeeping, nothing periodic of ours.
			if wakeups > 20 {
				t.Errorf("%d context switches in %s: the idle agent wakes up periodically", wakeups, idleWindow)
			}
		})
	}
}

// measureIdle runs argv until it logs its next renewal, lets it settle,
// and returns its RSS and anonymous RSS (MB) and the context switches of
// all its threads over idleWindow.
func measureIdle(t *testing.T, argv []string) (rssMB, anonMB float64, wakeups int64) {
	cmd := exec.Command(argv[0], argv[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	scheduled := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "next renewal of") {
				select {
				case scheduled <- sc.Text():
				default:
				}
			}
		}
	}()
	select {
	case line := <-scheduled:
		t.Logf("agent: %s", line)
	case <-time.After(30 * time.Second):
		t.Fatal("the agent never logged its next renewal")
	}
	pid := cmd.Process.Pid
	// Let start-up settle, then measure an idle stretch.
	<-time.After(time.Second)
	before := contextSwitches(t, pid)
	<-time.After(idleWindow)
	wakeups = contextSwitches(t, pid) - before
	st := procStatus(t, filepath.Join("/proc", strconv.Itoa(pid), "status"), "VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")
	t.Logf("VmRSS %d kB (anon %d kB, file %d kB), peak %d kB, %d threads", st["VmRSS"], st["RssAnon"], st["RssFile"], st["VmHWM"], st["Threads"])
	return float64(st["VmRSS"]) / 1024, float64(st["RssAnon"]) / 1024, wakeups
}
