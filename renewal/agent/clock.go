package agent

import (
	"math/rand/v2"
	"time"

	"github.com/lanyard/lanyard/renewal/schedule"
)

// DefaultSuspendCheck is how often a sleeping agent compares the wall clock
// with its target moment, so that a host that was suspended past the moment
// renews soon after it wakes. Monotonic timers stop during suspend; the
// wall clock does not.
const DefaultSuspendCheck = time.Minute

// PickMoment returns a uniformly random moment inside w that is not before
// now: in [max(w.Start, now), w.End). A window that has already ended (or
// is empty) gives now. rnd returns a value in [0, n); nil means
// math/rand/v2's Int64N.
func PickMoment(w schedule.Window, now time.Time, rnd func(n int64) int64) time.Time {
	now = now.Round(0)
	start, end := w.Start.Round(0), w.End.Round(0)
	if start.Before(now) {
		start = now
	}
	span := end.Sub(start)
	if span <= 0 {
		return now
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	return start.Add(time.Duration(rnd(int64(span))))
}

// Backoff is capped exponential backoff with full jitter: attempt n (from
// 0) waits a uniformly random time in [0, min(Max, Initial·2ⁿ)].
type Backoff struct {
	// Initial is the cap of the first retry's wait (default 1s).
	Initial time.Duration
	// Max caps every wait (default 10m).
	Max time.Duration
}

// Defaults of [Backoff].
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 10 * time.Minute
)

// Cap returns the upper bound of the wait before retry attempt n (from 0).
func (b Backoff) Cap(n int) time.Duration {
	initial, hi := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if hi <= 0 {
		hi = DefaultBackoffMax
	}
	if hi < initial {
		hi = initial
	}
	d := initial
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Delay returns the wait before retry attempt n: uniform in [0, Cap(n)].
// rnd returns a value in [0, n); nil means math/rand/v2's Int64N.
func (b Backoff) Delay(n int, rnd func(n int64) int64) time.Duration {
	if rnd == nil {
		rnd = rand.Int64N
	}
	c := b.Cap(n)
	return time.Duration(rnd(int64(c) + 1))
}
