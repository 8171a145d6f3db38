package replicas_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/engine"
)

// lanyardBinary builds cmd/lanyard once for the package's serve tests.
func lanyardBinary(t *testing.T) string {
	t.Helper()
	if raceBuild {
		t.Skip("spawns `lanyard serve` binaries, which are not race-built: the race pass would check nothing the plain pass does not")
	}
	if testing.Short() {
		t.Skip("builds and spawns `lanyard serve` processes: make test runs it, make test-quick (-short) does not")
	}
	return servetest.Binary(t)
}

// awsLog is what the emulated Roles Anywhere received: the number of
// every CRL sent to it (ImportCrl, UpdateCrl), in arrival order, and the
// trust anchors created.
type awsLog struct {
	emu            *emulator.Emulator
	endpoint       string
	mu             sync.Mutex
	crls           []int64
	anchorsCreated int
}

// wrap records each request's CRL number before the emulator answers it.
func (l *awsLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct {
			CrlData []byte `json:"crlData"`
		}
		l.mu.Lock()
		if json.Unmarshal(body, &in) == nil && len(in.CrlData) > 0 {
			if b, _ := pem.Decode(in.CrlData); b != nil {
				if rl, err := x509.ParseRevocationList(b.Bytes); err == nil {
					l.crls = append(l.crls, rl.Number.Int64())
				}
			}
		}
		if r.Method == http.MethodPost && strings.Trim(r.URL.Path, "/") == "trustanchors" {
			l.anchorsCreated++
		}
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// received reports whether a CRL numbered n or later reached the
// emulator: the CRL push is latest-wins (anchors), so a CRL superseded
// while an earlier push was in flight is never sent, and a later one
// lists everything it did.
func (l *awsLog) received(n int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.crls {
		if x >= n {
			return true
		}
	}
	return false
}

// startEmulator serves an emulated Roles Anywhere on loopback, recorded.
func startEmulator(t *testing.T) (endpoint string, log *awsLog) {
	t.Helper()
	emu := emulator.New(emulator.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log = &awsLog{emu: emu, endpoint: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: log.wrap(emu.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return log.endpoint, log
}

// replicaConfig is one replica's lanyard.yaml: its own listener and data
// folder, the shared CA folder and database, the trust-anchor sync to the
// emulator.
const replicaConfig = `listen: 127.0.0.1:%d
data_dir: %s
ca_dir: %s
store: %s
` + servetest.ServeProfile + `log_level: info
anchors:
  enabled: true
  endpoint: %s
  region: ` + emulator.DefaultRegion + `
  create: true
  role_arn: arn:aws:iam::123456789012:role/replicas
  interval: 1h
`

// replica is one `lanyard serve` process.
type replica struct {
	name, cfg, url, logPath string
	cmd                     *exec.Cmd
	admin                   *caclient.Clients
}

// cluster is two replicas of one CA on one database.
type cluster struct {
	bin   string
	caDir string // shared by the replicas
	dsn   string
	roots []byte
	env   []string
	reps  []*replica
	aws   *awsLog
	db    store.Store // the test's own connection, no lease
}

// newCluster sets up n replicas of one CA on a new database (not
// started); params are extra store URL parameters for the replicas
// (lanyard_lease_ttl=2s), not for the test's own connections.
func newCluster(t *testing.T, n int, params ...string) *cluster {
	t.Helper()
	c := &cluster{bin: lanyardBinary(t), dsn: pgtest.NewDatabase(t)}
	replicaDSN := c.dsn
	if len(params) > 0 {
		replicaDSN += "&" + strings.Join(params, "&")
	}
	endpoint, aws := startEmulator(t)
	c.aws = aws
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	c.caDir = caDir
	// The SDK's default chain finds the emulator's key in the
	// environment, and no shared AWS file of this machine.
	c.env = append(realtools.HelperEnv(), "AWS_ACCESS_KEY_ID="+emulator.DefaultAccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+emulator.DefaultSecretAccessKey, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"))
	for i := range n {
		r := &replica{name: string(rune('A' + i))}
		data := filepath.Join(dir, r.name)
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		port := servetest.FreePort(t)
		r.url = fmt.Sprintf("https://127.0.0.1:%d", port)
		r.cfg, r.logPath = filepath.Join(data, "lanyard.yaml"), filepath.Join(data, "serve.log")
		if err := os.WriteFile(r.cfg, fmt.Appendf(nil, replicaConfig, port, data, caDir, replicaDSN, endpoint), 0o600); err != nil {
			t.Fatal(err)
		}
		c.reps = append(c.reps, r)
	}
	if out, err := exec.Command(c.bin, "init", "--config", c.reps[0].cfg).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	var err error
	if c.roots, err = os.ReadFile(filepath.Join(caDir, "root.crt")); err != nil {
		t.Fatal(err)
	}
	adminCert, err := tls.LoadX509KeyPair(filepath.Join(caDir, "admin.crt"), filepath.Join(caDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range c.reps {
		if r.admin, err = caclient.New(r.url, c.roots, &adminCert); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		var kept string
		if t.Failed() {
			kept, _ = os.MkdirTemp("", "lanyard-replicas-logs-")
		}
		for _, r := range c.reps {
			if t.Failed() && r.cmd != nil {
				// A goroutine dump of each running replica into its log
				// (Go's SIGQUIT), for a failure that is a hang.
				_ = r.cmd.Process.Signal(syscall.SIGQUIT)
				_ = r.cmd.Wait()
				r.cmd = nil
			}
			c.stop(r)
			if t.Failed() {
				if b, err := os.ReadFile(r.logPath); err == nil {
					t.Logf("replica %s log (all of it, with a goroutine dump if it ran, in %s):\n%s", r.name, kept, tail(b, 6000))
					_ = os.WriteFile(filepath.Join(kept, r.name+".log"), b, 0o600)
				}
			}
		}
	})
	return c
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// setProfileTTL sets the covalent profile's default certificate
// lifetime in every replica's configuration (before they start).
func (c *cluster) setProfileTTL(t *testing.T, ttl time.Duration) {
	t.Helper()
	for _, r := range c.reps {
		b, err := os.ReadFile(r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		const cn = "    cn: [\"*.covalent.example.net\"]\n"
		if !bytes.Contains(b, []byte(cn)) {
			t.Fatalf("%s: no covalent profile to set a TTL on", r.cfg)
		}
		b = bytes.Replace(b, []byte(cn), []byte(cn+"    default_ttl: "+ttl.String()+"\n"), 1)
		if err := os.WriteFile(r.cfg, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// start starts r's `lanyard serve`, its output appended to r.logPath.
func (c *cluster) start(t *testing.T, r *replica) {
	t.Helper()
	f, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child holds its own descriptor
	r.cmd = exec.Command(c.bin, "serve", "--config", r.cfg)
	r.cmd.Env, r.cmd.Stdout, r.cmd.Stderr = c.env, f, f
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// stop ends r with SIGINT (its clean shutdown) if it still runs.
func (c *cluster) stop(r *replica) {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	_ = r.cmd.Wait()
	r.cmd = nil
}

// kill ends r with SIGKILL: no shutdown path runs, the lease is not
// released.
func (c *cluster) kill(t *testing.T, r *replica) {
	t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = r.cmd.Wait()
	r.cmd = nil
}

// waitHealthy polls r's /healthz until it answers 200 (a readiness wait:
// the bound only turns a replica that never comes up into a failure).
func waitHealthy(t *testing.T, r *replica) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := r.admin.HTTP.Get(r.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond) // poll interval
	}
	t.Fatalf("replica %s did not become healthy", r.name)
}

// openDB opens the test's own connection to the database (no lease).
func (c *cluster) openDB(t *testing.T) store.Store {
	t.Helper()
	if c.db == nil {
		db, err := engine.Open(context.Background(), c.dsn, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c.db = db
	}
	return c.db
}

// leader returns the process id of the lease holder and its epoch, read
// from the lease row (0 when no unexpired lease).
func (c *cluster) leader(t *testing.T) (pid int, epoch int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var holder string
	err = conn.QueryRow(ctx, "SELECT holder, epoch FROM leases WHERE name = 'leader' AND expires_at > now()").Scan(&holder, &epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	// holder is host-pid-random (store/postgres.LeaseOptions).
	f := strings.Split(holder, "-")
	if len(f) < 3 {
		t.Fatalf("lease holder %q is not host-pid-random", holder)
	}
	pid, err = strconv.Atoi(f[len(f)-2])
	if err != nil {
		t.Fatalf("lease holder %q: %v", holder, err)
	}
	return pid, epoch
}

// waitLeader waits until one of the running replicas holds the lease and
// returns it with the epoch.
func (c *cluster) waitLeader(t *testing.T, bound time.Duration) (*replica, int64) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		pid, epoch := c.leader(t)
		for _, r := range c.reps {
			if r.cmd != nil && r.cmd.Process.Pid == pid {
				return r, epoch
			}
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	t.Fatalf("no running replica holds the lease after %v", bound)
	return nil, 0
}

// waitPushed waits until the emulator received CRL n (or a later one) and the leader
// recorded the push in the shared store (so a kill after this cannot
// leave it unrecorded).
func (c *cluster) waitPushed(t *testing.T, n int64) {
	t.Helper()
	db := c.openDB(t)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		st, err := anchors.LoadStatus(db)
		if c.aws.received(n) && err == nil && st.CRLNumber >= n {
			return
		}
		time.Sleep(25 * time.Millisecond) // poll interval
	}
	c.aws.mu.Lock()
	defer c.aws.mu.Unlock()
	t.Fatalf("neither CRL %d nor a later one reached the emulated trust anchor (received %v)", n, c.aws.crls)
}

// anchorsStatus reads r's trust-anchor sync status (the default target)
// as the admin, through the GetAnchorStatus RPC.
func anchorsStatus(t *testing.T, r *replica) *v1.AnchorStatus {
	t.Helper()
	resp, err := r.admin.Admin.GetAnchorStatus(context.Background(), connect.NewRequest(&v1.GetAnchorStatusRequest{}))
	if err != nil {
		t.Fatalf("GetAnchorStatus on %s: %v", r.name, err)
	}
	if ts := resp.Msg.GetTargets(); len(ts) > 0 {
		return ts[0]
	}
	t.Fatalf("GetAnchorStatus on %s: no target", r.name)
	return nil
}

// load is enroll and renew traffic on every replica: tokens made on one
// replica and redeemed on the other, renewals on either.
type load struct {
	c      *cluster
	led    *servetest.Ledger
	seq    atomic.Int64
	ok     []atomic.Int64 // per replica
	failed []atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(t *testing.T, c *cluster, led *servetest.Ledger, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{c: c, led: led, ok: make([]atomic.Int64, len(c.reps)), failed: make([]atomic.Int64, len(c.reps)), cancel: cancel}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.roots)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			anon := make([]*caclient.Clients, len(c.reps))
			for i, r := range c.reps {
				anon[i], _ = caclient.NewWithHTTP(r.url, caclient.HTTPClient(pool, nil))
			}
			for ctx.Err() == nil {
				i := w % len(c.reps)
				var err error
				if w%4 < 2 {
					err = l.enroll(ctx, t, i, anon[(i+1)%len(c.reps)], (i+1)%len(c.reps))
				} else {
					err = l.renew(ctx, t, i, pool)
				}
				if err != nil && ctx.Err() == nil {
					time.Sleep(10 * time.Millisecond) // a dead replica refuses at once: do not spin
				}
			}
		}()
	}
	return l
}

// enroll makes a token on replica i and redeems it on replica j.
func (l *load) enroll(ctx context.Context, t *testing.T, i int, anon *caclient.Clients, j int) error {
	cn := fmt.Sprintf("h%d.covalent.example.net", l.seq.Add(1))
	tok, err := l.c.reps[i].admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: cn}))
	if err != nil {
		l.failed[i].Add(1)
		return err
	}
	if err := l.led.Enroll(ctx, t, anon, tok.Msg.GetToken(), tok.Msg.GetTokenId()); err != nil {
		l.failed[j].Add(1)
		return err
	}
	l.ok[j].Add(1)
	return nil
}

// renew renews a received certificate on replica i.
func (l *load) renew(ctx context.Context, t *testing.T, i int, pool *x509.CertPool) error {
	h, ok := l.led.Pick()
	if !ok {
		time.Sleep(5 * time.Millisecond) // nothing to renew yet
		return nil
	}
	if err := l.led.Renew(ctx, t, l.c.reps[i].url, pool, h); err != nil {
		l.failed[i].Add(1)
		return err
	}
	l.ok[i].Add(1)
	return nil
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// checkLedger checks that every certificate a client received is in the
// database with its token or predecessor, and that no token paid for two
// certificates; it returns how many it checked.
func (c *cluster) checkLedger(t *testing.T, led *servetest.Ledger) int {
	t.Helper()
	db := c.openDB(t)
	n := led.Check(t, servetest.StoreLookup(db))
	servetest.CheckSingleUse(t, db)
	return n
}

// revoke enrolls a new certificate on replica r and revokes it there,
// and returns the number of the first CRL that lists it.
func revoke(t *testing.T, r *replica) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cn := fmt.Sprintf("revoked-%d.covalent.example.net", mrand.Int64())
	tok, err := r.admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: cn}))
	if err != nil {
		t.Fatalf("token on %s: %v", r.name, err)
	}
	_, der := servetest.KeyAndCSR(t)
	cert, err := r.admin.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: tok.Msg.GetToken(), Csr: der}))
	if err != nil {
		t.Fatalf("enroll on %s: %v", r.name, err)
	}
	serial := cert.Msg.GetBundle().GetSerial()
	resp, err := r.admin.Admin.RevokeCertificate(ctx, connect.NewRequest(&v1.RevokeCertificateRequest{Serial: serial, Reason: 4}))
	if err != nil {
		t.Fatalf("revoke %s on %s: %v", serial, r.name, err)
	}
	return resp.Msg.GetCrlNumber()
}

// killLeaseTTL is the lease TTL of the leader-kill test's replicas
// (lanyard_lease_ttl): each cycle waits for a dead leader's lease to run
// out, so a short one keeps several cycles cheap; renewals every third of
// it still survive a loaded CI machine's pauses.
const killLeaseTTL = 2 * time.Second

// killCycles is LANYARD_KILL_CYCLES, else 3.
func killCycles(t *testing.T) int {
	v := os.Getenv("LANYARD_KILL_CYCLES")
	if v == "" {
		return 3
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("LANYARD_KILL_CYCLES=%q is not a positive number", v)
	}
	return n
}

// TestServeReplicasLeaderKilled runs two real `lanyard serve` processes on
// one database under enroll and renew load on both (64 clients), and
// several times (killCycles) kills the leader with SIGKILL: each time the
// other takes the lease within a bound of the lease TTL at a higher epoch
// and keeps serving, the CRL number goes on from where it was, and the
// killed replica comes back as a follower. At the end every certificate a
// client received is recorded with its token or predecessor and no token
// paid twice, and the emulated Roles Anywhere saw one trust anchor
// created and each CRL number at most once, in increasing order.
func TestServeReplicasLeaderKilled(t *testing.T) {
	c := newCluster(t, 2, "lanyard_lease_ttl="+killLeaseTTL.String())
	for _, r := range c.reps {
		c.start(t, r) // together: one migrates, the other waits on the lock
	}
	for _, r := range c.reps {
		waitHealthy(t, r)
	}
	led := servetest.NewLedger()
	l := startLoad(t, c, led, 64)
	idx := map[*replica]int{c.reps[0]: 0, c.reps[1]: 1}
	// issuing waits until r issued n more certificates.
	issuing := func(r *replica, n int64, what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for target := l.ok[idx[r]].Load() + n; l.ok[idx[r]].Load() < target; {
			if time.Now().After(deadline) {
				l.stop()
				t.Fatalf("%s: replica %s issued fewer than %d certificates in 60 s", what, r.name, n)
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	}
	var lastCRL int64
	var lead, follower *replica
	cycles := killCycles(t)
	for cycle := range cycles {
		var epoch int64
		lead, epoch = c.waitLeader(t, 3*killLeaseTTL+5*time.Second)
		follower = c.reps[1-idx[lead]]
		issuing(lead, 20, fmt.Sprintf("cycle %d, before the kill", cycle))
		issuing(follower, 20, fmt.Sprintf("cycle %d, before the kill", cycle))
		// A revocation on the follower: the leader builds and pushes it.
		n1 := revoke(t, follower)
		if n1 <= lastCRL {
			t.Fatalf("cycle %d: CRL number %d is not after %d", cycle, n1, lastCRL)
		}
		c.waitPushed(t, n1)

		killed := time.Now()
		c.kill(t, lead)
		newLead, newEpoch := c.waitLeader(t, 3*killLeaseTTL+5*time.Second)
		takeover := time.Since(killed)
		if newLead != follower || newEpoch <= epoch {
			t.Fatalf("cycle %d: after the kill the lease is held by %s at epoch %d (was %s at %d)", cycle, newLead.name, newEpoch, lead.name, epoch)
		}
		issuing(follower, 10, fmt.Sprintf("cycle %d, after the takeover", cycle))
		n2 := revoke(t, follower)
		if n2 <= n1 {
			t.Fatalf("cycle %d: CRL number %d after the takeover is not after %d", cycle, n2, n1)
		}
		c.waitPushed(t, n2)
		lastCRL = n2
		t.Logf("cycle %d: %s killed at epoch %d; %s leads at epoch %d after %v (lease TTL %v); CRL %d then %d",
			cycle, lead.name, epoch, follower.name, newEpoch, takeover.Round(time.Millisecond), killLeaseTTL, n1, n2)
		if cycle < cycles-1 {
			c.start(t, lead)
			waitHealthy(t, lead)
		}
	}
	l.stop()

	// The last one killed comes back as a follower, and a revocation on
	// it is pushed once, by the leader.
	c.start(t, lead)
	waitHealthy(t, lead)
	n3 := revoke(t, lead)
	if n3 <= lastCRL {
		t.Fatalf("CRL number %d on the restarted replica is not after %d", n3, lastCRL)
	}
	c.waitPushed(t, n3)
	if r, _ := c.waitLeader(t, 3*killLeaseTTL+5*time.Second); r != follower {
		t.Fatalf("the restarted replica %s took the lease from %s", r.name, follower.name)
	}
	// `lanyard anchors status` on the follower tells what the leader did.
	if st := anchorsStatus(t, lead); st.GetCrlNumber() < n3 {
		t.Fatalf("the follower's GetAnchorStatus says AWS holds CRL %d; the leader pushed %d", st.GetCrlNumber(), n3)
	}
	checked := c.checkLedger(t, led)

	c.aws.mu.Lock()
	defer c.aws.mu.Unlock()
	seen := map[int64]int{}
	for i, n := range c.aws.crls {
		seen[n]++
		if seen[n] > 1 {
			t.Errorf("CRL %d reached the trust anchor %d times (received %v)", n, seen[n], c.aws.crls)
		}
		if i > 0 && n < c.aws.crls[i-1] {
			t.Errorf("CRL numbers reached the trust anchor out of order: %v", c.aws.crls)
		}
	}
	if c.aws.anchorsCreated != 1 {
		t.Errorf("%d trust anchors created, want 1", c.aws.anchorsCreated)
	}
	t.Logf("replicas: %d certificates checked in the database; CRLs pushed %v; anchors created %d", checked, c.aws.crls, c.aws.anchorsCreated)
}
