package web

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// loginFrom posts a password from remote (host:port).
func (e *env) loginFrom(t *testing.T, remote, password string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://lanyard.test/admin/login",
		strings.NewReader(url.Values{"password": {password}, "next": {"/admin/"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// TestLoginLimitIsPerSource is the regression test of issue 9 item 6:
// five bad attempts from one address are limited there, and do not stop
// the right password from another address, nor the certificate login
// from the limited address.
func TestLoginLimitIsPerSource(t *testing.T) {
	e := newEnv(t)
	const attacker, admin = "198.51.100.7:4000", "203.0.113.9:5000"
	for i := range loginSourceBurst {
		if w := e.loginFrom(t, attacker, "wrong password "+string(rune('a'+i))); w.Code != http.StatusUnauthorized {
			t.Fatalf("bad attempt %d: %d, want 401", i+1, w.Code)
		}
	}
	w := e.loginFrom(t, attacker, testPassword)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("sixth attempt from the attacker: %d (Retry-After %q), want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	if w := e.loginFrom(t, admin, testPassword); w.Code != http.StatusSeeOther {
		t.Fatalf("the right password from another address: %d, want 303 (logged in)", w.Code)
	}
	// The certificate login from the limited address is not limited.
	r := httptest.NewRequest(http.MethodGet, "https://lanyard.test/admin/", nil)
	r.RemoteAddr, r.TLS = attacker, adminTLS(t, e.ca)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Fatalf("certificate login from the limited address: %d, want 200", rec.Code)
	}
	// The limit lifts on the page's clock.
	e.clock.Advance(loginSourceRefill + time.Second)
	if w := e.loginFrom(t, attacker, testPassword); w.Code != http.StatusSeeOther {
		t.Fatalf("after the refill: %d, want 303", w.Code)
	}
}

func TestLoginLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	v6a, v6b, other := sourceOf("[2001:db8:1:2::1]:443"), sourceOf("[2001:db8:1:2::ffff]:443"), sourceOf("[2001:db8:1:3::1]:443")
	if v6a != v6b || v6a == other {
		t.Fatalf("IPv6 sources: %v %v %v, want one per /64", v6a, v6b, other)
	}
	if sourceOf("[::ffff:192.0.2.1]:1") != sourceOf("192.0.2.1:2") {
		t.Fatal("a v4-mapped address is a different source")
	}
	l := newLoginLimiter(clock)
	// Account backoff: after many failures from many addresses, a source
	// that failed waits, one that never failed does not.
	for i := range 2 * accountBackoffAfter {
		l.record(sourceOf("192.0.2."+string(rune('1'+i%9))+":1"), false)
	}
	if _, ok := l.allow(sourceOf("192.0.2.1:1")); ok {
		t.Error("a failing source is not backed off while the account is under attack")
	}
	if _, ok := l.allow(sourceOf("203.0.113.1:1")); !ok {
		t.Error("a source with no failure is locked out by the account backoff")
	}
	now = now.Add(accountBackoffMax)
	if _, ok := l.allow(sourceOf("192.0.2.1:1")); !ok {
		t.Error("the account backoff outlives its cap")
	}
	// The table stays bounded.
	for i := range maxLoginSources + 100 {
		l.record(netipFromInt(i), false)
	}
	if n := len(l.sources); n > maxLoginSources {
		t.Errorf("%d sources tracked, cap %d", n, maxLoginSources)
	}
	// The concurrent-check cap.
	for range maxConcurrentChecks {
		if !l.acquire() {
			t.Fatal("a free slot was refused")
		}
	}
	if l.acquire() {
		t.Error("more concurrent checks than the cap")
	}
}

func netipFromInt(i int) netip.Prefix {
	return sourceOf(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + ":1")
}
