package server_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/testca"
)

// TestShutdownLeavesNoGoroutine: a server that has enrolled, renewed,
// answered admin calls and holds idle and half-open connections (silent,
// and mid-ClientHello) leaves no goroutine of its own behind once Serve
// has returned: no handshake waiting out its deadline, no accept loop, no
// ticker, no store writer.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	opts := goleak.IgnoreCurrent()
	c := testca.Start(t, rateLimited(100, 100))
	b, key := enroll(t, c, "leak.covalent.example.net")
	host := c.Client(t, tlsCert(t, b, key))
	if _, err := host.Certificates.Renew(context.Background(), connect.NewRequest(&v1.RenewRequest{Csr: csr(t, newKey(t), nil)})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admin.Admin.ListCertificates(context.Background(), connect.NewRequest(&v1.ListCertificatesRequest{})); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(c.URL, "https://")
	for i := 0; i < 8; i++ {
		cn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer cn.Close()
		if i%2 == 0 {
			_, _ = cn.Write([]byte{0x16, 3, 1}) // a ClientHello begins, and stalls
		}
	}
	c.Stop()
	for _, cl := range [](interface{ CloseIdleConnections() }){c.Admin.HTTP, c.Anonymous.HTTP, host.HTTP} {
		cl.CloseIdleConnections()
	}
	goleak.VerifyNone(t, opts)
}
