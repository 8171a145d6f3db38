package revocation

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/store"
)

// testEntries makes n encoded entries with every allowed reason, serials
// with a leading zero byte and with the top bit set, revoked before at
// (with sub-second times, which the CRL truncates).
func testEntries(t testing.TB, n int, at time.Time) []*entry {
	t.Helper()
	out := make([]*entry, 0, n)
	for i := range n {
		serial := randomSerial(t)
		switch i % 3 {
		case 0:
			serial = "00" + serial[2:]
		case 1:
			serial = "80" + serial[2:]
		}
		revokedAt := at.Add(-time.Duration(i) * time.Second).Add(-time.Duration(i%1000) * time.Millisecond)
		e, err := newEntry(&store.Cert{
			Serial:     serial,
			NotAfter:   at.Add(time.Hour),
			Revocation: &store.Revocation{At: revokedAt, Reason: AllowedReasons[i%len(AllowedReasons)]},
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// BenchmarkBuildCRL100k builds and signs a CRL of 100,000 revoked
// certificates from the in-memory revoked set, as every revocation does.
// "encode+sign" is the CRL itself (ca.SignCRL); "build" adds the durable
// CRL number, PEM and persisting the DER in the store. The same CRL
// through x509.CreateRevocationList, for comparison, is ca's
// BenchmarkSignCRL100k/x509.
func BenchmarkBuildCRL100k(b *testing.B) {
	const n = 100000
	e := newEnv(b, nil)
	now := e.clock.Now()
	entries := testEntries(b, n, now)
	ctx := context.Background()
	b.Run("encode+sign", func(b *testing.B) {
		for b.Loop() {
			der, err := e.svc.sign(7, now, now.Add(24*time.Hour), entries)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(der)), "der_bytes")
		}
	})
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			crl, err := e.svc.buildCRL(ctx, entries)
			if err != nil {
				b.Fatal(err)
			}
			if crl.Entries != n {
				b.Fatalf("%d entries", crl.Entries)
			}
		}
	})
}

// BenchmarkReloadRevoked100k measures what New and Rebuild pay to read
// 100,000 revoked certificates from the store (store.RevokedUnexpired
// decodes every whole record, DER included) and encode their entries.
func BenchmarkReloadRevoked100k(b *testing.B) {
	const n = 100000
	e := newEnv(b, nil)
	now := e.clock.Now()
	ctx := context.Background()
	serials := make(chan string)
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for serial := range serials {
				addCertTo(b, e.db, serial, "bench.covalent.example.net", now, time.Hour)
				if _, _, err := e.db.Revoke(ctx, serial, store.Revocation{At: now, Reason: ReasonKeyCompromise, By: "bench"}, nil); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for range n {
		serials <- randomSerial(b)
	}
	close(serials)
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		e.svc.mu.Lock()
		e.svc.entries, e.svc.bySerial = nil, map[string]*entry{}
		e.svc.mu.Unlock()
		added, err := e.svc.reload(now)
		if err != nil || len(added) != n {
			b.Fatalf("reload: %d, %v", len(added), err)
		}
	}
}

// TestFollowerRebuildAfterAdoptingTheLeadersCRL: a replica that does not
// lead, whose current CRL (adopted from the leader, as Follow does)
// already lists a revocation, answers a rebuild with that CRL at once.
// Before the fix it waited for a CRL number after the adopted one, which
// the leader never builds without a further revocation: Revoke on a
// follower hung whenever Follow adopted between the revocation and the
// build (internal/replicas timed out in CI).
func TestFollowerRebuildAfterAdoptingTheLeadersCRL(t *testing.T) {
	lead := newEnv(t, nil)
	follower, err := New(Config{Store: lead.db, Signer: lead.auth, Now: lead.clock.Now, Coalesce: -1, Logger: quiet,
		Leader: func() bool { return false }})
	if err != nil {
		t.Fatalf("New follower: %v", err)
	}
	defer follower.Close()

	c := lead.addCert("follow.covalent.example.net", time.Hour)
	lead.revoke(Request{Serial: c.Serial, Reason: 1})
	if follower.adoptLatest() == nil {
		t.Fatal("the follower did not adopt the leader's CRL")
	}
	if _, ok := listed(parse(t, lead.auth, follower.Current().DER))[c.Serial]; !ok {
		t.Fatal("the adopted CRL does not list the revoked certificate")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	crl, err := follower.Rebuild(ctx)
	if err != nil {
		t.Fatalf("follower Rebuild: %v (it waited for a CRL the leader has no reason to build)", err)
	}
	if _, ok := listed(parse(t, lead.auth, crl.DER))[c.Serial]; !ok {
		t.Fatal("the follower's CRL does not list the revoked certificate")
	}
}

// TestFollowerAdoptsTheLeadersCRLDuringARollingRotation: replicas share a
// CA folder, the intermediate is rotated there, and the replicas restart
// one at a time. The first one back (a follower, on the new intermediate)
// must adopt the CRL that the leader, not yet restarted, signs with the
// intermediate the follower has retired. Before the fix it refused it
// ("not signed by the current intermediate"), never had a current CRL,
// and never became healthy, so the rolling restart stalled with both
// replicas needed (internal/replicas TestRotateIntermediateRolling).
func TestFollowerAdoptsTheLeadersCRLDuringARollingRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Init(ca.InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	load := func() *ca.Authority {
		a, err := ca.Load(ca.LoadOptions{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	old := load()
	lead := newEnv(t, func(c *Config) { c.Signer = old })
	if _, err := ca.RotateIntermediate(ca.RotateOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	rotated := load()
	c := lead.addCert("rolling.covalent.example.net", time.Hour)
	lead.revoke(Request{Serial: c.Serial, Reason: ReasonKeyCompromise})

	// New builds (here: follows) a CRL before it returns; bounded, so
	// the old behaviour fails with a message instead of hanging.
	made := make(chan error, 1)
	var follower *Service
	go func() {
		var err error
		follower, err = New(Config{Store: lead.db, Signer: rotated, Now: lead.clock.Now, Coalesce: -1, Logger: quiet,
			Leader: func() bool { return false }})
		made <- err
	}()
	select {
	case err := <-made:
		if err != nil {
			t.Fatalf("New follower: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower on the new intermediate found no CRL it accepts in 10 s: it refuses the leader's, signed by the intermediate it retired")
	}
	defer follower.Close()
	if _, ok := listed(parse(t, old, follower.Current().DER))[c.Serial]; !ok {
		t.Fatal("the adopted CRL does not list the revoked certificate")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := follower.Rebuild(ctx); err != nil {
		t.Fatalf("follower Rebuild: %v", err)
	}
}

// TestFollowerAcceptsALeaderCRLWithoutAnEntryThatExpired: a follower's
// revocation waits for the leader's CRL to list every entry the follower
// held live when it asked. One of them expired before the leader built
// its CRL, which rightly leaves it out. Before the fix the follower
// checked at its own, earlier moment and waited for a CRL that lists an
// expired certificate, which never comes: its Revoke hung until the
// caller gave up (the chaos soak's hang, 5-minute certificates expiring
// all the time).
func TestFollowerAcceptsALeaderCRLWithoutAnEntryThatExpired(t *testing.T) {
	lead := newEnv(t, nil)
	soon := lead.addCert("soon.covalent.example.net", 30*time.Second)
	lead.revoke(Request{Serial: soon.Serial, Reason: ReasonKeyCompromise})
	follower, err := New(Config{Store: lead.db, Signer: lead.auth, Now: lead.clock.Now, Coalesce: -1, Logger: quiet,
		Leader: func() bool { return false }})
	if err != nil {
		t.Fatalf("New follower: %v", err)
	}
	defer follower.Close()

	c := lead.addCert("later.covalent.example.net", time.Hour)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := follower.Revoke(ctx, Request{Serial: c.Serial, Reason: ReasonKeyCompromise, By: "admin:test"})
		done <- err
	}()
	// The follower has recorded its revocation and waits for the leader;
	// "soon" expires before the leader builds.
	for {
		if got, err := lead.db.GetCert(c.Serial); err == nil && got.Revocation != nil {
			break
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	lead.clock.Advance(time.Minute)
	if _, err := lead.svc.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the follower's Revoke: %v (it waited for a CRL listing a certificate that had expired)", err)
	}
}
