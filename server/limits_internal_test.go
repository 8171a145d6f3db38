package server

import (
	"fmt"
	"testing"
	"time"
)

func TestSourceKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.7:443", "192.0.2.7:1"},
		{"[2001:db8:1:2::1]:443", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:9"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7:80"},
		{"[fe80::1%eth0]:443", "[fe80::2]:1"},
	} {
		if sourceKey(tc.a) != sourceKey(tc.b) {
			t.Errorf("%s and %s are one source, got %q and %q", tc.a, tc.b, sourceKey(tc.a), sourceKey(tc.b))
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.7:443", "192.0.2.8:443"},
		{"[2001:db8:1:2::1]:443", "[2001:db8:1:3::1]:443"},
	} {
		if sourceKey(tc.a) == sourceKey(tc.b) {
			t.Errorf("%s and %s are two sources, both got %q", tc.a, tc.b, sourceKey(tc.a))
		}
	}
}

// TestClientLimiterIsBounded: however many keys arrive, the table holds
// at most max buckets; a flood of new keys while every bucket is still
// refilling shares the overflow bucket instead of evicting (and so
// resetting) the clients in the table; a refilled bucket makes room.
func TestClientLimiterIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	const max, burst = 8, 2
	l := newClientLimiter(1, burst, max, clock)
	for i := 0; i < max; i++ {
		for j := 0; j < burst; j++ {
			if ok, _ := l.allow(fmt.Sprint("busy", i)); !ok {
				t.Fatalf("busy%d refused within its burst", i)
			}
		}
	}
	if ok, _ := l.allow("busy0"); ok {
		t.Fatal("busy0 allowed past its burst")
	}
	allowed := 0
	for i := 0; i < 10_000; i++ {
		if ok, _ := l.allow(fmt.Sprint("new", i)); ok {
			allowed++
		}
	}
	if got := l.size(); got != max {
		t.Fatalf("table holds %d buckets, want %d", got, max)
	}
	if allowed != burst {
		t.Fatalf("10,000 new keys on a full table got %d calls through, want the overflow burst of %d", allowed, burst)
	}
	if ok, _ := l.allow("busy0"); ok {
		t.Fatal("the flood of new keys reset busy0's bucket")
	}
	now = now.Add(burst * time.Second) // every bucket refills
	if ok, _ := l.allow("fresh"); !ok {
		t.Fatal("a new key was refused once the table had refilled buckets to drop")
	}
	if got := l.size(); got != max {
		t.Fatalf("table holds %d buckets, want %d", got, max)
	}
}
