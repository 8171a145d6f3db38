package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestSleepUntil(t *testing.T) {
	tests := []struct {
		name string
		// drive moves the clock while SleepUntil waits for t0+1h with a
		// one-minute check.
		drive     func(c *Fake)
		wantWoken bool
	}{
		{"timer reaches target", func(c *Fake) {
			for range 60 {
				c.Advance(time.Minute)
			}
		}, true},
		{"suspend past target: woken at the next check", func(c *Fake) {
			c.Jump(2 * time.Hour) // host slept; no timer fired
			c.Advance(time.Minute)
		}, true},
		{"short suspend: still waiting", func(c *Fake) {
			c.Jump(30 * time.Minute)
			c.Advance(time.Minute)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewFake(t0)
			done := make(chan error, 1)
			go func() { done <- SleepUntil(context.Background(), c, t0.Add(time.Hour), time.Minute) }()
			c.WaitTimers(t, 1)
			if p := c.Pending(); len(p) != 1 || p[0] != time.Minute {
				t.Fatalf("pending timers %v, want one of 1m (the suspend check)", p)
			}
			tt.drive(c)
			if tt.wantWoken {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				return
			}
			c.WaitTimers(t, 1)
			select {
			case <-done:
				t.Fatal("SleepUntil returned before the target")
			default:
			}
		})
	}
	t.Run("context ends the wait", func(t *testing.T) {
		c := NewFake(t0)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- SleepUntil(ctx, c, t0.Add(time.Hour), time.Minute) }()
		c.WaitTimers(t, 1)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}
