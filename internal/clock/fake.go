package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is the one settable clock of the tests, safe for concurrent use. It
// has a wall clock (Now) and a monotonic timer clock (After): [Fake.Advance]
// moves both and fires the timers that are due; [Fake.Jump] and [Fake.Set]
// move only the wall clock, as a suspend or a clock step does (monotonic
// timers do not run while a host sleeps).
type Fake struct {
	mu      sync.Mutex
	wall    time.Time
	mono    time.Duration
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced whenever a timer is added
}

type fakeTimer struct {
	at time.Duration
	c  chan time.Time
}

// NewFake returns a fake clock whose wall clock reads t.
func NewFake(t time.Time) *Fake {
	return &Fake{wall: t, changed: make(chan struct{})}
}

// Now returns the fake wall-clock time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

// After returns a channel that receives once the timer clock has advanced by
// d; d <= 0 fires at once.
func (c *Fake) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.mono + d, c: make(chan time.Time, 1)}
	if d <= 0 {
		ft.c <- c.wall
		return ft.c
	}
	c.timers = append(c.timers, ft)
	close(c.changed)
	c.changed = make(chan struct{})
	return ft.c
}

// Advance moves both clocks by d and fires every timer that is due.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
	c.mono += d
	kept := c.timers[:0]
	for _, ft := range c.timers {
		if ft.at <= c.mono {
			ft.c <- c.wall
		} else {
			kept = append(kept, ft)
		}
	}
	c.timers = kept
}

// Jump moves only the wall clock by d (a suspend): no timer fires.
func (c *Fake) Jump(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// Set puts the wall clock at t (a clock step): no timer fires.
func (c *Fake) Set(t time.Time) {
	c.mu.Lock()
	c.wall = t
	c.mu.Unlock()
}

// Pending returns the durations until each pending timer fires, sorted.
func (c *Fake) Pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, ft := range c.timers {
		out = append(out, ft.at-c.mono)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TB is the part of testing.TB that [Fake.WaitTimers] and [Fake.AdvanceTo]
// use (so that this package does not link package testing).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// waitTimersLimit bounds WaitTimers: a goroutine that never arms its timer
// is a bug to report, not a test to hang. Generous for the -race pass on a
// loaded two-core machine.
const waitTimersLimit = 20 * time.Second

// WaitTimers blocks until at least n timers are pending (a goroutine under
// test has reached its wait), failing t after waitTimersLimit.
func (c *Fake) WaitTimers(t TB, n int) {
	t.Helper()
	limit := time.After(waitTimersLimit)
	for {
		c.mu.Lock()
		got, ch := len(c.timers), c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-limit:
			t.Fatalf("fake clock: %d timers pending, waited for %d", got, n)
		}
	}
}

// AdvanceTo advances the clock until its wall time reaches target, one
// pending timer at a time (a timer-driven wait re-arms after each fire).
func (c *Fake) AdvanceTo(t TB, target time.Time) {
	t.Helper()
	for {
		d := target.Sub(c.Now())
		if d <= 0 {
			return
		}
		c.WaitTimers(t, 1)
		p := c.Pending()
		c.Advance(min(d, p[0]))
	}
}
