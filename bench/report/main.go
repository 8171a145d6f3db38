// Command report is lanyard's benchmark: `make bench` runs it. It starts a
// real `lanyard serve` (durable bbolt in a temp folder, TLS on loopback),
// drives it with a load generator on the same machine — tokens, keys and
// CSRs prepared before the timed window — and collects the figures the
// issues ask for into one markdown table, printed and written to
// bench/RESULTS.md with the date and the machine:
//
//   - issuance (Enroll) at c=1/16/64: certificates/s and p50/p95/p99
//   - issuance at c=64 with a strict (per-certificate zlint) profile
//   - renewals at c=64, each over a fresh mTLS connection
//   - ACME new-order → finalize at c=16 (acme.go)
//   - CRL build+sign with 100,000 entries, first page of a CN-prefix
//     search over 1,000,000 records, agent idle RSS (from go test)
//
// Each load figure is the median of -runs runs.
package main

import (
	"bytes"
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
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
)

func main() {
	var (
		bin      = flag.String("lanyard", "bin/lanyard", "lanyard binary")
		runs     = flag.Int("runs", 5, "runs per load cell (median reported)")
		n        = flag.Int("n", 3000, "timed requests per run at c=16 and c=64 (c=1 does n/6)")
		out      = flag.String("out", "bench/RESULTS.md", "markdown report to write ('' = none)")
		goBench  = flag.Bool("gobench", true, "also run the go test benchmarks (CRL 100k, search 1M, agent RSS)")
		stepca   = flag.String("stepca", "", "step-ca run.sh summary file to quote (optional)")
		keepTemp = flag.Bool("keep", false, "keep the temp folder")
		only     = flag.String("only", "", "run only the load cells whose name contains this (profiling)")
		pg       = flag.Bool("postgres", true, "also measure enroll on PostgreSQL, one replica and two (needs Debian's postgresql, which make deps installs)")
		pgParams = flag.String("pgparams", "", "store URL parameters for the PostgreSQL rows, for tuning (lanyard_writers=2&lanyard_linger=1ms)")
	)
	flag.Parse()
	if abs, err := filepath.Abs(*bin); err == nil {
		*bin = abs // servers run in their temp folder
	}
	// The generator shares the machine with the server: keep its own GC
	// cost low so the figures are about the server.
	debug.SetGCPercent(400)
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	rep := &report{runs: *runs}
	dir, err := os.MkdirTemp("", "lanyard-bench-")
	if err != nil {
		log.Fatal(err)
	}
	if !*keepTemp {
		defer os.RemoveAll(dir)
	}
	srv, err := startServer(*bin, dir, "", "lanyard", true, "")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.stop()
	ctx := context.Background()
	cells := []struct {
		name, profile string
		c, n          int
		renew         bool
		keepAlive     bool
	}{
		{"enroll", "covalent", 1, *n / 6, false, false},
		{"enroll", "covalent", 16, *n, false, false},
		{"enroll", "covalent", 64, *n, false, false},
		{"enroll (strict zlint)", "strict", 64, *n, false, false},
		{"renew (fresh mTLS)", "covalent", 64, *n, true, false},
		{"renew (keep-alive mTLS, as step-ca's generator)", "covalent", 64, *n, true, true},
	}
	for _, cell := range cells {
		if !strings.Contains(cell.name, *only) {
			continue
		}
		var results []result
		for r := 0; r < *runs; r++ {
			res, err := srv.load(ctx, cell.profile, cell.c, cell.n, cell.renew, cell.keepAlive)
			if err != nil {
				log.Fatalf("%s c=%d: %v", cell.name, cell.c, err)
			}
			log.Printf("%s c=%d run %d: %.0f/s p50=%.1fms p99=%.1fms errors=%d", cell.name, cell.c, r+1, res.rate, ms(res.p50), ms(res.p99), res.errors)
			results = append(results, res)
		}
		rep.add(fmt.Sprintf("%s, c=%d", cell.name, cell.c), median(results))
	}
	srv.stop()
	if strings.Contains(acmeRowName, *only) {
		if err := rep.acmeRow(ctx, *bin, *runs, *n/3); err != nil {
			log.Printf("ACME row skipped: %v", err)
		}
	}
	if *pg {
		if err := rep.postgres(ctx, *bin, *runs, *n, *only, *pgParams); err != nil {
			log.Printf("PostgreSQL rows skipped: %v", err)
		}
	}
	if *goBench {
		rep.goFigures()
	}
	if *stepca != "" {
		if b, err := os.ReadFile(*stepca); err == nil {
			rep.stepca = strings.TrimSpace(string(b))
		}
	}
	md := rep.markdown()
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type server struct {
	// peers are further replicas on the same database; load spreads
	// enrollments over them too.
	peers   []*server
	cmd     *exec.Cmd
	url     string
	admin   *caclient.Clients
	roots   []byte
	chain   []byte
	ca      string
	mu      sync.Mutex
	stopped bool
	// dbPID is the PostgreSQL postmaster's, when the store is one.
	dbPID int
}

const benchConfig = `listen: 127.0.0.1:%d
data_dir: %s
%sserver_names: [localhost, 127.0.0.1]
default_profile: covalent
profiles:
  covalent:
    cn: ["*.covalent.example.net"]
    default_ttl: 24h
  strict:
    cn: ["*.strict.example.net"]
    default_ttl: 24h
    strict: true
limits:
  rate_per_client: 0
  max_handshakes: 512
log_level: warn
`

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts `lanyard serve` on the CA folder in dir (made by
// `lanyard init` when init is set) with the store at storeURL (""
// means the bbolt file in dir); name tells replicas' config files apart;
// extra is appended to the config.
func startServer(bin, dir, storeURL, name string, init bool, extra string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	storeLine := ""
	if storeURL != "" {
		storeLine = fmt.Sprintf("store: %q\n", storeURL)
	}
	cfg := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, benchConfig+extra, port, dir, storeLine), 0o600); err != nil {
		return nil, err
	}
	if init {
		initOut, err := exec.Command(bin, "init", "--config", cfg).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("lanyard init: %v\n%s", err, initOut)
		}
	}
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Dir = dir // dev mode writes .lanyard/ where it runs
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: fmt.Sprintf("https://127.0.0.1:%d", port), ca: filepath.Join(dir, "ca")}
	s.roots, _ = os.ReadFile(filepath.Join(s.ca, "root.crt"))
	s.chain, _ = os.ReadFile(filepath.Join(s.ca, "intermediate.crt"))
	admin, err := tls.LoadX509KeyPair(filepath.Join(s.ca, "admin.crt"), filepath.Join(s.ca, "admin.key"))
	if err != nil {
		s.stop()
		return nil, err
	}
	if s.admin, err = caclient.New(s.url, s.roots, &admin); err != nil {
		s.stop()
		return nil, err
	}
	for i := 0; ; i++ {
		resp, err := s.admin.HTTP.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			s.stop()
			return nil, fmt.Errorf("server did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
	}
}

type result struct {
	rate          float64
	p50, p95, p99 time.Duration
	errors        int
	// serverCPU is the server process's CPU time per request; dbCPU is
	// PostgreSQL's (0 on bbolt), genCPU the load generator's.
	serverCPU, dbCPU, genCPU time.Duration
	// commitsPerSec and writesPerCommit are the store's group commits.
	commitsPerSec, writesPerCommit float64
}

type prepared struct {
	token string
	csr   []byte
	cert  *tls.Certificate // for renewals
}

// prepare makes n tokens (admin calls, 32 at a time) and CSRs, and for
// renewals enrolls them too; none of it is timed.
func (s *server) prepare(ctx context.Context, profile string, n int, renew bool) ([]prepared, error) {
	domain := "covalent.example.net"
	if profile == "strict" {
		domain = "strict.example.net"
	}
	items := make([]prepared, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := s.prepareOne(ctx, &items[i], fmt.Sprintf("b%d.%s", i, domain), profile, renew); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return items, nil
}

func newCSR() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	return key, der, err
}

func (s *server) prepareOne(ctx context.Context, it *prepared, cn, profile string, renew bool) error {
	resp, err := s.admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: cn, Profile: profile}))
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	key, der, err := newCSR()
	if err != nil {
		return err
	}
	it.token, it.csr = resp.Msg.GetToken(), der
	if !renew {
		return nil
	}
	er, err := s.admin.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: it.token, Csr: der}))
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	blk, _ := pem.Decode([]byte(er.Msg.GetBundle().GetCertificatePem()))
	chainBlk, _ := pem.Decode([]byte(er.Msg.GetBundle().GetChainPem()))
	it.cert = &tls.Certificate{Certificate: [][]byte{blk.Bytes, chainBlk.Bytes}, PrivateKey: key}
	_, it.csr, err = newCSR() // renewal needs a new key
	return err
}

// load runs one timed window of n requests at concurrency c.
func (s *server) load(ctx context.Context, profile string, c, n int, renew, keepAlive bool) (result, error) {
	items, err := s.prepare(ctx, profile, n, renew)
	if err != nil {
		return result{}, err
	}
	pool, err := caclient.Pool(s.roots)
	if err != nil {
		return result{}, err
	}
	shared := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: c, MaxConnsPerHost: c, ForceAttemptHTTP2: false,
	}}
	// Enrollments are spread over the server and its peers (replicas on
	// the same database), worker by worker.
	replicas := append([]*server{s}, s.peers...)
	enrollClients := make([]certificateClient, len(replicas))
	for i, r := range replicas {
		enrollClients[i] = v1ClientFor(shared, r.url)
	}
	if !renew && !keepAlive {
		// Open the c keep-alive connections before the window, as step-ca's
		// generator warms up (WARMUP requests): the window measures
		// issuance, not 64 TLS handshakes at its start.
		for _, r := range replicas {
			if err := warmUp(ctx, shared, r.url, c); err != nil {
				return result{}, err
			}
		}
	}
	c0, w0 := s.commitStats()
	meter := startCPU(s)
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		// With keepAlive each worker renews its own certificate again and
		// again over one mTLS connection (step-ca's generator does this).
		var own certificateClient
		if keepAlive {
			cert := items[w].cert
			own = v1ClientFor(&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: pool, MinVersion: tls.VersionTLS12,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
			}}}, s.url)
		}
		enrollClient := enrollClients[w%len(enrollClients)]
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				it := items[i]
				t0 := time.Now()
				var err error
				if keepAlive {
					_, err = own.Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: it.csr}))
				} else if renew {
					// A fresh client per renewal: new TCP + TLS handshake with
					// the current certificate, as a real agent does.
					cert := it.cert
					hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
						RootCAs: pool, MinVersion: tls.VersionTLS12,
						GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
					}}}
					_, err = v1ClientFor(hc, s.url).Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: it.csr}))
				} else {
					_, err = enrollClient.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: it.token, Csr: it.csr}))
				}
				lat[i] = time.Since(t0)
				if err != nil {
					if errs.Add(1) == 1 {
						log.Printf("first error: %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	res := summarize(lat, time.Since(start), int(errs.Load()), meter)
	if c1, w1 := s.commitStats(); c1 > c0 {
		res.commitsPerSec = (c1 - c0) * res.rate / float64(n)
		res.writesPerCommit = (w1 - w0) / (c1 - c0)
	}
	log.Printf("  CPU per request: server %d µs, database %d µs, generator %d µs; store %.0f commits/s, %.1f writes per commit",
		res.serverCPU.Microseconds(), res.dbCPU.Microseconds(), res.genCPU.Microseconds(), res.commitsPerSec, res.writesPerCommit)
	return res, nil
}

// warmUp opens c connections of hc to url at once (GET /healthz on each,
// concurrently), which hc then keeps idle for the timed window.
func warmUp(ctx context.Context, hc *http.Client, url string, c int) error {
	var wg sync.WaitGroup
	errs := make(chan error, c)
	for range c {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
			if err == nil {
				var resp *http.Response
				if resp, err = hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

// summarize makes a result of one timed window: its latencies (sorted
// here), how long it took, its errors and the CPU time of its parts.
func summarize(lat []time.Duration, elapsed time.Duration, errs int, m *cpuMeter) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	n := len(lat)
	res := result{rate: float64(n) / elapsed.Seconds(), p50: pct(.50), p95: pct(.95), p99: pct(.99), errors: errs}
	res.serverCPU, res.dbCPU, res.genCPU = m.perOp(n)
	return res
}

// cpuTime is the user+system CPU time so far of the server process and
// its peers (Linux).
func (s *server) cpuTime() time.Duration {
	t := processCPU(s.cmd.Process.Pid)
	for _, p := range s.peers {
		t += processCPU(p.cmd.Process.Pid)
	}
	return t
}

// commitStats scrapes the group-commit counters of the server and its
// peers from /metrics, summed.
func (s *server) commitStats() (commits, writes float64) {
	for _, r := range append([]*server{s}, s.peers...) {
		c, w := r.ownCommitStats()
		commits, writes = commits+c, writes+w
	}
	return commits, writes
}

// ownCommitStats scrapes this server's group-commit counters.
func (s *server) ownCommitStats() (commits, writes float64) {
	resp, err := s.admin.HTTP.Get(s.url + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "lanyard_store_commits_total":
			commits = v
		case "lanyard_store_committed_writes_total":
			writes = v
		}
	}
	return commits, writes
}

type certificateClient interface {
	Enroll(context.Context, *connect.Request[v1.EnrollRequest]) (*connect.Response[v1.EnrollResponse], error)
	Renew(context.Context, *connect.Request[v1.RenewRequest]) (*connect.Response[v1.RenewResponse], error)
}

func v1ClientFor(hc *http.Client, url string) certificateClient {
	cl, _ := caclient.NewWithHTTP(url, hc)
	return cl.Certificates
}

// median picks the run with the median rate, and the median of each
// latency percentile independently.
func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	errs := 0
	for _, r := range rs {
		errs += r.errors
	}
	return result{
		rate:      pick(func(r result) float64 { return r.rate }),
		p50:       time.Duration(pick(func(r result) float64 { return float64(r.p50) })),
		p95:       time.Duration(pick(func(r result) float64 { return float64(r.p95) })),
		p99:       time.Duration(pick(func(r result) float64 { return float64(r.p99) })),
		errors:    errs,
		serverCPU: time.Duration(pick(func(r result) float64 { return float64(r.serverCPU) })),
		dbCPU:     time.Duration(pick(func(r result) float64 { return float64(r.dbCPU) })),
		genCPU:    time.Duration(pick(func(r result) float64 { return float64(r.genCPU) })),

		commitsPerSec:   pick(func(r result) float64 { return r.commitsPerSec }),
		writesPerCommit: pick(func(r result) float64 { return r.writesPerCommit }),
	}
}

type row struct {
	name   string
	res    *result
	figure string
	target string
}

type report struct {
	runs   int
	rows   []row
	stepca string
}

var targets = map[string]string{
	"enroll, c=64":             "≥ 5,000/s, p99 ≤ 30 ms",
	"renew (fresh mTLS), c=64": "≥ 4,000/s",
}

func (r *report) add(name string, res result) {
	r.rows = append(r.rows, row{name: name, res: &res, target: targets[name]})
}

// goFigures runs the go test benchmarks and tests that measure the other
// figures and parses their output.
func (r *report) goFigures() {
	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		var buf bytes.Buffer
		// Results and t.Logf lines are on stdout; the code under test logs
		// to stderr, which must not interleave with them.
		cmd.Stdout, cmd.Stderr = &buf, io.Discard
		if err := cmd.Run(); err != nil {
			log.Printf("go %s: %v", strings.Join(args, " "), err)
		}
		return buf.String()
	}
	nsop := regexp.MustCompile(`(Benchmark\S+)\s+\d+\s+([\d.]+) ns/op`)
	medianOf := func(out, name string) (float64, int) {
		var v []float64
		for _, m := range nsop.FindAllStringSubmatch(out, -1) {
			if strings.HasPrefix(m[1], name) {
				f, _ := strconv.ParseFloat(m[2], 64)
				v = append(v, f)
			}
		}
		if len(v) == 0 {
			return 0, 0
		}
		sort.Float64s(v)
		return v[len(v)/2], len(v)
	}
	out := run("test", "-run", "^$", "-bench", "BenchmarkBuildCRL100k", "-benchtime", "3x", "-count", strconv.Itoa(r.runs), "./revocation/")
	if v, k := medianOf(out, "BenchmarkBuildCRL100k/build"); k > 0 {
		r.rows = append(r.rows, row{name: "CRL build + sign, 100,000 entries", figure: fmt.Sprintf("%.0f ms (median of %d)", v/1e6, k), target: "≤ 200 ms"})
	}
	out = run("test", "-run", "^$", "-bench", "^BenchmarkSignLeaf(PKCS11)?$", "-count", strconv.Itoa(r.runs), "./ca/")
	soft, ks := medianOf(out, "BenchmarkSignLeaf-")
	hsm, kh := medianOf(out, "BenchmarkSignLeafPKCS11")
	if ks > 0 && kh > 0 {
		r.rows = append(r.rows, row{name: "leaf signing, intermediate key in a PKCS#11 token (softhsm2), one at a time",
			figure: fmt.Sprintf("%.0f µs/cert (%.0f/s); key on disk %.0f µs/cert (%.0f/s) (medians of %d)", hsm/1e3, 1e9/hsm, soft/1e3, 1e9/soft, kh),
			target: "reported"})
	}
	out = run("test", "-run", "^$", "-bench", "BenchmarkSearchFirstPage1M", "-benchtime", "300x", "-count", "1", "-timeout", "30m", "./web/")
	if v, k := medianOf(out, "BenchmarkSearchFirstPage1M"); k > 0 {
		r.rows = append(r.rows, row{name: "admin search, first page of CN prefix, 1,000,000 records", figure: fmt.Sprintf("%.2f ms (mean of 300 searches; the store is filled once)", v/1e6), target: "≤ 50 ms"})
	}
	out = run("test", "-count=1", "-run", "TestAgentIdleFootprint", "-v", "./renewal/agent/")
	idle := regexp.MustCompile(`idle agent \(([^)]*)\): RSS ([\d.]+) MB \(private/anonymous ([\d.]+) MB[^)]*\), (\d+) context switches in (\S+)`)
	for _, m := range idle.FindAllStringSubmatch(out, -1) {
		r.rows = append(r.rows, row{name: "agent idle RSS (" + m[1] + ")",
			figure: fmt.Sprintf("%s MB total, %s MB private; %s context switches in %s", m[2], m[3], m[4], m[5]), target: "≤ 15 MB, no periodic wake-ups"})
	}
	out = run("test", "-run", "^$", "-bench", "BenchmarkFloodIsolation", "-benchtime", "1x", "-count", "3", "./server/")
	ratio := regexp.MustCompile(`\s\d+\s+\d+ ns/op\s+([\d.]+) flooded-p99-ms\s+([\d.]+) quiet-p99-ms\s+([\d.]+) ratio`)
	var ratios []float64
	var quiet, flooded []float64
	for _, m := range ratio.FindAllStringSubmatch(out, -1) {
		f, _ := strconv.ParseFloat(m[1], 64)
		q, _ := strconv.ParseFloat(m[2], 64)
		x, _ := strconv.ParseFloat(m[3], 64)
		flooded, quiet, ratios = append(flooded, f), append(quiet, q), append(ratios, x)
	}
	if len(ratios) > 0 {
		sort.Float64s(ratios)
		sort.Float64s(quiet)
		sort.Float64s(flooded)
		k := len(ratios) / 2
		r.rows = append(r.rows, row{name: "quiet host p99 while another floods (rate-limited)",
			figure: fmt.Sprintf("%.1f ms alone, %.1f ms flooded: %.2f× (median of %d)", quiet[k], flooded[k], ratios[k], len(ratios)), target: "≤ 2×"})
	}
}

func (r *report) markdown() string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# lanyard benchmark results\n\n")
	fmt.Fprintf(&b, "Measured %s on %s: %d cores, %s, %s/%s. Produced by `make bench` (bench/report).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "A real `lanyard serve` (durable bbolt, or PostgreSQL where the row says so; TLS on loopback) and the load generator share the machine. "+
		"Tokens, keys and CSRs are prepared before each timed window. Load rows are the median of %d runs; "+
		"the machine is shared and noisy (±15%% between runs is usual).\n\n", r.runs)
	fmt.Fprintf(&b, "| measurement | result | p50 | p95 | p99 | server CPU/op | database + generator CPU/op | errors | target |\n|---|---|---|---|---|---|---|---|---|\n")
	var commits []string
	for _, row := range r.rows {
		if row.res == nil {
			fmt.Fprintf(&b, "| %s | %s | | | | | | | %s |\n", row.name, row.figure, row.target)
			continue
		}
		res := row.res
		db := "–"
		if res.dbCPU > 0 {
			db = fmt.Sprintf("%d µs", res.dbCPU.Microseconds())
		}
		fmt.Fprintf(&b, "| %s | %.0f/s | %.1f ms | %.1f ms | %.1f ms | %d µs | %s + %d µs | %d | %s |\n", row.name, res.rate, ms(res.p50), ms(res.p95), ms(res.p99),
			res.serverCPU.Microseconds(), db, res.genCPU.Microseconds(), res.errors, row.target)
		if res.writesPerCommit > 0 {
			commits = append(commits, fmt.Sprintf("%s: %.0f commits/s, %.1f writes per commit", row.name, res.commitsPerSec, res.writesPerCommit))
		}
	}
	if len(commits) > 0 {
		fmt.Fprintf(&b, "\nGroup commits (the store's counters, median run):\n\n")
		for _, c := range commits {
			fmt.Fprintf(&b, "- %s\n", c)
		}
	}
	fmt.Fprintf(&b, "\nThe server, PostgreSQL and the load generator share %d cores, so a row's rate is at most %d s of CPU per second "+
		"divided by the sum of its three CPU times per request.\n", runtime.NumCPU(), runtime.NumCPU())
	if r.stepca != "" {
		fmt.Fprintf(&b, "\nstep-ca v0.30.2 on the same machine in the same session (../shared/tools/stepca-bench/run.sh):\n\n```\n%s\n```\n", r.stepca)
	}
	return b.String()
}
