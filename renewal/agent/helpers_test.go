package agent

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

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
	servetest.Splice(c, u)
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
	if err := hostdir.WriteEnrollment(dir, &hostdir.Enrollment{CA: caURL, KeyType: keyType}, ca.Authority.RootsPEM()); err != nil {
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
