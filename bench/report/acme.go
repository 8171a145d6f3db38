package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/acmeclient"
)

// acmeRowName names the ACME row (issue 14's Performance section).
const acmeRowName = "ACME new-order → finalize (golang.org/x/crypto/acme, http-01)"

// acmeConcurrency is the c=16.
const acmeConcurrency = 16

// acmeRow measures ACME orders end to end at c=16: new-order, the
// authorization, http-01 (lanyard fetches the key authorization from the
// generator's responder), finalize and the certificate download, each
// order for its own CN. The server runs in dev mode, the only mode that
// takes the validation port and address (acme.http01_port, resolve_to);
// the accounts (one per worker, through one reusable EAB key) are
// registered before the timed window.
func (r *report) acmeRow(ctx context.Context, bin string, runs, n int) error {
	resp, err := acmeclient.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer resp.Close()
	dir, err := os.MkdirTemp("", "lanyard-bench-acme-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Mkdir(filepath.Join(dir, ".lanyard"), 0o700); err != nil { // dev mode's welcome token
		return err
	}
	extra := fmt.Sprintf("dev: true\nacme:\n  http01_port: %d\n  resolve_to: 127.0.0.1\n", resp.Port())
	srv, err := startServer(bin, dir, "", "acme", true, extra)
	if err != nil {
		return err
	}
	defer srv.stop()
	eab, err := srv.admin.Admin.CreateAcmeEabKey(ctx, connect.NewRequest(&v1.CreateAcmeEabKeyRequest{Profile: "covalent", Reusable: true}))
	if err != nil {
		return fmt.Errorf("EAB key: %w", err)
	}
	pool, err := caclient.Pool(srv.roots)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: acmeConcurrency, MaxConnsPerHost: acmeConcurrency,
	}}
	dirURL := srv.url + "/acme/covalent/directory"
	clients := make([]*acmeclient.Client, acmeConcurrency)
	for i := range clients {
		if clients[i], err = acmeclient.Register(ctx, dirURL, hc, eab.Msg.GetKeyId(), eab.Msg.GetHmacKey(), resp); err != nil {
			return err
		}
	}
	var results []result
	for k := 0; k < runs; k++ {
		res := srv.acmeLoad(ctx, clients, n, k)
		log.Printf("%s c=%d run %d: %.0f/s p50=%.1fms p99=%.1fms errors=%d", acmeRowName, acmeConcurrency, k+1, res.rate, ms(res.p50), ms(res.p99), res.errors)
		results = append(results, res)
	}
	r.rows = append(r.rows, row{name: fmt.Sprintf("%s, c=%d", acmeRowName, acmeConcurrency), res: ptr(median(results)), target: "reported"})
	return nil
}

// acmeLoad runs one timed window of n orders, worker w on clients[w];
// run keeps the CNs of successive runs apart.
func (s *server) acmeLoad(ctx context.Context, clients []*acmeclient.Client, n, run int) result {
	lat := make([]time.Duration, n)
	var errs, next atomic.Int64
	var wg sync.WaitGroup
	meter := startCPU(s)
	start := time.Now()
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				_, _, err := cl.Obtain(ctx, fmt.Sprintf("a%d-%d.covalent.example.net", run, i))
				lat[i] = time.Since(t0)
				if err != nil && errs.Add(1) == 1 {
					log.Printf("first error: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	return summarize(lat, time.Since(start), int(errs.Load()), meter)
}
