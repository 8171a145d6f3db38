package crashtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
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
	"github.com/lanyard/lanyard/migrations"
	"github.com/lanyard/lanyard/store"
)

var lanyardBin string

// totals is TestCrashSafety's summary, printed last by TestMain.
var totals string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // TestCrashSafety skips itself: no binary to build
	}
	dir, err := os.MkdirTemp("", "lanyard-crash-bin-")
	if err != nil {
		panic(err)
	}
	lanyardBin = filepath.Join(dir, "lanyard")
	out, err := exec.Command("go", "build", "-o", lanyardBin, "github.com/lanyard/lanyard/cmd/lanyard").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build lanyard: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if totals != "" {
		fmt.Println(totals) // the last line of the run, as the issue asks
	}
	os.Exit(code)
}

const crashConfig = `listen: 127.0.0.1:%d
data_dir: %s
default_profile: covalent
profiles:
  covalent:
    cn: ["*.covalent.example.net"]
limits:
  rate_per_client: 0
log_level: error
`

// cycles is 3 in `make test` and 20 in `make test-crash`
// (LANYARD_CRASH_CYCLES=20).
func cycles() int {
	if n, err := strconv.Atoi(os.Getenv("LANYARD_CRASH_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 3
}

type held struct {
	serial string
	cert   *tls.Certificate
}

// ledger is what clients received: every serial they were handed, with the
// token that paid for it or the serial it renews.
type ledger struct {
	mu      sync.Mutex
	byToken map[string]string // serial -> token id
	renewed map[string]string // serial -> previous serial
	certs   []held
}

func (l *ledger) add(serial, tokenID, prev string, cert *tls.Certificate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tokenID != "" {
		l.byToken[serial] = tokenID
	} else {
		l.renewed[serial] = prev
	}
	l.certs = append(l.certs, held{serial, cert})
}

func (l *ledger) pick() (held, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.certs) == 0 {
		return held{}, false
	}
	return l.certs[mrand.IntN(len(l.certs))], true
}

type proc struct {
	cmd *exec.Cmd
	url string
}

func start(t *testing.T, cfg string, port int) *proc {
	t.Helper()
	cmd := exec.Command(lanyardBin, "serve", "--config", cfg)
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

func newCSR() (crypto.Signer, []byte) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	return k, der
}

func crlNumber(t *testing.T, cl *caclient.Clients) int64 {
	t.Helper()
	resp, err := cl.HTTP.Get(cl.URL + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(der)
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
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := filepath.Join(dir, "lanyard.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, crashConfig, port, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(lanyardBin, "init", "--config", cfg).CombinedOutput(); err != nil {
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
	led := &ledger{byToken: map[string]string{}, renewed: map[string]string{}}
	var lastCRL int64
	n := cycles()
	ctx := context.Background()
	for cycle := 0; cycle < n; cycle++ {
		p := start(t, cfg, port)
		waitHealthy(t, admin)
		// Everything received before this crash must still be there.
		checkLedger(t, admin, led)
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
				hc := caclient.HTTPClient(admin.HTTP.Transport.(*http.Transport).TLSClientConfig.RootCAs, nil)
				anon, _ := caclient.NewWithHTTP(admin.URL, hc)
				for loadCtx.Err() == nil {
					switch {
					case w%8 == 7: // revokers keep the CRL number moving
						if h, ok := led.pick(); ok {
							_, _ = admin.Admin.RevokeCertificate(loadCtx, connect.NewRequest(&v1.RevokeCertificateRequest{Serial: h.serial, Reason: 4}))
						}
						time.Sleep(20 * time.Millisecond)
					case w%2 == 0: // enrollers
						i := int(next.Add(1)) - 1
						if i >= len(toks) {
							time.Sleep(5 * time.Millisecond)
							continue
						}
						key, der := newCSR()
						resp, err := anon.Certificates.Enroll(loadCtx, connect.NewRequest(&v1.EnrollRequest{Token: toks[i].secret, Csr: der}))
						if err == nil {
							led.add(resp.Msg.GetBundle().GetSerial(), toks[i].id, "", bundleCert(resp.Msg.GetBundle(), key))
						}
					default: // renewers
						h, ok := led.pick()
						if !ok {
							time.Sleep(5 * time.Millisecond)
							continue
						}
						cert := h.cert
						rc, _ := caclient.NewWithHTTP(admin.URL, caclient.HTTPClient(admin.HTTP.Transport.(*http.Transport).TLSClientConfig.RootCAs, cert))
						key, der := newCSR()
						resp, err := rc.Certificates.Renew(loadCtx, connect.NewRequest(&v1.RenewRequest{Csr: der}))
						if err == nil {
							led.add(resp.Msg.GetBundle().GetSerial(), "", h.serial, bundleCert(resp.Msg.GetBundle(), key))
						}
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
	p := start(t, cfg, port)
	waitHealthy(t, admin)
	found := checkLedger(t, admin, led)
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
	perToken := map[string]int{}
	after, total := "", 0
	for {
		certs, next, err := db.ListCerts(store.CertQuery{Limit: 1000, After: after, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			total++
			if c.TokenID != "" {
				perToken[c.TokenID]++
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	for id, k := range perToken {
		if k > 1 {
			t.Errorf("token %s paid for %d certificates", id, k)
		}
	}
	db.Close()
	// Migrations are idempotent: a second open applies nothing and the
	// schema is at the newest version.
	db2, err := store.Open(filepath.Join(dir, "lanyard.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()
	led.mu.Lock()
	received := len(led.byToken) + len(led.renewed)
	led.mu.Unlock()
	t.Logf("crash: cycles=%d received=%d found=%d stored=%d double-redeemed=0 schema=%d", n, received, found, total, migrations.Latest())
	totals = fmt.Sprintf("crash-safety: cycles=%d certificates received=%d found=%d tokens redeemed twice=0", n, received, found)
}

func bundleCert(b *v1.Bundle, key crypto.Signer) *tls.Certificate {
	leaf, _ := pem.Decode([]byte(b.GetCertificatePem()))
	chain, _ := pem.Decode([]byte(b.GetChainPem()))
	return &tls.Certificate{Certificate: [][]byte{leaf.Bytes, chain.Bytes}, PrivateKey: key}
}

// checkLedger asks the restarted server for every certificate a client
// received and returns how many it found (all, or the test fails).
func checkLedger(t *testing.T, admin *caclient.Clients, led *ledger) int {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	found := 0
	check := func(serial string, want func(*v1.Certificate) bool, what string) {
		resp, err := admin.Admin.GetCertificate(context.Background(), connect.NewRequest(&v1.GetCertificateRequest{Serial: serial}))
		if err != nil {
			t.Fatalf("certificate %s was handed out but is not in the store: %v", serial, err)
		}
		if !want(resp.Msg.GetCertificate()) {
			t.Fatalf("certificate %s is stored without its %s", serial, what)
		}
		found++
	}
	for serial, tok := range led.byToken {
		check(serial, func(c *v1.Certificate) bool { return c.GetTokenId() == tok }, "token "+tok)
	}
	for serial, prev := range led.renewed {
		check(serial, func(c *v1.Certificate) bool { return c.GetPreviousSerial() == prev }, "predecessor "+prev)
	}
	return found
}
