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
	// DefaultMaxHandshakes caps the TLS handshakes in flight at once (the
	// MaxHandshakes default). Each holds a goroutine and a tls.Conn, some
	// 20 KiB; 256 of them is 5 MiB, and 256 handshakes is more than two
	// cores finish in a tenth of a second, so more at once only adds
	// latency: the rest wait in the kernel's accept backlog.
	DefaultMaxHandshakes = 256
	// maxHandshakesPerSource caps the handshakes in flight from one source
	// (sourceKey: an IPv4 address or an IPv6 /64). A host has one in
	// flight; a NAT gateway in front of a fleet has a few (a handshake
	// lasts two round trips, so 16 at once is still hundreds a second
	// across a continent). Beyond it, a source gets more only while
	// fewer than half of all slots are busy (see handshakeListener).
	maxHandshakesPerSource = 16
	// maxQueuedPerSource is how many more connections of one source wait
	// (accepted, no goroutine, no slot) for one of its handshakes to end:
	// a fleet behind one NAT that boots at once opens about as many as it
	// has hosts. Over it, a connection is closed at once.
	maxQueuedPerSource = 1024
	// maxQueued bounds the waiting connections of every source together:
	// 4,096 is Linux's default accept backlog (net.core.somaxconn), the
	// number of connections the kernel would hold for us anyway.
	maxQueued = 4096
	// helloTimeout is how long a connection may stay silent, once its
	// handshake starts, before the first bytes of its ClientHello: a TLS
	// client writes it right after the TCP handshake, and 3 s leaves room
	// for one lost segment's retransmission (initial RTO 1 s, RFC 6298)
	// on a slow link. An idle connection holds a slot this long at most.
	helloTimeout = 3 * time.Second
	// handshakeTimeout bounds one whole TLS handshake once it has begun:
	// a client trickling its handshake holds its slot at most this long.
	handshakeTimeout = 10 * time.Second
)

// handshakeListener accepts raw connections and performs their TLS
// handshakes; Accept returns only connections whose handshake finished.
// At most max handshakes are in flight at once (a flood of half-open
// handshakes waits in the kernel's backlog instead of eating the CPU and
// memory every other client needs). A source is always allowed perSource
// of them, and more only while fewer than max/2 are in flight in all: an
// idle server lets one busy source (a NAT in front of a booting fleet)
// use half of it, and the other half stays free for everyone else. A
// source's further connections wait in its own queue, served by the
// workers already busy for that source, so one address can delay only
// itself: whoever else connects finds a free slot.
type handshakeListener struct {
	net.Listener
	cfg       *tls.Config
	perSource int
	// queuePerSource: maxQueuedPerSource (tests lower it)
	queuePerSource int
	hello          time.Duration
	sem            chan struct{}
	conns          chan net.Conn
	errc           chan error
	ctx            context.Context // ends on Close: in-flight handshakes stop
	cancel         context.CancelFunc
	wg             sync.WaitGroup // the accept loop and every handshake worker
	once           sync.Once
	onRefuse       func() // counts connections closed over the queue caps

	mu      sync.Mutex
	sources map[string]*source
	queued  int // connections waiting, all sources
	active  int // workers running, all sources
	shared  int // a source gets more than perSource while active < shared
}

// source is one source key's handshakes in flight and its waiting queue.
type source struct {
	inFlight int
	queue    []net.Conn
}

// handshakeLimits are a handshakeListener's caps; zero fields take the
// defaults above.
type handshakeLimits struct {
	max, perSource, queuePerSource int
	hello                          time.Duration
}

// newHandshakeListener wraps ln so Accept yields handshaken *tls.Conn
// values, within lim; onRefuse (optional) is called for every connection
// closed because its source's queue (or every source's) was full.
func newHandshakeListener(ln net.Listener, cfg *tls.Config, lim handshakeLimits, onRefuse func()) *handshakeListener {
	if lim.max <= 0 {
		lim.max = DefaultMaxHandshakes
	}
	if lim.perSource <= 0 {
		lim.perSource = maxHandshakesPerSource
	}
	if lim.queuePerSource <= 0 {
		lim.queuePerSource = maxQueuedPerSource
	}
	if lim.hello <= 0 {
		lim.hello = helloTimeout
	}
	if onRefuse == nil {
		onRefuse = func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &handshakeListener{Listener: ln, cfg: cfg, perSource: lim.perSource, queuePerSource: lim.queuePerSource, hello: lim.hello,
		sem: make(chan struct{}, lim.max), conns: make(chan net.Conn), errc: make(chan error, 1),
		ctx: ctx, cancel: cancel, onRefuse: onRefuse, sources: map[string]*source{}, shared: lim.max / 2}
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

// admit decides what happens to a new connection of source k: start a
// worker for it (true), or queue it, or refuse it (false, and refused
// tells which).
func (h *handshakeListener) admit(c net.Conn, k string) (start, refused bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.sources[k]
	if st == nil {
		st = &source{}
		h.sources[k] = st
	}
	switch {
	case st.inFlight < h.perSource || h.active < h.shared:
		st.inFlight++
		h.active++
		return true, false
	case len(st.queue) < h.queuePerSource && h.queued < maxQueued:
		st.queue = append(st.queue, c)
		h.queued++
		return false, false
	}
	return false, true
}

// next hands a worker of source k the next waiting connection of k, or
// ends the worker's turn (nil).
func (h *handshakeListener) next(k string) net.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.sources[k]
	if len(st.queue) > 0 && h.ctx.Err() == nil {
		c := st.queue[0]
		st.queue[0] = nil
		st.queue = st.queue[1:]
		h.queued--
		return c
	}
	h.active--
	if st.inFlight--; st.inFlight == 0 && len(st.queue) == 0 {
		delete(h.sources, k)
	}
	return nil
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
		start, refused := h.admit(c, k)
		if refused {
			h.onRefuse()
			c.Close()
		}
		if !start {
			continue
		}
		select {
		case h.sem <- struct{}{}:
		case <-h.ctx.Done():
			c.Close()
			for c := h.next(k); c != nil; c = h.next(k) {
				c.Close()
			}
			return
		}
		h.wg.Add(1)
		go h.worker(c, k)
	}
}

// worker handshakes c, then the connections waiting behind it from the
// same source, one at a time, holding one global and one per-source slot.
func (h *handshakeListener) worker(c net.Conn, k string) {
	defer h.wg.Done()
	defer func() { <-h.sem }()
	for ; c != nil; c = h.next(k) {
		h.handshake(c)
	}
}

// handshake runs one TLS handshake: the first bytes must arrive within
// the hello timeout, the whole handshake within handshakeTimeout.
func (h *handshakeListener) handshake(c net.Conn) {
	if h.ctx.Err() != nil {
		c.Close()
		return
	}
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

// Close stops accepting, ends the handshakes in flight, closes the
// connections waiting for one and returns once every goroutine the
// listener started has returned.
func (h *handshakeListener) Close() error {
	var err error
	h.once.Do(func() {
		h.cancel()
		err = h.Listener.Close()
		h.wg.Wait()
		h.mu.Lock()
		for _, st := range h.sources {
			for _, c := range st.queue {
				c.Close()
			}
		}
		h.sources = map[string]*source{}
		h.mu.Unlock()
	})
	return err
}
