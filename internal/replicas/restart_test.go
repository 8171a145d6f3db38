package replicas_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/postgres"
)

// TestDatabaseRestartUnderLoad restarts PostgreSQL (an immediate stop, as
// a crash: connections cut, recovery from the WAL) while two replicas
// enroll and renew: clients see Unavailable and nothing else (a token
// handed to two clients refuses the second, as always), both replicas
// issue again after the restart by themselves, every certificate a
// client received is recorded with its token or predecessor, no token
// paid for two, and a revocation after it reaches a CRL.
func TestDatabaseRestartUnderLoad(t *testing.T) {
	a, b := twoReplicas(t)
	reps := []*testca.CA{a, b}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.Authority.RootsPEM())

	// Tokens while the database is up; every fourth is handed to two
	// workers, so double redemption is tried across the outage too.
	type token struct {
		secret, id string
		shared     bool
	}
	var toks []token
	for i := range 200 {
		resp, err := reps[i%2].Admin.Admin.CreateEnrollmentToken(context.Background(),
			connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: fmt.Sprintf("pg%d.covalent.example.net", i)}))
		if err != nil {
			t.Fatal(err)
		}
		tk := token{secret: resp.Msg.GetToken(), id: resp.Msg.GetTokenId(), shared: i%4 == 0}
		toks = append(toks, tk)
		if tk.shared {
			toks = append(toks, tk)
		}
	}

	led := servetest.NewLedger()
	var (
		next        atomic.Int64
		restarted   atomic.Bool
		after       [2]atomic.Int64 // successes per replica after the restart
		unavailable atomic.Int64
		mu          sync.Mutex
		unexpected  []string
	)
	fail := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		unexpected = append(unexpected, fmt.Sprintf("%s: %v", what, err))
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := w % 2
			anon, _ := caclient.NewWithHTTP(reps[i].URL, caclient.HTTPClient(pool, nil))
			for ctx.Err() == nil {
				var err error
				shared := false
				if w%4 < 2 {
					k := int(next.Add(1)) - 1
					if k >= len(toks) {
						break
					}
					shared = toks[k].shared
					err = led.Enroll(ctx, t, anon, toks[k].secret, toks[k].id)
				} else {
					h, ok := led.Pick()
					if !ok {
						time.Sleep(5 * time.Millisecond) // nothing to renew yet
						continue
					}
					err = led.Renew(ctx, t, reps[i].URL, pool, h)
				}
				var ce *connect.Error
				switch {
				case err == nil:
					if restarted.Load() {
						after[i].Add(1)
					}
				case ctx.Err() != nil:
				case errors.As(err, &ce) && ce.Code() == connect.CodeUnavailable:
					unavailable.Add(1)
					time.Sleep(10 * time.Millisecond) // as a client backs off
				case shared && errors.As(err, &ce) && ce.Code() == connect.CodeUnauthenticated:
					// the other holder of the token won
				default:
					fail(fmt.Sprintf("worker %d on replica %d", w, i), err)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // load before the restart
	began := time.Now()
	if err := pgtest.Shared(t).Restart(); err != nil {
		stop()
		wg.Wait()
		t.Fatal(err)
	}
	outage := time.Since(began)
	restarted.Store(true)
	up := time.Now()
	deadline := up.Add(30 * time.Second)
	for after[0].Load() < 5 || after[1].Load() < 5 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	recovered := time.Since(up)
	stop()
	wg.Wait()
	for _, u := range unexpected {
		t.Error(u)
	}
	if after[0].Load() < 5 || after[1].Load() < 5 {
		t.Fatalf("30s after the restart replicas issued %d and %d certificates", after[0].Load(), after[1].Load())
	}
	if unavailable.Load() == 0 {
		t.Fatal("no request saw the outage: the restart was not under load")
	}
	checked := led.Check(t, servetest.StoreLookup(a.Store))
	servetest.CheckSingleUse(t, a.Store)
	// The lease and the CRL machinery recover too.
	var leaders int
	for start := time.Now(); ; {
		leaders = 0
		for _, r := range reps {
			if _, ok := r.Store.(store.Leadership).Leader(); ok {
				leaders++
			}
		}
		if leaders == 1 || time.Since(start) > 3*postgres.DefaultLeaseTTL {
			break
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	if leaders != 1 {
		t.Fatalf("%d leaders after the restart, want 1", leaders)
	}
	h, _ := led.Pick()
	rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := b.Revocation.Revoke(rctx, revocation.Request{Serial: h.Serial, Reason: 4, By: "admin:test"})
	if err != nil {
		t.Fatalf("revoke after the restart: %v", err)
	}
	t.Logf("database restart: outage %v; %d requests saw Unavailable; both replicas issued 5 again %v after it was up; %d certificates checked; revocation in CRL %d",
		outage.Round(time.Millisecond), unavailable.Load(), recovered.Round(time.Millisecond), checked, res.CRLNumber)
}
