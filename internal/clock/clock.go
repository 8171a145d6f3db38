// Package clock owns lanyard's one notion of time. Time is a dependency:
// services take a Now func() time.Time (nil means the system clock, through
// [Or]); code that also waits takes a [Clock], whose timers a test moves with
// [Fake]. [SleepUntil] is the suspend-aware wait the renewal agent sleeps in.
//
// Outside this package, time.Now is read directly only to measure how long
// something took (time.Since for logs and metrics) and for network I/O
// deadlines (net.Conn.SetDeadline is on the kernel's real clock, so a fake
// clock would be wrong there). Every validity, expiry, deadline or stamp that a
// record or certificate carries comes from an injected clock.
package clock

import (
	"context"
	"time"
)

// Clock is a wall clock with timers. Tests substitute [Fake].
type Clock interface {
	// Now returns the current wall-clock time.
	Now() time.Time
	// After returns a channel that receives once d has elapsed on the
	// timer's own (monotonic) clock, like time.After.
	After(d time.Duration) <-chan time.Time
}

// System is the real clock: time.Now and time.After.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Or returns now, or the system clock's Now when now is nil: the default of
// every Now option.
func Or(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// OrSystem returns c, or [System] when c is nil.
func OrSystem(c Clock) Clock {
	if c == nil {
		return System{}
	}
	return c
}

// SleepUntil waits until the wall clock of c reaches target, or ctx ends.
// It wakes at least every check (when check > 0) to compare the wall clock
// with target: that one cheap comparison is the only periodic wake-up, and
// it is what notices a suspend that carried the host past target (monotonic
// timers stop during suspend; the wall clock does not).
func SleepUntil(ctx context.Context, c Clock, target time.Time, check time.Duration) error {
	target = target.Round(0) // wall clock only
	for {
		d := target.Sub(c.Now().Round(0))
		if d <= 0 {
			return nil
		}
		if check > 0 && d > check {
			d = check
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.After(d):
		}
	}
}
