package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/api/lanyard/v1/lanyardv1connect"
	"github.com/lanyard/lanyard/internal/testca"
)

// clientFrom returns an HTTP client for c whose connections leave from
// the local address src (any 127/8 address reaches the loopback server).
func clientFrom(t *testing.T, c *testca.CA, src string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{
		DialContext:       d.DialContext,
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.Server.RootPool()},
	}}
}

// TestIdleConnectionsFromOneAddressStarveNoOne: one address holds 1,000
// idle TCP connections to the CA (it used to take every handshake slot
// for 10 s each, so everyone else's calls queued behind them); another
// address still enrolls and reads /healthz, well before any of the idle
// connections' handshake deadlines.
func TestIdleConnectionsFromOneAddressStarveNoOne(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	addr := strings.TrimPrefix(c.URL, "https://")
	tok := c.Token(t, "other.covalent.example.net")
	idle := make([]net.Conn, 0, 1000)
	defer func() {
		for _, cn := range idle {
			cn.Close()
		}
	}()
	for len(idle) < cap(idle) {
		cn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(idle), err)
		}
		idle = append(idle, cn)
	}
	hc := clientFrom(t, c, "127.0.0.2")
	defer hc.CloseIdleConnections()
	// Shorter than handshakeTimeout (10 s): the old listener freed no slot
	// before then, and had 1,000 connections to get through first.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	certs := lanyardv1connect.NewCertificateServiceClient(hc, c.URL)
	if _, err := certs.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: tok, Csr: csr(t, newKey(t), nil)})); err != nil {
		t.Fatalf("enroll from 127.0.0.2 while 127.0.0.1 holds 1,000 idle connections: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/healthz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("/healthz from 127.0.0.2: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
}
