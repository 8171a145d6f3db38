package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"golang.org/x/time/rate"
)

// handshakeTimeout bounds one TLS handshake: a slow or silent client holds
// a handshake slot for at most this long.
const handshakeTimeout = 10 * time.Second

// handshakeListener accepts raw connections and performs each TLS
// handshake in its own goroutine, at most max at once; Accept returns
// only connections whose handshake finished. A flood of half-open
// handshakes therefore waits in the kernel's backlog instead of eating
// the CPU every other client needs.
type handshakeListener struct {
	net.Listener
	cfg   *tls.Config
	sem   chan struct{}
	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
}

func newHandshakeLimiter(ln net.Listener, max int) net.Listener {
	return &rawListener{Listener: ln, max: max}
}

// rawListener carries the cap until TLS is attached by tlsListener.
type rawListener struct {
	net.Listener
	max int
}

// tlsListener wraps ln so Accept yields handshaken *tls.Conn values.
func tlsListener(ln net.Listener, cfg *tls.Config) net.Listener {
	max := 256
	if r, ok := ln.(*rawListener); ok {
		max = r.max
		ln = r.Listener
	}
	h := &handshakeListener{Listener: ln, cfg: cfg, sem: make(chan struct{}, max),
		conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go h.loop()
	return h
}

func (h *handshakeListener) loop() {
	for {
		c, err := h.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			select {
			case h.errc <- err:
			case <-h.done:
			}
			return
		}
		select {
		case h.sem <- struct{}{}:
		case <-h.done:
			c.Close()
			return
		}
		go func() {
			defer func() { <-h.sem }()
			tc := tls.Server(c, h.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				tc.Close()
				return
			}
			select {
			case h.conns <- tc:
			case <-h.done:
				tc.Close()
			}
		}()
	}
}

func (h *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case err := <-h.errc:
		return nil, err
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handshakeListener) Close() error {
	h.once.Do(func() { close(h.done) })
	return h.Listener.Close()
}

// clientLimiter is a token bucket per client key (the client's IP for
// enrollment, its certificate serial for renewal), so one misbehaving host
// cannot starve the others. Buckets idle for an hour are dropped.
type clientLimiter struct {
	mu      sync.Mutex
	r       rate.Limit
	burst   int
	now     func() time.Time
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newClientLimiter(perSecond float64, burst int, now func() time.Time) *clientLimiter {
	if burst <= 0 {
		burst = 1
	}
	return &clientLimiter{r: rate.Limit(perSecond), burst: burst, now: now, buckets: map[string]*bucket{}}
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
	if now.Sub(c.swept) > time.Hour {
		for k, b := range c.buckets {
			if now.Sub(b.seen) > time.Hour {
				delete(c.buckets, k)
			}
		}
		c.swept = now
	}
	b, ok := c.buckets[key]
	if !ok {
		b = &bucket{l: rate.NewLimiter(c.r, c.burst)}
		c.buckets[key] = b
	}
	b.seen = now
	if b.l.AllowN(now, 1) {
		return true, 0
	}
	r := b.l.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
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

// rateLimit refuses enroll, renew and self-revoke calls over the per-client
// rate before anything is read or decoded, so refusing costs next to
// nothing. The client is its TLS certificate (by the SHA-256 of its bytes:
// a forged certificate carrying another host's serial is a different
// client) or, without one, its IP address. The answer is a Connect
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
		key := ""
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
			key = "cert:" + hex.EncodeToString(sum[:16])
		} else {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			key = "ip:" + host
		}
		ok, wait := s.limiter.allow(key)
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
