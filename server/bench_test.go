package server_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/testca"
)

// BenchmarkEnrollParallel is the in-process view of issuance throughput
// (server and clients in one process, over loopback TLS): use it with
// -cpuprofile to see where a certificate's time goes. `make bench` has
// the real figures.
func BenchmarkEnrollParallel(b *testing.B) {
	c := testca.Start(b, testca.Options{})
	reqs := make([]*v1.EnrollRequest, b.N)
	for i := range reqs {
		reqs[i] = &v1.EnrollRequest{Token: c.Token(b, "bench.covalent.example.net"), Csr: csr(b, newKey(b), nil)}
	}
	hc := c.Anonymous.HTTP
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	cl, _ := caclient.NewWithHTTP(c.URL, hc)
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if _, err := cl.Certificates.Enroll(context.Background(), connect.NewRequest(reqs[i])); err != nil {
				b.Error(err)
			}
		}
	})
}

// BenchmarkRenewFreshParallel renews over a fresh mTLS connection per
// renewal (as real agents do), in-process: use it with -cpuprofile.
func BenchmarkRenewFreshParallel(b *testing.B) {
	c := testca.Start(b, testca.Options{})
	type item struct {
		cl  *caclient.Clients
		csr []byte
	}
	items := make([]item, b.N)
	for i := range items {
		bd, key := enroll(b, c, "bench.covalent.example.net")
		cert := tlsCert(b, bd, key)
		items[i].csr = csr(b, newKey(b), nil)
		hc := caclient.HTTPClient(c.Server.RootPool(), cert)
		hc.Transport.(*http.Transport).DisableKeepAlives = true
		items[i].cl, _ = caclient.NewWithHTTP(c.URL, hc)
	}
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			it := items[next.Add(1)-1]
			if _, err := it.cl.Certificates.Renew(context.Background(), connect.NewRequest(&v1.RenewRequest{Csr: it.csr})); err != nil {
				b.Error(err)
			}
		}
	})
}
