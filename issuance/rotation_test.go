package issuance

import (
	"testing"
	"time"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/renewal/schedule"
)

// After `lanyard ca rotate-intermediate`, renewal info asks every
// certificate of the old intermediate to renew, each at its own time
// spread over the first quarter of its lifetime after the rotation (so a
// fleet does not stampede the CA or Roles Anywhere), and the same answer
// every time; certificates of the new intermediate keep their schedule.
func TestRenewalInfoSpreadsRotation(t *testing.T) {
	f := newFixture(t)
	const hosts = 60
	var serials []string
	var lifetime time.Duration
	for i := range hosts {
		iss := f.enrolled(t, "rot"+string(rune('a'+i%26))+string(rune('a'+i/26))+".covalent.example.net")
		serials = append(serials, iss.Record.Serial)
		lifetime = iss.Record.NotAfter.Sub(iss.Record.NotBefore)
	}
	f.now = testNow.Add(time.Hour)
	if _, err := ca.RotateIntermediate(ca.RotateOptions{Dir: f.caDir, Now: func() time.Time { return f.now }}); err != nil {
		t.Fatal(err)
	}
	a, err := ca.Load(ca.LoadOptions{Dir: f.caDir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	svc, err := New(Config{Signer: a, Store: f.db, Profiles: f.svc.Profiles(), Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	rotatedAt := a.Intermediate().NotBefore
	// A quarter of the issued lifetime (the TTL plus the leaf backdate),
	// as rotationWindow computes it.
	spread := lifetime / 4
	var first, last time.Time
	for _, s := range serials {
		w, err := svc.RenewalInfo(s)
		if err != nil {
			t.Fatal(err)
		}
		if w.Reason != schedule.ReasonCARotation {
			t.Fatalf("old-issuer certificate %s: reason %q, want %q", s, w.Reason, schedule.ReasonCARotation)
		}
		if w.Start.Before(rotatedAt) || w.Start.After(rotatedAt.Add(spread)) || !w.End.After(w.Start) {
			t.Fatalf("window %v – %v outside the spread %v + %v", w.Start, w.End, rotatedAt, spread)
		}
		if again, _ := svc.RenewalInfo(s); again != w {
			t.Fatalf("renewal info changed between two calls: %v then %v", w, again)
		}
		if first.IsZero() || w.Start.Before(first) {
			first = w.Start
		}
		if w.Start.After(last) {
			last = w.Start
		}
	}
	if last.Sub(first) < spread/2 {
		t.Fatalf("%d renewals start within %v of each other: not spread over %v", hosts, last.Sub(first), spread)
	}
	f.svc = svc
	fresh := f.enrolled(t, "fresh.covalent.example.net")
	if w, _ := svc.RenewalInfo(fresh.Record.Serial); w.Reason != schedule.ReasonScheduled {
		t.Fatalf("new-issuer certificate: reason %q, want scheduled", w.Reason)
	}
}
