package server

import (
	"container/list"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"golang.org/x/time/rate"
)

// ipv6SourceBits is how much of an IPv6 address names one source: a /64
// is the smallest subnet a site or a single cloud host is given (RFC
// 6177; EC2 hands out /80s and /64s), so the 2^64 addresses inside it
// would otherwise be 2^64 separate clients for whoever holds it.
const ipv6SourceBits = 64

// sourceKey names the network source of a "host:port" remote address:
// the IPv4 address, or the /64 an IPv6 address lies in (an IPv4 address
// mapped into IPv6 counts as IPv4). An address that does not parse is
// its own key.
func sourceKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return "ip:" + remoteAddr
	}
	return addrKey(ap.Addr())
}

func addrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return "ip:" + a.String()
	}
	p, _ := a.WithZone("").Prefix(ipv6SourceBits)
	return "ip:" + p.String()
}

// maxClientBuckets bounds the per-client buckets kept at once. A bucket
// costs about 250 B (the limiter, its key, its map and list entries), so
// the table stays under ~16 MB however many keys arrive; 65,536 is more
// clients than one CA sees within one refill period (Burst/RatePerClient
// seconds: 2 s at the defaults), the only time a bucket holds state.
const maxClientBuckets = 1 << 16

// clientLimiter is a token bucket per client key (a verified identity,
// else the source address), so one misbehaving client cannot starve the
// others. The buckets live in a table of at most max entries, least
// recently used first out, and only a bucket that has refilled is ever
// dropped (it holds no state a new bucket would not). When every entry
// is still refilling, keys not in the table share one overflow bucket:
// a flood of new keys (many addresses at once) is then limited as one
// client, and can neither grow the table nor reset the debt of the
// clients already in it.
type clientLimiter struct {
	mu       sync.Mutex
	r        rate.Limit
	burst    int
	max      int
	now      func() time.Time
	buckets  map[string]*list.Element // of *bucket
	lru      list.List                // most recently used at the front
	overflow *rate.Limiter
}

type bucket struct {
	key string
	l   *rate.Limiter
}

func newClientLimiter(perSecond float64, burst, max int, now func() time.Time) *clientLimiter {
	if burst <= 0 {
		burst = 1
	}
	if max <= 0 {
		max = maxClientBuckets
	}
	return &clientLimiter{r: rate.Limit(perSecond), burst: burst, max: max, now: now,
		buckets: map[string]*list.Element{}, overflow: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// allow reports whether key may make one more request now, and if not,
// how long until it may.
func (c *clientLimiter) allow(key string) (bool, time.Duration) {
	if c == nil {
		return true, 0
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.limiterFor(key, now)
	if l.AllowN(now, 1) {
		return true, 0
	}
	r := l.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// limiterFor returns key's bucket, making one if the table has room or
// its least recently used bucket has refilled, else the overflow bucket.
func (c *clientLimiter) limiterFor(key string, now time.Time) *rate.Limiter {
	if e, ok := c.buckets[key]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*bucket).l
	}
	if c.lru.Len() >= c.max {
		e := c.lru.Back()
		old := e.Value.(*bucket)
		if old.l.TokensAt(now) < float64(c.burst) {
			return c.overflow
		}
		delete(c.buckets, old.key)
		c.lru.Remove(e)
	}
	b := &bucket{key: key, l: rate.NewLimiter(c.r, c.burst)}
	c.buckets[key] = c.lru.PushFront(b)
	return b.l
}

// size is the number of buckets held (tests check the bound).
func (c *clientLimiter) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// limitedProcedures are the calls a host may make at most RatePerClient
// times a second: they cost the CA a signature each.
var limitedProcedures = map[string]bool{
	"/lanyard.v1.CertificateService/Enroll":     true,
	"/lanyard.v1.CertificateService/Renew":      true,
	"/lanyard.v1.CertificateService/RevokeSelf": true,
}

// maxTarpit bounds how long a refused request is held before its answer.
// Holding it until the client may try again (at most this long) costs a
// parked goroutine, no CPU, and turns a closed-loop flood into a trickle.
const maxTarpit = time.Second

// rateKey is the client a limited request is counted against. A client
// certificate counts only once it has verified (withClientCert runs
// first), and then by its subject CN, the identity every certificate of
// one lineage shares (renewal copies the subject from the record): a host
// renewing down its own chain stays one client, and a certificate the CA
// did not issue, however fresh, is no identity at all. Everything else is
// counted by its source address (sourceKey).
func rateKey(r *http.Request) string {
	if c := ClientCert(r.Context()); c != nil {
		return "cn:" + c.Subject.CommonName
	}
	return sourceKey(r.RemoteAddr)
}

// rateLimit refuses enroll, renew and self-revoke calls over the
// per-client rate (see rateKey) before the body is read or decoded, so
// refusing costs next to nothing. The answer is a Connect
// ResourceExhausted error (HTTP 429) with Retry-After.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	if s.limiter == nil {
		return next
	}
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !limitedProcedures[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		ok, wait := s.limiter.allow(rateKey(r))
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		s.metrics.limited.Inc()
		hold := min(wait, maxTarpit)
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait-hold, time.Second).Seconds()))))
		_ = ew.Write(w, r, connect.NewError(connect.CodeResourceExhausted, errRateLimited))
	})
}
