package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func testListenerTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// startHandshakeListener runs a handshakeListener on a loopback port
// with lim, accepting (and closing) handshaken connections; refused
// counts the connections closed over the per-source cap.
func startHandshakeListener(t *testing.T, lim handshakeLimits) (addr string, refused *atomic.Int64, accepted chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused = new(atomic.Int64)
	h := newHandshakeListener(ln, testListenerTLS(t), lim, func() { refused.Add(1) })
	accepted = make(chan net.Conn, 16)
	go func() {
		for {
			c, err := h.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		h.Close()
		for c := range accepted {
			c.Close()
		}
	})
	return ln.Addr().String(), refused, accepted
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c within wait (a
// read that ends in EOF or a reset) rather than leaving it open.
func closedByServer(t *testing.T, c net.Conn, wait time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if err == nil {
		t.Fatal("the server sent bytes to a client that sent none")
	}
	return true // EOF or reset: the server closed it
}

// TestSilentConnectionEndsAtHelloTimeout: a connection that sends nothing
// is closed at the hello timeout, long before the handshake timeout; one
// that has started its ClientHello is not.
func TestSilentConnectionEndsAtHelloTimeout(t *testing.T) {
	const hello = 100 * time.Millisecond
	addr, _, _ := startHandshakeListener(t, handshakeLimits{hello: hello})
	silent := dialFrom(t, "127.0.0.1", addr)
	started := dialFrom(t, "127.0.0.1", addr)
	if _, err := started.Write([]byte{0x16}); err != nil { // a TLS handshake record begins
		t.Fatal(err)
	}
	if !closedByServer(t, silent, handshakeTimeout/2) {
		t.Fatalf("a silent connection was still open after %v (hello timeout %v)", handshakeTimeout/2, hello)
	}
	if closedByServer(t, started, 4*hello) {
		t.Fatal("a connection that had sent the first byte of its ClientHello was cut off at the hello timeout")
	}
}

// TestHandshakesCappedPerSource: one source has at most perSource
// handshakes in flight, or half of all slots if that is more; its next
// connections wait their turn (and are served once a slot frees), and
// once its queue is full a connection is closed at once, and counted;
// another source meanwhile handshakes at once.
func TestHandshakesCappedPerSource(t *testing.T) {
	for _, tc := range []struct {
		name          string
		max, inFlight int
	}{
		{"its own share", 4, 2},
		{"half of an idle server", 8, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, refused, accepted := startHandshakeListener(t, handshakeLimits{max: tc.max, perSource: 2, queuePerSource: 1, hello: time.Minute})
			var silent []net.Conn
			for range tc.inFlight {
				silent = append(silent, dialFrom(t, "127.0.0.1", addr))
			}
			waiting := make(chan error, 1)
			queued := tls.Client(dialFrom(t, "127.0.0.1", addr), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test listener's throwaway certificate
			go func() { waiting <- queued.Handshake() }()
			over := dialFrom(t, "127.0.0.1", addr)
			if !closedByServer(t, over, handshakeTimeout/2) {
				t.Fatalf("a connection from a source with %d handshakes in flight and 1 waiting was not closed", tc.inFlight)
			}
			if got := refused.Load(); got != 1 {
				t.Fatalf("refused count %d, want 1", got)
			}
			other := tls.Client(dialFrom(t, "127.0.0.2", addr), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // as above
			_ = other.SetDeadline(time.Now().Add(handshakeTimeout / 2))
			if err := other.Handshake(); err != nil {
				t.Fatalf("handshake from another source: %v", err)
			}
			<-accepted
			select {
			case err := <-waiting:
				t.Fatalf("the waiting connection was served while its source's slots were busy: %v", err)
			default:
			}
			for _, c := range silent { // their handshakes fail: the slots free up
				c.Close()
			}
			_ = queued.SetDeadline(time.Now().Add(handshakeTimeout / 2))
			if err := <-waiting; err != nil {
				t.Fatalf("the waiting connection, once a slot was free: %v", err)
			}
			<-accepted
		})
	}
}

// TestCloseEndsHandshakesInFlight: closing the listener ends every
// handshake goroutine at once, silent clients or not (they used to live
// out their handshake timeout).
func TestCloseEndsHandshakesInFlight(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHandshakeListener(ln, testListenerTLS(t), handshakeLimits{hello: time.Minute}, nil)
	var conns []net.Conn
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, c := range conns[:4] { // half of them start a ClientHello
		if _, err := c.Write([]byte{0x16, 3, 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
