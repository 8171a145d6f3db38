package replicas_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
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
	pushTimes                                           []time.Duration
	crlNumbers                                          map[string][]int64 // per replica, as served
	longestOutage                                       time.Duration
}

// TestChaosSoak runs the HA loop under chaos: two `lanyard serve`
// replicas on one PostgreSQL database and the Roles Anywhere emulator,
// enroll and renewal traffic on both (tokens made on one and redeemed on
// the other, renewals over mTLS as the agent makes them), while a driver
// at random moments revokes a host on a random replica, SIGKILLs the
// leader (and starts it again at a later step) and restarts PostgreSQL.
// For LANYARD_SOAK (default 10 s, the short form make test runs). It
// checks:
//   - no token paid for two certificates, and every certificate a client
//     received is recorded with its token or predecessor;
//   - every revoked certificate is in both replicas' CRL at the end, each
//     revocation reached the emulated trust anchor within soakPushBound,
//     and the CRL number each replica serves never goes back;
//   - the cluster never issued nothing for longer than soakOutageBound.
//
// Its last log line is the totals.
func TestChaosSoak(t *testing.T) {
	dur := soakDuration(t)
	c := newCluster(t, 2)
	for _, r := range c.reps {
		c.start(t, r)
	}
	for _, r := range c.reps {
		waitHealthy(t, r)
	}
	_, epoch := c.waitLeader(t, 3*postgres.DefaultLeaseTTL)
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
		serial *big.Int
		number int64
		at     time.Time
	}
	var revs []revoked
	// The emulator logs the number of every CRL imported; any at or after
	// a revocation's number lists it (the leader pushes the newest only).
	reachedAnchor := func(n int64) bool {
		c.aws.mu.Lock()
		defer c.aws.mu.Unlock()
		for _, x := range c.aws.crls {
			if x >= n {
				return true
			}
		}
		return false
	}
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
		switch k := mrand.IntN(10); {
		case k < 5:
			var live []*replica
			for _, r := range c.reps {
				if r.cmd != nil {
					live = append(live, r)
				}
			}
			serial, n := soakRevoke(t, live[mrand.IntN(len(live))])
			at := time.Now()
			revs = append(revs, revoked{serial, n, at})
			st.revocations++
			for !reachedAnchor(n) {
				if time.Since(at) > soakPushBound {
					t.Fatalf("revocation %x (CRL %d) did not reach the trust anchor within %v", serial, n, soakPushBound)
				}
				time.Sleep(10 * time.Millisecond) // poll interval
			}
			st.pushTimes = append(st.pushTimes, time.Since(at))
		case k < 8 && down == nil:
			lead, _ := c.waitLeader(t, soakOutageBound)
			c.kill(t, lead)
			down = lead
			st.leaderKills++
		case k >= 8:
			if err := pgtest.Shared(t).Restart(); err != nil {
				t.Fatalf("restart PostgreSQL: %v", err)
			}
			st.pgRestarts++
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
					if !listed(rl, rv.serial) {
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
		"revocations %d (all in both CRLs; at the trust anchor after at most %v), leader kills %d, leader changes %d, PostgreSQL restarts %d, longest outage %v, "+
		"CRLs pushed %d (last %d, in order), CRL numbers served A %s, B %s",
		dur, l.ok[0].Load()+l.ok[1].Load(), checked, failed, st.revocations, slices.Max(append(st.pushTimes, 0)).Round(time.Millisecond), st.leaderKills, st.leaderChanges, st.pgRestarts,
		st.longestOutage.Round(time.Millisecond), len(pushed), lastOf(pushed), span(st.crlNumbers["A"]), span(st.crlNumbers["B"]))
}

// soakRevoke enrolls a host on r and revokes it there, retrying through
// the chaos (PostgreSQL may be restarting) for a bounded time; it
// returns the serial and the number of the first CRL that lists it.
func soakRevoke(t *testing.T, r *replica) (*big.Int, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), soakPushBound)
	defer cancel()
	cn := fmt.Sprintf("revoked-%d.covalent.example.net", mrand.Int64())
	retry := func(what string, f func() error) {
		for {
			err := f()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s on %s: %v", what, r.name, err)
			}
			time.Sleep(100 * time.Millisecond) // retry pacing
		}
	}
	var serial string
	for serial == "" {
		var token string
		retry("token", func() error {
			tok, err := r.admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: cn}))
			if err == nil {
				token = tok.Msg.GetToken()
			}
			return err
		})
		_, der := servetest.KeyAndCSR(t)
		retry("enroll", func() error {
			cert, err := r.admin.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: token, Csr: der}))
			switch {
			case err == nil:
				serial = cert.Msg.GetBundle().GetSerial()
			case connect.CodeOf(err) == connect.CodeUnauthenticated:
				// An earlier try was recorded but its answer lost: the
				// token is spent; start again with a new one.
				return nil
			}
			return err
		})
	}
	var n int64
	retry("revoke", func() error {
		resp, err := r.admin.Admin.RevokeCertificate(ctx, connect.NewRequest(&v1.RevokeCertificateRequest{Serial: serial, Reason: 4}))
		if err == nil {
			n = resp.Msg.GetCrlNumber()
		}
		return err
	})
	s, _ := new(big.Int).SetString(serial, 16)
	return s, n
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
