package replicas_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/anchors/emulator"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/servetest"
)

// The soak's hosts: real aws_signing_helper processes exchanging lanyard
// certificates for credentials at the emulated Roles Anywhere, while the
// chaos runs.
const (
	// soakRole is the role the replicas' trust-anchor sync names
	// (replicaConfig), allowed by the profile the soak adds.
	soakRole = "arn:aws:iam::123456789012:role/replicas"
	// soakRefuseGoal is the goal for a revoked host: refused at
	// the trust anchor within 5 s of its revocation. A revocation right
	// after a leader kill waits for the next leader (a lease TTL), so the
	// test's hard bound is soakPushBound and the totals say how many met
	// the goal.
	soakRefuseGoal = 5 * time.Second
	// soakFetchEvery is how often the client of each `serve` asks for
	// credentials, and soakFetchAttempts how many tries one fetch gets
	// before it counts as failed: the SDK's IMDS client makes 3.
	soakFetchEvery    = 250 * time.Millisecond
	soakFetchAttempts = 3
	// soakProfileTTL is the soak's certificate lifetime, the shortest
	// lanyard issues (issuance.MinTTL), so the agents renew (at about two
	// thirds of it) several times in a long soak.
	soakProfileTTL = 5 * time.Minute
)

// hostFiles is a host's certificate, chain and key on disk, as the agent
// writes them for the signing helper.
type hostFiles struct{ cert, chain, key string }

// writeHostFiles writes b and key into dir (the key 0600, PKCS#8).
func writeHostFiles(t *testing.T, dir string, b *v1.Bundle, key crypto.Signer) hostFiles {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	h := hostFiles{cert: filepath.Join(dir, "cert.pem"), chain: filepath.Join(dir, "chain.pem"), key: filepath.Join(dir, "key.pem")}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{h.cert, []byte(b.GetCertificatePem()), 0o644},
		{h.chain, []byte(b.GetChainPem()), 0o644},
		{h.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600},
	} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// rolesAnywhere is what the signing helper needs to reach the emulated
// Roles Anywhere: the trust anchor lanyard's leader created on its first
// sync, and a profile for soakRole.
type rolesAnywhere struct{ endpoint, anchor, profile string }

// rolesAnywhere waits for the leader's trust anchor and adds a profile
// with the shortest session AWS allows (900 s), so `serve` refreshes as
// often as it can.
func (c *cluster) rolesAnywhere(t *testing.T) rolesAnywhere {
	t.Helper()
	ra := rolesAnywhere{endpoint: c.aws.endpoint}
	deadline := time.Now().Add(soakOutageBound)
	for ra.anchor == "" {
		if as := c.aws.emu.TrustAnchors(); len(as) > 0 {
			ra.anchor = as[0].Arn
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader created no trust anchor within %v", soakOutageBound)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	var err error
	if ra.profile, err = c.aws.emu.SeedProfile(emulator.ProfileSpec{RoleArns: []string{soakRole}, DurationSeconds: 900}); err != nil {
		t.Fatal(err)
	}
	return ra
}

// flags are the helper's Roles Anywhere flags.
func (ra rolesAnywhere) flags() []string {
	return []string{"--trust-anchor-arn", ra.anchor, "--profile-arn", ra.profile, "--role-arn", soakRole,
		"--region", emulator.DefaultRegion, "--endpoint", ra.endpoint}
}

func (ra rolesAnywhere) args(h hostFiles) []string {
	return append([]string{"--certificate", h.cert, "--private-key", h.key, "--intermediates", h.chain}, ra.flags()...)
}

// credentialProcess runs the real `aws_signing_helper credential-process`
// once for h (a fresh CreateSession). Its output, which holds the
// credentials, is only returned on failure (then it holds the reason).
func (ra rolesAnywhere) credentialProcess(t *testing.T, h hostFiles) error {
	cmd := exec.Command(realtools.SigningHelper(t), append([]string{"credential-process"}, ra.args(h)...)...)
	cmd.Env = realtools.HelperEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("credential-process: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// helperServe is a client asking a host's real `aws_signing_helper
// serve` for credentials every soakFetchEvery through its IMDSv2
// endpoint, as an SDK on the host does, and the host agent's metrics.
type helperServe struct {
	url, metrics      string
	fetches, failures atomic.Int64
	lastErr           atomic.Value // error: the last failed fetch's reason
	cancel            context.CancelFunc
	done              chan struct{}
}

// startAgentHost sets up a host as in production: `lanyard enroll` (on
// r, with a token from r) writes its folder, and `lanyard agent` keeps it
// fresh over mTLS to r and supervises the real `aws_signing_helper serve`
// on the current version (restarting it on every renewal); a client
// fetches credentials through serve. Everything ends with t.
func (c *cluster) startAgentHost(t *testing.T, ra rolesAnywhere, r *replica, name, root string) *helperServe {
	t.Helper()
	var token string
	soakRetry(t, "token on "+r.name, func(ctx context.Context) error {
		tok, err := r.admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: name + ".covalent.example.net"}))
		if err == nil {
			token = tok.Msg.GetToken()
		}
		return err
	})
	dir, tokenFile := filepath.Join(root, name), filepath.Join(root, name+".token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enroll := exec.Command(c.bin, "enroll", "--ca", r.url, "--roots", filepath.Join(c.caDir, "root.crt"), "--token-file", tokenFile, "--out", dir)
	enroll.Env = c.env
	if out, err := enroll.CombinedOutput(); err != nil {
		t.Fatalf("lanyard enroll %s on %s: %v\n%s", name, r.name, err, out)
	}
	port, metrics := servetest.FreePort(t), servetest.FreePort(t)
	cfg := fmt.Sprintf(`dirs:
  - path: %s
    supervise_helper:
      path: %s
      port: %d
      args: [%s]
metrics_listen: 127.0.0.1:%d
backoff_initial: 200ms
backoff_max: 2s
`, dir, realtools.SigningHelper(t), port, strings.Join(ra.flags(), ", "), metrics)
	cfgPath := filepath.Join(root, name+"-agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(root, name+"-agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child holds its own descriptor
	agent := exec.Command(c.bin, "agent", "--config", cfgPath)
	agent.Env, agent.Stdout, agent.Stderr = realtools.HelperEnv(), logf, logf
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	s := startFetching(t, port)
	s.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics)
	t.Cleanup(func() {
		s.stop()
		_ = agent.Process.Signal(os.Interrupt) // the agent stops its helper
		_ = agent.Wait()
	})
	return s
}

// startFetching starts the client of the serve on port, once serve gives
// credentials (a readiness wait: the agent starts it after enrolling).
func startFetching(t *testing.T, port int) *helperServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &helperServe{url: fmt.Sprintf("http://127.0.0.1:%d", port), cancel: cancel, done: make(chan struct{})}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.fetch(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("aws_signing_helper serve on port %d gave no credentials in 30 s: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(soakFetchEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.fetches.Add(1)
			var err error
			for attempt := range soakFetchAttempts {
				if err = s.fetch(ctx); err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(time.Duration(1<<attempt) * time.Second) // the SDK's backoff between attempts, roughly
			}
			if err != nil && ctx.Err() == nil {
				s.failures.Add(1)
				s.lastErr.Store(err)
			}
		}
	}()
	return s
}

// renewals reads the agent's lanyard_agent_renewals_total (0 when the
// agent does not answer).
func (s *helperServe) renewals() int {
	resp, err := http.Get(s.metrics)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "lanyard_agent_renewals_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
}

func (s *helperServe) stop() {
	s.cancel()
	<-s.done
}

func (s *helperServe) token(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.url+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	b, err := s.do(req)
	return string(b), err
}

// fetch is one credential fetch as the SDK's IMDS provider makes it: a
// session token, the role name, then the credentials, which must be
// non-empty (serve v1.5 answers 200 with empty keys when its refresh
// failed).
func (s *helperServe) fetch(ctx context.Context) error {
	tok, err := s.token(ctx)
	if err != nil {
		return err
	}
	get := func(path string) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
		req.Header.Set("X-aws-ec2-metadata-token", tok)
		return s.do(req)
	}
	const base = "/latest/meta-data/iam/security-credentials/"
	name, err := get(base)
	if err != nil {
		return err
	}
	raw, err := get(base + strings.TrimSpace(string(name)))
	if err != nil {
		return err
	}
	var cr struct{ Code, AccessKeyId, SecretAccessKey, Token string }
	if err := json.Unmarshal(raw, &cr); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if cr.Code != "Success" || cr.AccessKeyId == "" || cr.SecretAccessKey == "" || cr.Token == "" {
		return errors.New("serve answered without credentials (its CreateSession failed)")
	}
	return nil
}

func (s *helperServe) do(req *http.Request) ([]byte, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
	}
	return b, err
}

// fillDisk makes r's disk "full" for d: its RLIMIT_FSIZE at one page, so
// every write that grows a file fails with EFBIG as on a full filesystem
// (see cmd/lanyard's TestDiskFullIsRetryable for why a limit and not a
// tiny filesystem). With the store on PostgreSQL, a replica needs its
// disk only for its log: it must keep serving.
func fillDisk(t *testing.T, r *replica, d time.Duration) {
	t.Helper()
	pid := r.cmd.Process.Pid
	set := func(limit uint64) {
		if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}, nil); err != nil {
			t.Fatalf("prlimit %s: %v", r.name, err)
		}
	}
	set(4096)
	time.Sleep(d) // how long the disk stays full: chaos pacing, not a wait for a condition
	set(unix.RLIM_INFINITY)
}

// rotateIntermediate runs `lanyard ca rotate-intermediate` on the shared
// CA folder, then restarts the replicas one at a time (a rolling restart:
// one keeps serving while the other loads the new intermediate) and
// returns the new intermediate.
func (c *cluster) rotateIntermediate(t *testing.T) *x509.Certificate {
	t.Helper()
	cmd := exec.Command(c.bin, "ca", "rotate-intermediate", "--config", c.reps[0].cfg)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ca rotate-intermediate: %v\n%s", err, out)
	}
	for _, r := range c.reps {
		c.stop(r)
		c.start(t, r)
		waitHealthy(t, r)
	}
	return currentIntermediate(t, c.caDir)
}

// currentIntermediate is the first certificate of dir's intermediate.crt.
func currentIntermediate(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		t.Fatalf("%s/intermediate.crt holds no PEM", dir)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
