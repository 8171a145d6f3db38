package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

const (
	// defaultMaxHandshakes caps the TLS handshakes in flight at once (the
	// MaxHandshakes default). Each holds a goroutine and a tls.Conn, some
	// 20 KiB; 256 of them is 5 MiB, and 256 handshakes is more than two
	// cores finish in a tenth of a second, so a deeper queue only adds
	// latency: the rest wait in the kernel's accept backlog.
	defaultMaxHandshakes = 256
	// maxHandshakesPerSource caps the handshakes in flight from one source
	// (sourceKey: an IPv4 address or an IPv6 /64). A host has one in
	// flight; a NAT gateway in front of a fleet has a few (a handshake
	// lasts two round trips, so 16 at once is still hundreds a second
	// across a continent). One source then holds at most 1/16 of the
	// global slots; a connection over its cap is closed at once.
	maxHandshakesPerSource = 16
	// helloTimeout is how long a new connection may stay silent before
	// the first bytes of its ClientHello: a TLS client writes it right
	// after the TCP handshake, and 3 s leaves room for one lost segment's
	// retransmission (initial RTO 1 s, RFC 6298) on a slow link. An idle
	// connection holds a handshake slot this long at most.
	helloTimeout = 3 * time.Second
	// handshakeTimeout bounds one whole TLS handshake once it has begun:
	// a client trickling its handshake holds its slot at most this long.
	handshakeTimeout = 10 * time.Second
)

// handshakeListener accepts raw connections and performs each TLS
// handshake in its own goroutine; Accept returns only connections whose
// handshake finished. At most max handshakes are in flight at once (a
// flood of half-open handshakes waits in the kernel's backlog instead of
// eating the CPU and memory every other client needs), and at most
// perSource from one source, so one address cannot take every slot:
// whoever else connects is accepted while it tries.
type handshakeListener struct {
	net.Listener
	cfg       *tls.Config
	perSource int
	hello     time.Duration
	sem       chan struct{}
	conns     chan net.Conn
	errc      chan error
	ctx       context.Context // ends on Close: in-flight handshakes stop
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the accept loop and every handshake
	once      sync.Once
	onRefuse  func() // counts connections closed over the per-source cap

	mu       sync.Mutex
	inFlight map[string]int // per source key
}

// handshakeLimits are a handshakeListener's caps; zero fields take the
// defaults above.
type handshakeLimits struct {
	max, perSource int
	hello          time.Duration
}

// newHandshakeListener wraps ln so Accept yields handshaken *tls.Conn
// values, within lim; onRefuse (optional) is called for every connection
// closed over the per-source cap.
func newHandshakeListener(ln net.Listener, cfg *tls.Config, lim handshakeLimits, onRefuse func()) *handshakeListener {
	if lim.max <= 0 {
		lim.max = defaultMaxHandshakes
	}
	if lim.perSource <= 0 {
		lim.perSource = maxHandshakesPerSource
	}
	if lim.hello <= 0 {
		lim.hello = helloTimeout
	}
	if onRefuse == nil {
		onRefuse = func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &handshakeListener{Listener: ln, cfg: cfg, perSource: lim.perSource, hello: lim.hello,
		sem: make(chan struct{}, lim.max), conns: make(chan net.Conn), errc: make(chan error, 1),
		ctx: ctx, cancel: cancel, onRefuse: onRefuse, inFlight: map[string]int{}}
	h.wg.Add(1)
	go h.loop()
	return h
}

// connSource is the source key of a raw connection.
func connSource(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return addrKey(ip)
		}
	}
	return sourceKey(c.RemoteAddr().String())
}

// take reserves a handshake slot for source key k, or reports that k
// already holds its share.
func (h *handshakeListener) take(k string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inFlight[k] >= h.perSource {
		return false
	}
	h.inFlight[k]++
	return true
}

func (h *handshakeListener) release(k string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inFlight[k]--; h.inFlight[k] <= 0 {
		delete(h.inFlight, k)
	}
}

func (h *handshakeListener) loop() {
	defer h.wg.Done()
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
			case <-h.ctx.Done():
			}
			return
		}
		k := connSource(c)
		if !h.take(k) {
			h.onRefuse()
			c.Close()
			continue
		}
		select {
		case h.sem <- struct{}{}:
		case <-h.ctx.Done():
			h.release(k)
			c.Close()
			return
		}
		h.wg.Add(1)
		go h.handshake(c, k)
	}
}

// handshake runs one TLS handshake: the first bytes must arrive within
// the hello timeout, the whole handshake within handshakeTimeout.
func (h *handshakeListener) handshake(c net.Conn, k string) {
	defer h.wg.Done()
	defer func() { <-h.sem }()
	defer h.release(k)
	_ = c.SetReadDeadline(time.Now().Add(h.hello))
	tc := tls.Server(&helloConn{Conn: c}, h.cfg)
	ctx, cancel := context.WithTimeout(h.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		return
	}
	select {
	case h.conns <- tc:
	case <-h.ctx.Done():
		tc.Close()
	}
}

// helloConn lifts the hello deadline once the first bytes have arrived
// (the handshake's own timeout takes over).
type helloConn struct {
	net.Conn
	started bool
}

func (c *helloConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.started {
		c.started = true
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	return n, err
}

// Accept returns the next connection whose TLS handshake finished.
func (h *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case err := <-h.errc:
		return nil, err
	case <-h.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting, ends the handshakes in flight and returns once
// every goroutine the listener started has returned.
func (h *handshakeListener) Close() error {
	var err error
	h.once.Do(func() {
		h.cancel()
		err = h.Listener.Close()
		h.wg.Wait()
	})
	return err
}
