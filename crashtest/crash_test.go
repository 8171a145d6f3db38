package crashtest

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/migrations"
	"github.com/lanyard/lanyard/store"
)

// totals is TestCrashSafety's summary, printed last by TestMain.
var totals string

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	servetest.RemoveBinary()
	if totals != "" {
		fmt.Println(totals) // the last line of the run, as the issue asks
	}
	os.Exit(code)
}

const crashConfig = `listen: 127.0.0.1:%d
data_dir: %s
` + servetest.ServeProfile + `log_level: error
`

// cycles is 3 in `make test` and 20 in `make test-crash`
// (LANYARD_CRASH_CYCLES=20).
func cycles() int {
	if n, err := strconv.Atoi(os.Getenv("LANYARD_CRASH_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 3
}

type proc struct {
	cmd *exec.Cmd
	url string
}

func start(t *testing.T, bin, cfg string, port int) *proc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &proc{cmd: cmd, url: fmt.Sprintf("https://127.0.0.1:%d", port)}
}

func waitHealthy(t *testing.T, cl *caclient.Clients) {
	t.Helper()
	for i := 0; i < 400; i++ {
		resp, err := cl.HTTP.Get(cl.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("server did not become healthy after restart")
}

func crlNumber(t *testing.T, cl *caclient.Clients) int64 {
	t.Helper()
	crl, err := servetest.FetchCRL(cl.HTTP, cl.URL)
	if err != nil {
		t.Fatalf("CRL after restart: %v", err)
	}
	return crl.Number.Int64()
}

// TestCrashSafety kills a real lanyard serve with SIGKILL at random moments
// while 64 clients enroll, renew and revoke, then restarts it and checks
// every promise: the store opens, every certificate a client received is
// recorded with its token (or predecessor), no token paid for two
// certificates, and the CRL number never went backwards.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash-safety cycles: make test runs them, make test-quick (-short) does not")
	}
	bin := servetest.Binary(t)
	dir := t.TempDir()
	port := servetest.FreePort(t)
	cfg := filepath.Join(dir, "lanyard.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, crashConfig, port, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "init", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	roots, _ := os.ReadFile(filepath.Join(dir, "ca", "root.crt"))
	adminCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca", "admin.crt"), filepath.Join(dir, "ca", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := caclient.New(fmt.Sprintf("https://127.0.0.1:%d", port), roots, &adminCert)
	if err != nil {
		t.Fatal(err)
	}
	led := servetest.NewLedger()
	var lastCRL int64
	n := cycles()
	ctx := context.Background()
	for cycle := 0; cycle < n; cycle++ {
		p := start(t, bin, cfg, port)
		waitHealthy(t, admin)
		// Everything received before this crash must still be there.
		led.Check(t, servetest.AdminLookup(admin))
		if num := crlNumber(t, admin); num < lastCRL {
			t.Fatalf("cycle %d: CRL number went back from %d to %d", cycle, lastCRL, num)
		} else {
			lastCRL = num
		}
		// Tokens for this cycle (untimed). Every fourth token is handed to
		// two workers at once: exactly one of them may win.
		type tok struct{ secret, id string }
		var toks []tok
		for i := 0; i < 300; i++ {
			resp, err := admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: fmt.Sprintf("c%d-%d.covalent.example.net", cycle, i)}))
			if err != nil {
				t.Fatalf("cycle %d token: %v", cycle, err)
			}
			toks = append(toks, tok{resp.Msg.GetToken(), resp.Msg.GetTokenId()})
			if i%4 == 0 {
				toks = append(toks, toks[len(toks)-1])
			}
		}
		var next atomic.Int64
		loadCtx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				roots := admin.HTTP.Transport.(*http.Transport).TLSClientConfig.RootCAs
				anon, _ := caclient.NewWithHTTP(admin.URL, caclient.HTTPClient(roots, nil))
				for loadCtx.Err() == nil {
					switch {
					case w%8 == 7: // revokers keep the CRL number moving
						if h, ok := led.Pick(); ok {
							_, _ = admin.Admin.RevokeCertificate(loadCtx, connect.NewRequest(&v1.RevokeCertificateRequest{Serial: h.Serial, Reason: 4}))
						}
						time.Sleep(20 * time.Millisecond)
					case w%2 == 0: // enrollers
						i := int(next.Add(1)) - 1
						if i >= len(toks) {
							time.Sleep(5 * time.Millisecond)
							continue
						}
						_ = led.Enroll(loadCtx, t, anon, toks[i].secret, toks[i].id)
					default: // renewers
						h, ok := led.Pick()
						if !ok {
							time.Sleep(5 * time.Millisecond)
							continue
						}
						_ = led.Renew(loadCtx, t, admin.URL, roots, h)
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(200+mrand.IntN(1200)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown path runs
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
		stop()
		wg.Wait()
	}
	// Final restart: check the ledger once more, then stop cleanly and
	// inspect the store itself.
	p := start(t, bin, cfg, port)
	waitHealthy(t, admin)
	found := led.Check(t, servetest.AdminLookup(admin))
	if num := crlNumber(t, admin); num < lastCRL {
		t.Fatalf("CRL number went back from %d to %d", lastCRL, num)
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
	db, err := store.Open(filepath.Join(dir, "lanyard.db"), store.Options{})
	if err != nil {
		t.Fatalf("store does not open after crashes: %v", err)
	}
	defer db.Close()
	total := servetest.CheckSingleUse(t, db)
	db.Close()
	// Migrations are idempotent: a second open applies nothing and the
	// schema is at the newest version.
	db2, err := store.Open(filepath.Join(dir, "lanyard.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()
	received := led.Received()
	t.Logf("crash: cycles=%d received=%d found=%d stored=%d double-redeemed=0 schema=%d", n, received, found, total, migrations.Latest())
	totals = fmt.Sprintf("crash-safety: cycles=%d certificates received=%d found=%d tokens redeemed twice=0", n, received, found)
}
