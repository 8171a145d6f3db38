package issuance

import (
	"math/big"
	"testing"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/store"
)

// windowProfiles are the profiles FuzzRenewalWindow draws from: the
// shortest lifetime lanyard issues, the default, and a long one.
var windowProfiles = map[string]ProfileConfig{
	"covalent": {CN: []string{"*.covalent.example.net"}, DNS: []string{"*.covalent.example.net"}},
	"short":    {CN: []string{"*.short.example.net"}, DNS: []string{"*.short.example.net"}, DefaultTTL: MinTTL, MaxTTL: MinTTL},
	"long": {CN: []string{"*.long.example.net"}, DNS: []string{"*.long.example.net"},
		DefaultTTL: 90 * 24 * time.Hour, MaxTTL: 90 * 24 * time.Hour},
}

// FuzzRenewalWindow checks the renewal window the CA answers (renewal
// info, and the one sent with every renewal) for random records and
// clocks, on a CA whose intermediate was rotated, so that both issuers'
// certificates are drawn: the record's profile, lifetime (the profile's
// or any other), validity start and the clock are the fuzzer's, and so
// are revocation, a CN the profile refuses and the issuer. The window
//   - is "now" (Start is exactly the clock's time, End after it) when the
//     certificate is revoked or the profile would not issue it as it is,
//     and only then;
//   - otherwise lies inside the certificate's validity, Start no later
//     than End, and is the scheduled window for a certificate of the
//     current intermediate;
//   - is the same when asked twice.
func FuzzRenewalWindow(f *testing.F) {
	fx := newFixture(f, func(m map[string]ProfileConfig) {
		for k, v := range windowProfiles {
			m[k] = v
		}
	})
	oldDER := fx.enrolled(f, "old.covalent.example.net").Record.DER
	fx.now = testNow.Add(time.Hour)
	if _, err := ca.RotateIntermediate(ca.RotateOptions{Dir: fx.caDir, Now: func() time.Time { return fx.now }}); err != nil {
		f.Fatal(err)
	}
	a, err := ca.Load(ca.LoadOptions{Dir: fx.caDir})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	clock := fx.now
	svc, err := New(Config{Signer: a, Store: fx.db, Profiles: fx.svc.Profiles(), Now: func() time.Time { return clock }})
	if err != nil {
		f.Fatal(err)
	}
	fx.svc = svc
	newDER := fx.enrolled(f, "new.covalent.example.net").Record.DER
	rotatedAt := a.Intermediate().NotBefore
	names := []string{"covalent", "short", "long"}

	const day = int64(24 * time.Hour / time.Second)
	f.Add(uint8(0), int64(-3600), int64(-1), int64(7200), false, false, true, []byte{1, 2, 3})
	f.Add(uint8(0), int64(-3600), int64(-1), int64(7200), false, false, false, []byte{1, 2, 3})
	f.Add(uint8(1), int64(0), int64(-1), int64(60), false, false, true, []byte{0xff})
	f.Add(uint8(2), int64(-80*day), int64(-1), int64(10*day), false, false, true, []byte{9, 9})
	f.Add(uint8(0), int64(3600), int64(-1), int64(0), false, false, true, []byte{7})
	f.Add(uint8(0), int64(-3600), int64(3600), int64(0), true, false, false, []byte{5})
	f.Add(uint8(0), int64(-3600), int64(-1), int64(1), false, true, false, []byte{5})
	f.Fuzz(func(t *testing.T, prof uint8, nbOff, lifeSec, nowOff int64, revoked, badCN, oldIssuer bool, serial []byte) {
		name := names[int(prof)%len(names)]
		p, _ := svc.Profiles().Get(name)
		// Times within ±400 days of the rotation, lifetimes up to 400 days
		// (a negative lifeSec: the profile's own, TTL plus backdate).
		const span = 400 * day
		nb := rotatedAt.Add(time.Duration(nbOff%span) * time.Second)
		life := p.Config.DefaultTTL + Backdate
		if lifeSec >= 0 {
			life = time.Duration(lifeSec%span+1) * time.Second
		}
		clock = nb.Add(time.Duration(nowOff%span) * time.Second)
		cn := "host." + name + ".example.net"
		if badCN {
			cn = "host.elsewhere.example.org"
		}
		rec := &store.Cert{Serial: lanyardv1.FormatSerial(new(big.Int).SetBytes(serial)), CN: cn, DNSNames: []string{cn},
			Profile: name, KeyType: KeyP256, NotBefore: nb, NotAfter: nb.Add(life), DER: newDER}
		if oldIssuer {
			rec.DER = oldDER
		}
		if revoked {
			rec.Revocation = &store.Revocation{At: clock, Reason: 1, By: "fuzz"}
		}
		w := svc.window(rec)
		if again := svc.window(rec); again != w {
			t.Fatalf("two answers: %v then %v", w, again)
		}
		reissuable := !badCN && absDuration(life-Backdate-p.Config.DefaultTTL) <= time.Minute
		switch {
		case revoked || !reissuable:
			want := schedule.ReasonRevoked
			if !revoked {
				want = schedule.ReasonProfileChanged
			}
			if w.Reason != want || !w.Start.Equal(clock) || !w.End.After(w.Start) {
				t.Fatalf("revoked %v, reissuable %v: window %v – %v (%s), want now (%v) for %s", revoked, reissuable, w.Start, w.End, w.Reason, clock, want)
			}
		default:
			if w.Start.Before(rec.NotBefore) || w.End.After(rec.NotAfter) || w.End.Before(w.Start) {
				t.Fatalf("window %v – %v (%s) is not inside the validity %v – %v (intermediate since %v)",
					w.Start, w.End, w.Reason, rec.NotBefore, rec.NotAfter, rotatedAt)
			}
			switch {
			case !oldIssuer && w != schedule.Scheduled(rec.NotBefore, rec.NotAfter):
				t.Fatalf("current intermediate's certificate: %v, want the scheduled %v", w, schedule.Scheduled(rec.NotBefore, rec.NotAfter))
			case oldIssuer && w.Reason != schedule.ReasonCARotation && w.Reason != schedule.ReasonScheduled:
				t.Fatalf("old intermediate's certificate: reason %q", w.Reason)
			}
		}
	})
}
