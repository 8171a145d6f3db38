package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

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

// allow reports whether key may make one more request now.
func (c *clientLimiter) allow(key string) bool {
	if c == nil {
		return true
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
	return b.l.AllowN(now, 1)
}
