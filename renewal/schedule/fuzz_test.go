package schedule

import (
	"testing"
	"time"
)

// FuzzScheduled checks the default window (the one the agent falls back
// on when the CA cannot be asked) for random validities, from a
// nanosecond to about 290 years, at any start between years 1 and 9999:
// it lies inside the validity, Start is no later than End, and it is
// centred where the doc says (two thirds of the lifetime, half for one
// under ten days), one tenth of the lifetime wide give or take the
// nanoseconds integer division drops.
func FuzzScheduled(f *testing.F) {
	f.Add(int64(1_700_000_000), int64(24*time.Hour))
	f.Add(int64(1_700_000_000), int64(1))
	f.Add(int64(1_700_000_000), int64(10*24*time.Hour))
	f.Add(int64(1_700_000_000), int64(10*24*time.Hour-1))
	f.Add(int64(-62_135_596_800), int64(1<<62))
	f.Add(int64(253_402_300_799), int64(5*time.Minute))
	f.Fuzz(func(t *testing.T, nbUnix, life int64) {
		const minUnix, maxUnix = -62_135_596_800, 253_402_300_799 // years 1 and 9999
		if nbUnix < minUnix || nbUnix > maxUnix || life <= 0 {
			return
		}
		nb := time.Unix(nbUnix, 0).UTC()
		na := nb.Add(time.Duration(life))
		w := Scheduled(nb, na)
		if w.Start.Before(nb) || w.End.After(na) || w.End.Before(w.Start) || w.Reason != ReasonScheduled {
			t.Fatalf("validity %v – %v: window %v – %v (%s)", nb, na, w.Start, w.End, w.Reason)
		}
		frac := time.Duration(life) / 3 * 2
		if time.Duration(life) < 10*24*time.Hour {
			frac = time.Duration(life) / 2
		}
		centre := w.Start.Add(w.End.Sub(w.Start) / 2)
		if d := centre.Sub(nb.Add(frac)); d < -2 || d > 2 && d > time.Duration(life)/1_000_000 {
			t.Fatalf("validity %v – %v: window centred %v from where the doc says", nb, na, d)
		}
		if width := w.End.Sub(w.Start); width > time.Duration(life)/10 || width < time.Duration(life)/10-2 {
			t.Fatalf("validity of %v: window %v wide, want a tenth", time.Duration(life), width)
		}
	})
}
