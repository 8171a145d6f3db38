package replicas_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/store/postgres"
)

// Soak bounds. An outage is how long the cluster as a whole issues
// nothing: a leader kill costs at most the lease TTL (followers serve
// meanwhile, the lease only gates CRL building), a PostgreSQL restart a
// few seconds of reconnecting; three lease TTLs cover both at once. A
// revocation must reach the trust anchor within the same bound after it
// returned (it returns once a CRL listing it is current; the push to the
// anchor is the leader's, which a kill may just have removed).
const (
	soakDefault     = 10 * time.Second
	soakOutageBound = 3 * postgres.DefaultLeaseTTL
	soakPushBound   = 3*postgres.DefaultLeaseTTL + 5*time.Second
	soakCRLBound    = 20 * time.Second
)

// soakDuration is LANYARD_SOAK (make soak SOAK=10m), else the short form.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("LANYARD_SOAK")
	if v == "" {
		return soakDefault
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("LANYARD_SOAK=%q is not a positive duration", v)
	}
	return d
}

// soakStats are the soak's totals.
type soakStats struct {
	revocations, leaderKills, pgRestarts, leaderChanges int
	rotations, diskFills                                int
	pushTimes                                           []time.Duration
	refuseTimes                                         []time.Duration    // revocation to refusal at the emulator
	crlNumbers                                          map[string][]int64 // per replica, as served
	longestOutage                                       time.Duration
}

// TestChaosSoak runs the HA loop under chaos: two `lanyard serve`
// replicas on one PostgreSQL database and the Roles Anywhere emulator,
// enroll and renewal traffic on both (tokens made on one and redeemed on
// the other, renewals over mTLS as the agent makes them), and two hosts
// run as in production (`lanyard enroll`, `lanyard agent` renewing and
// supervising the real `aws_signing_helper serve`, which answers a client
// asking for credentials every soakFetchEvery), while a driver at random moments
// revokes a host on a random replica, SIGKILLs the leader (and starts it
// again at a later step), restarts PostgreSQL, rotates the intermediate
// (a rolling restart of the replicas) and fills a replica's disk.
// For LANYARD_SOAK (default 10 s, the short form make test runs). It
// checks:
//   - no token paid for two certificates, and every certificate a client
//     received is recorded with its token or predecessor;
//   - every revoked certificate is in both replicas' CRL at the end, each
//     revocation reached the emulated trust anchor within soakPushBound,
//     and the CRL number each replica serves never goes back;
//   - the cluster never issued nothing for longer than soakOutageBound;
//   - every credential fetch of the never-revoked hosts succeeded (within
//     the SDK's retry budget), and every revoked host, which got
//     credentials before its revocation, is refused by the emulator within
//     soakPushBound (the totals say how many within soakRefuseGoal);
//   - after a rotation both replicas issue from the new intermediate;
//   - in a soak longer than a certificate's life the agents renewed.
//
// Its last log line is the totals.
func TestChaosSoak(t *testing.T) {
	dur := soakDuration(t)
	c := newCluster(t, 2)
	c.setProfileTTL(t, soakProfileTTL)
	for _, r := range c.reps {
		c.start(t, r)
	}
	for _, r := range c.reps {
		waitHealthy(t, r)
	}
	_, epoch := c.waitLeader(t, 3*postgres.DefaultLeaseTTL)
	ra := c.rolesAnywhere(t)
	hostsDir := t.TempDir()
	// Two long-lived hosts, one on each replica, run as in production
	// (`lanyard enroll`, then `lanyard agent` supervising the real
	// `aws_signing_helper serve`), and a client fetching credentials
	// through each the whole time.
	var serves []*helperServe
	for i, r := range c.reps {
		serves = append(serves, c.startAgentHost(t, ra, r, fmt.Sprintf("agent%d", i), hostsDir))
	}
	led := servetest.NewLedger()
	l := startLoad(t, c, led, 8)
	st := &soakStats{crlNumbers: map[string][]int64{}}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.roots)

	// The monitor: the longest time without a new certificate, and the
	// CRL number each running replica serves.
	var mu sync.Mutex // st.crlNumbers, st.longestOutage
	stopMon := make(chan struct{})
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		issued := func() int64 { return l.ok[0].Load() + l.ok[1].Load() }
		last, lastAt := issued(), time.Now()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stopMon:
				return
			case <-tick.C:
			}
			if cur := issued(); cur != last {
				last, lastAt = cur, time.Now()
			}
			mu.Lock()
			st.longestOutage = max(st.longestOutage, time.Since(lastAt))
			mu.Unlock()
			if n%5 != 0 {
				continue
			}
			for _, r := range c.reps {
				if rl, err := replicaCRL(r); err == nil {
					mu.Lock()
					st.crlNumbers[r.name] = append(st.crlNumbers[r.name], rl.Number.Int64())
					mu.Unlock()
				}
			}
		}
	}()

	type revoked struct {
		serial   *big.Int
		number   int64
		at       time.Time
		notAfter time.Time
	}
	var revs []revoked
	var down *replica // a killed replica, started again at a later step
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(500+mrand.IntN(1500)) * time.Millisecond) // chaos pacing, not a wait for a condition
		if down != nil && mrand.IntN(2) == 0 {
			c.start(t, down)
			waitHealthy(t, down)
			down = nil
			continue
		}
		switch k := mrand.IntN(12); {
		case k < 5:
			var live []*replica
			for _, r := range c.reps {
				if r.cmd != nil {
					live = append(live, r)
				}
			}
			r := live[mrand.IntN(len(live))]
			b, key := soakEnroll(t, r, fmt.Sprintf("revoked-%d.covalent.example.net", mrand.Int64()))
			h := writeHostFiles(t, filepath.Join(hostsDir, b.GetSerial()), b, key)
			// Before its revocation the host gets credentials.
			if err := ra.credentialProcess(t, h); err != nil {
				t.Fatalf("host %s before its revocation: %v", b.GetSerial(), err)
			}
			serial, n := soakRevoke(t, r, b.GetSerial())
			at := time.Now()
			revs = append(revs, revoked{serial, n, at, bundleLeaf(t, b).NotAfter})
			st.revocations++
			for !c.aws.received(n) { // any CRL at or after n lists the revocation
				if time.Since(at) > soakPushBound {
					t.Fatalf("revocation %x (CRL %d) did not reach the trust anchor within %v", serial, n, soakPushBound)
				}
				time.Sleep(10 * time.Millisecond) // poll interval
			}
			st.pushTimes = append(st.pushTimes, time.Since(at))
			for ra.credentialProcess(t, h) == nil {
				if time.Since(at) > soakPushBound {
					t.Fatalf("revoked host %x still gets credentials %v after its revocation", serial, soakPushBound)
				}
				time.Sleep(50 * time.Millisecond) // poll interval
			}
			st.refuseTimes = append(st.refuseTimes, time.Since(at))
		case k < 8 && down == nil:
			lead, _ := c.waitLeader(t, soakOutageBound)
			c.kill(t, lead)
			down = lead
			st.leaderKills++
		case k == 8 || k == 9:
			if err := pgtest.Shared(t).Restart(); err != nil {
				t.Fatalf("restart PostgreSQL: %v", err)
			}
			st.pgRestarts++
		case k == 10 && down == nil && st.rotations == 0:
			// Once: a second rotation is refused while the first retired
			// intermediate keeps its key (a trust anchor holds two CRLs),
			// that is until its certificates have expired.
			inter := c.rotateIntermediate(t)
			st.rotations++
			// Both replicas issue from the new intermediate now.
			for _, r := range c.reps {
				b, _ := soakEnroll(t, r, fmt.Sprintf("rotated-%d.covalent.example.net", mrand.Int64()))
				if leaf := bundleLeaf(t, b); !bytes.Equal(leaf.AuthorityKeyId, inter.SubjectKeyId) {
					t.Fatalf("replica %s issued from %x after the rotation to %x", r.name, leaf.AuthorityKeyId, inter.SubjectKeyId)
				}
			}
		case k == 11:
			var live []*replica
			for _, r := range c.reps {
				if r.cmd != nil {
					live = append(live, r)
				}
			}
			fillDisk(t, live[mrand.IntN(len(live))], time.Duration(500+mrand.IntN(2500))*time.Millisecond)
			st.diskFills++
		}
		if _, e := c.leader(t); e != 0 && e != epoch {
			st.leaderChanges++
			epoch = e
		}
	}
	if down != nil {
		c.start(t, down)
		waitHealthy(t, down)
	}
	// Settle: both replicas up, then traffic keeps flowing for a moment.
	for _, r := range c.reps {
		waitHealthy(t, r)
	}
	for target := l.ok[0].Load() + l.ok[1].Load() + 10; l.ok[0].Load()+l.ok[1].Load() < target; {
		time.Sleep(20 * time.Millisecond) // poll interval (the outage monitor bounds it)
		mu.Lock()
		out := st.longestOutage
		mu.Unlock()
		if out > soakOutageBound {
			break
		}
	}
	l.stop()
	close(stopMon)
	<-monDone
	var fetches, fetchFailures int64
	renewals := 0
	for i, sv := range serves {
		renewals += sv.renewals()
		sv.stop()
		fetches += sv.fetches.Load()
		fetchFailures += sv.failures.Load()
		if n := sv.failures.Load(); n > 0 {
			t.Errorf("host agent%d (never revoked): %d of %d credential fetches failed, the last: %v", i, n, sv.fetches.Load(), sv.lastErr.Load())
		}
	}
	if dur >= soakProfileTTL && renewals == 0 {
		t.Errorf("the agents renewed nothing in %v (certificates of %v)", dur, soakProfileTTL)
	}
	withinGoal := 0
	for _, d := range st.refuseTimes {
		if d <= soakRefuseGoal {
			withinGoal++
		}
	}

	checked := c.checkLedger(t, led)
	c.aws.mu.Lock()
	pushed := append([]int64(nil), c.aws.crls...)
	c.aws.mu.Unlock()
	// Every revoked certificate is in both replicas' CRL.
	for _, r := range c.reps {
		bound := time.Now().Add(soakCRLBound)
		for {
			rl, err := replicaCRL(r)
			missing := 0
			if err == nil {
				for _, rv := range revs {
					// A CRL lists unexpired certificates only (5-minute ones
					// in the soak: most have expired by the end of a long run).
					if rv.notAfter.After(rl.ThisUpdate) && !listed(rl, rv.serial) {
						missing++
					}
				}
			}
			if err == nil && missing == 0 {
				break
			}
			if time.Now().After(bound) {
				t.Fatalf("replica %s: CRL misses %d of %d revoked certificates after %v (%v)", r.name, missing, len(revs), soakCRLBound, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
	for name, ns := range st.crlNumbers {
		for i := 1; i < len(ns); i++ {
			if ns[i] < ns[i-1] {
				t.Errorf("replica %s served CRL %d after %d", name, ns[i], ns[i-1])
			}
		}
	}
	for i := 1; i < len(pushed); i++ {
		if pushed[i] < pushed[i-1] {
			t.Errorf("CRL numbers reached the trust anchor out of order: %v", pushed)
		}
	}
	if st.longestOutage > soakOutageBound {
		t.Errorf("the cluster issued nothing for %v (bound %v)", st.longestOutage, soakOutageBound)
	}
	var failed int64
	for i := range l.failed {
		failed += l.failed[i].Load()
	}
	t.Logf("soak %v: issued %d (checked %d in the database, 0 without a record), failed requests %d (during chaos), "+
		"agent renewals %d, credential fetches %d through aws_signing_helper serve (failed %d), "+
		"revocations %d (all in both CRLs; at the trust anchor after at most %v; refused at the emulator after at most %v, %d of %d within %v), "+
		"leader kills %d, leader changes %d, PostgreSQL restarts %d, intermediate rotations %d, disk fills %d, longest outage %v, "+
		"CRLs pushed %d (last %d, in order), CRL numbers served A %s, B %s",
		dur, l.ok[0].Load()+l.ok[1].Load(), checked, failed, renewals, fetches, fetchFailures,
		st.revocations, slices.Max(append(st.pushTimes, 0)).Round(time.Millisecond), slices.Max(append(st.refuseTimes, 0)).Round(time.Millisecond),
		withinGoal, len(st.refuseTimes), soakRefuseGoal,
		st.leaderKills, st.leaderChanges, st.pgRestarts, st.rotations, st.diskFills,
		st.longestOutage.Round(time.Millisecond), len(pushed), lastOf(pushed), span(st.crlNumbers["A"]), span(st.crlNumbers["B"]))
}

// soakRetry runs f until it succeeds, through the chaos (PostgreSQL may
// be restarting, the leader changing), for at most soakPushBound. Only
// what a client retries is retried: an answer that refuses the request
// itself fails t at once, with the reason.
func soakRetry(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), soakPushBound)
	defer cancel()
	var last error
	for {
		err := f(ctx)
		if err == nil {
			return
		}
		switch connect.CodeOf(err) {
		case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeUnknown, connect.CodeAborted:
		default:
			t.Fatalf("%s: %v", what, err)
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: %v (before: %v)", what, err, last)
		}
		last = err
		time.Sleep(100 * time.Millisecond) // retry pacing
	}
}

// soakEnroll enrolls a host named cn on r with a new key, retrying
// through the chaos.
func soakEnroll(t *testing.T, r *replica, cn string) (*v1.Bundle, crypto.Signer) {
	t.Helper()
	for {
		var token string
		soakRetry(t, "token on "+r.name, func(ctx context.Context) error {
			tok, err := r.admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: cn}))
			if err == nil {
				token = tok.Msg.GetToken()
			}
			return err
		})
		key, der := servetest.KeyAndCSR(t)
		var b *v1.Bundle
		soakRetry(t, "enroll on "+r.name, func(ctx context.Context) error {
			cert, err := r.admin.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: token, Csr: der}))
			switch {
			case err == nil:
				b = cert.Msg.GetBundle()
			case connect.CodeOf(err) == connect.CodeUnauthenticated:
				// An earlier try was recorded but its answer lost: the
				// token is spent; start again with a new one.
				return nil
			}
			return err
		})
		if b != nil {
			return b, key
		}
	}
}

// soakRevoke revokes serial on r, retrying through the chaos; it returns
// the serial and the number of the first CRL that lists it.
func soakRevoke(t *testing.T, r *replica, serial string) (*big.Int, int64) {
	t.Helper()
	var n int64
	soakRetry(t, "revoke on "+r.name, func(ctx context.Context) error {
		resp, err := r.admin.Admin.RevokeCertificate(ctx, connect.NewRequest(&v1.RevokeCertificateRequest{Serial: serial, Reason: 4}))
		if err == nil {
			n = resp.Msg.GetCrlNumber()
		}
		return err
	})
	s, _ := new(big.Int).SetString(serial, 16)
	return s, n
}

// bundleLeaf parses b's certificate.
func bundleLeaf(t *testing.T, b *v1.Bundle) *x509.Certificate {
	t.Helper()
	p, _ := pem.Decode([]byte(b.GetCertificatePem()))
	if p == nil {
		t.Fatal("bundle without a certificate")
	}
	leaf, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// replicaCRL fetches and parses r's /crl.
func replicaCRL(r *replica) (*x509.RevocationList, error) {
	return servetest.FetchCRL(r.admin.HTTP, r.url)
}

func lastOf(ns []int64) int64 {
	if len(ns) == 0 {
		return 0
	}
	return ns[len(ns)-1]
}

func span(ns []int64) string {
	if len(ns) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d..%d", ns[0], ns[len(ns)-1])
}
