package web

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Password login limits (POST /admin/login). The certificate login is
// never subject to them: it does no password check.
const (
	// loginSourceBurst is how many failed password attempts one source
	// address (an IPv4 address, an IPv6 /64) may make in a row: enough for
	// a person's typos.
	loginSourceBurst = 5
	// loginSourceRefill gives a source one more attempt every 30 s: a
	// guesser gets 2,880 tries a day per address, a person waits half a
	// minute after five typos.
	loginSourceRefill = 30 * time.Second
	// accountBackoffAfter consecutive failures of the account (from any
	// address) start the per-account backoff.
	accountBackoffAfter = 5
	// accountBackoffMax caps the per-account backoff.
	accountBackoffMax = 5 * time.Minute
	// maxConcurrentChecks bounds argon2id checks running at once, for CPU
	// and memory only (each costs argonMemory, ~19 MiB: 4 is ~76 MiB).
	maxConcurrentChecks = 4
	// maxLoginSources bounds the per-source table (~100 B an entry); when
	// full, sources that owe nothing are forgotten first.
	maxLoginSources = 10000
	// ipv6SourceBits is the IPv6 prefix one source holds: a host usually
	// gets a whole /64, so counting addresses inside it would be useless.
	ipv6SourceBits = 64
)

// loginLimiter limits password attempts per source address and backs off
// per account; it never blocks a source with no failure on record, so an
// attacker cannot lock the admin out from another address. Its clock is
// the page's (Config.Now).
type loginLimiter struct {
	now func() time.Time
	sem chan struct{}

	mu      sync.Mutex
	sources map[netip.Prefix]*loginSource
	// failures counts the account's consecutive failed attempts, last is
	// the newest.
	failures int
	last     time.Time
}

// loginSource is one source's failure bucket.
type loginSource struct {
	tokens float64 // failed attempts it may still make
	at     time.Time
	failed bool // it failed since its bucket was last full
}

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, sem: make(chan struct{}, maxConcurrentChecks), sources: map[netip.Prefix]*loginSource{}}
}

// sourceOf is the source key of a request's remote address.
func sourceOf(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = ipv6SourceBits
	}
	p, _ := a.Prefix(bits)
	return p
}

// refill brings s's bucket up to now.
func (s *loginSource) refill(now time.Time) {
	if el := now.Sub(s.at); el > 0 {
		s.tokens = math.Min(loginSourceBurst, s.tokens+float64(el)/float64(loginSourceRefill))
		s.at = now
	}
	if s.tokens >= loginSourceBurst {
		s.failed = false
	}
}

// accountBackoff is the wait the account's failures impose.
func (l *loginLimiter) accountBackoff() time.Duration {
	if l.failures < accountBackoffAfter {
		return 0
	}
	n := l.failures - accountBackoffAfter
	if n > 20 {
		return accountBackoffMax
	}
	return min(time.Second<<n, accountBackoffMax)
}

// allow reports whether the source may try a password now, else how long
// it must wait.
func (l *loginLimiter) allow(src netip.Prefix) (time.Duration, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sources[src]
	if s == nil {
		return 0, true // no failure on record: neither limit applies
	}
	s.refill(now)
	if s.tokens < 1 {
		return time.Duration((1 - s.tokens) * float64(loginSourceRefill)), false
	}
	if s.failed {
		if until := l.last.Add(l.accountBackoff()); now.Before(until) {
			return until.Sub(now), false
		}
	}
	return 0, true
}

// record notes the outcome of a password check from src.
func (l *loginLimiter) record(src netip.Prefix, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.failures = 0
		delete(l.sources, src)
		return
	}
	l.failures++
	l.last = now
	s := l.sources[src]
	if s == nil {
		l.makeRoom(now)
		s = &loginSource{tokens: loginSourceBurst, at: now}
		l.sources[src] = s
	}
	s.refill(now)
	s.tokens = math.Max(0, s.tokens-1)
	s.failed = true
}

// makeRoom keeps the table under maxLoginSources: sources whose bucket is
// full again go first, then arbitrary ones.
func (l *loginLimiter) makeRoom(now time.Time) {
	if len(l.sources) < maxLoginSources {
		return
	}
	for k, s := range l.sources {
		if s.refill(now); !s.failed {
			delete(l.sources, k)
		}
	}
	for k := range l.sources {
		if len(l.sources) < maxLoginSources {
			break
		}
		delete(l.sources, k)
	}
}

// acquire takes one of the concurrent-check slots without waiting; release
// gives it back.
func (l *loginLimiter) acquire() bool {
	select {
	case l.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *loginLimiter) release() { <-l.sem }
