package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// fakeClock has a wall clock (Now) and a monotonic timer clock (After).
// Advance moves both and fires due timers; Jump moves only the wall clock,
// as a suspend does (monotonic timers stop while the host sleeps).
type fakeClock struct {
	mu      sync.Mutex
	wall    time.Time
	mono    time.Duration
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced whenever a timer is added
}

type fakeTimer struct {
	at time.Duration
	c  chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{wall: t, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.mono + d, c: make(chan time.Time, 1)}
	if d <= 0 {
		ft.c <- c.wall
		return ft.c
	}
	c.timers = append(c.timers, ft)
	close(c.changed)
	c.changed = make(chan struct{})
	return ft.c
}

// Advance moves both clocks by d and fires every timer that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
	c.mono += d
	kept := c.timers[:0]
	for _, ft := range c.timers {
		if ft.at <= c.mono {
			ft.c <- c.wall
		} else {
			kept = append(kept, ft)
		}
	}
	c.timers = kept
}

// Jump moves only the wall clock (a suspend): no timer fires.
func (c *fakeClock) Jump(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// Pending returns the durations until each pending timer fires, sorted.
func (c *fakeClock) Pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, ft := range c.timers {
		out = append(out, ft.at-c.mono)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// WaitTimers blocks until at least n timers are pending.
func (c *fakeClock) WaitTimers(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		got, ch := len(c.timers), c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("fake clock: %d timers pending, waited for %d", got, n)
		}
	}
}

// AdvanceTo advances the clock until its wall time reaches target, one
// pending timer at a time (a timer-driven wait re-arms after each fire).
func (c *fakeClock) AdvanceTo(t *testing.T, target time.Time) {
	t.Helper()
	for {
		d := target.Sub(c.Now())
		if d <= 0 {
			return
		}
		c.WaitTimers(t, 1)
		p := c.Pending()
		c.Advance(min(d, p[0]))
	}
}

// switchProxy is a TCP proxy on a fixed loopback port to a backend that a
// test can switch (a CA restarted on a new port keeps the URL hosts have).
type switchProxy struct {
	ln      net.Listener
	backend atomic.Value // string
}

func newSwitchProxy(t *testing.T) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln}
	p.backend.Store("")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *switchProxy) URL() string { return "https://" + p.ln.Addr().String() }

func (p *switchProxy) Point(caURL string) {
	p.backend.Store(caURL[len("https://"):])
}

func (p *switchProxy) serve(c net.Conn) {
	defer c.Close()
	b, _ := p.backend.Load().(string)
	if b == "" {
		return
	}
	u, err := net.DialTimeout("tcp", b, 2*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// enroll enrolls a fresh host folder against ca (reachable at caURL) the
// way `lanyard enroll` does, and returns its path.
func enroll(t *testing.T, ca *testca.CA, caURL, cn, keyType string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "host")
	enrollInto(t, ca, caURL, dir, cn, keyType)
	return dir
}

func enrollInto(t *testing.T, ca *testca.CA, caURL, dir, cn, keyType string) *v1.Bundle {
	t.Helper()
	key, err := NewKey(keyType)
	if err != nil {
		t.Fatal(err)
	}
	csr, keyPEM, err := NewCSR(key, caclient.Names{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ca.Anonymous.Certificates.Enroll(context.Background(),
		connect.NewRequest(&v1.EnrollRequest{Token: ca.Token(t, cn), Csr: csr}))
	if err != nil {
		t.Fatalf("enroll %s: %v", cn, err)
	}
	b := resp.Msg.GetBundle()
	d, err := hostdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(hostdir.Material{CertPEM: []byte(b.GetCertificatePem()), ChainPEM: []byte(b.GetChainPem()), KeyPEM: keyPEM}); err != nil {
		t.Fatal(err)
	}
	if err := WriteEnrollment(dir, &Enrollment{CA: caURL, KeyType: keyType}, ca.Authority.RootsPEM()); err != nil {
		t.Fatal(err)
	}
	return b
}

// snapshot records what a folder's readers see: current and the bytes of
// every Certbot-style file.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	cur, err := os.Readlink(filepath.Join(dir, hostdir.CurrentLink))
	if err != nil {
		t.Fatal(err)
	}
	out["current"] = cur
	for _, f := range []string{hostdir.CertFile, hostdir.ChainFile, hostdir.FullchainFile, hostdir.KeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(b)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %s changed", what, k)
		}
	}
}

func currentVersion(t *testing.T, dir string) *hostdir.Version {
	t.Helper()
	v, err := (&hostdir.Dir{Path: dir}).LoadCurrent()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var discardLogger = slog.New(slog.DiscardHandler)
