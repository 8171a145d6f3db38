package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/engine"
)

// copyHost is one enrolled host of TestStoreCopyToPostgres: its newest
// certificate, and whether it was revoked.
type copyHost struct {
	cert    *tls.Certificate
	serial  string
	revoked bool
}

// enrollHost enrolls cn on c and returns its certificate.
func enrollHost(ctx context.Context, c *testca.CA, cn string) (*copyHost, error) {
	tok, err := c.Admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: cn}))
	if err != nil {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		return nil, err
	}
	resp, err := c.Anonymous.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: tok.Msg.GetToken(), Csr: csr}))
	if err != nil {
		return nil, err
	}
	return hostFromBundle(resp.Msg.GetBundle(), k), nil
}

func hostFromBundle(b *v1.Bundle, k *ecdsa.PrivateKey) *copyHost {
	leaf, _ := pem.Decode([]byte(b.GetCertificatePem()))
	chain, _ := pem.Decode([]byte(b.GetChainPem()))
	return &copyHost{cert: &tls.Certificate{Certificate: [][]byte{leaf.Bytes, chain.Bytes}, PrivateKey: k}, serial: b.GetSerial()}
}

// renewHost renews h's certificate on c and returns the successor.
func renewHost(ctx context.Context, t *testing.T, c *testca.CA, h *copyHost) (*copyHost, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		return nil, err
	}
	cl := c.Client(t, h.cert)
	defer cl.HTTP.CloseIdleConnections()
	resp, err := cl.Certificates.Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: csr}))
	if err != nil {
		return nil, err
	}
	return hostFromBundle(resp.Msg.GetBundle(), k), nil
}

// parallel runs f(i) for i in [0, n) on 8 goroutines and returns the
// first error.
func parallel(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// exportCounts counts every kind of record of the store at location.
func exportCounts(t *testing.T, location string) string {
	t.Helper()
	db, err := engine.Open(context.Background(), location, engine.Options{NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cnt := &counting{}
	if err := db.(store.Exporter).Export(context.Background(), cnt); err != nil {
		t.Fatal(err)
	}
	n, err := db.CRLNumber()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s, CRL number %d", cnt, n)
}

// TestStoreCopyToPostgres moves a bbolt store that served real traffic
// (enrollments, renewals, revocations with their lineage, unused tokens,
// the audit log, the CRL) to PostgreSQL with `lanyard store copy`, twice
// (the second run adds nothing), checks that both stores then hold the
// same count of every record and the same CRL number, and serves from
// PostgreSQL: every host renews, revoked ones are refused, and the CRL
// still lists the revocations.
func TestStoreCopyToPostgres(t *testing.T) {
	const hosts, revoked, spareTokens = copyFleet, copyFleet / 15, copyFleet / 3
	ctx := context.Background()
	dir := t.TempDir()
	src := testca.Start(t, testca.Options{Dir: dir})
	fleet := make([]*copyHost, hosts)
	if err := parallel(hosts, func(i int) (err error) {
		fleet[i], err = enrollHost(ctx, src, fmt.Sprintf("h%d.covalent.example.net", i))
		return err
	}); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if err := parallel(hosts/2, func(i int) (err error) {
		fleet[i], err = renewHost(ctx, t, src, fleet[i])
		return err
	}); err != nil {
		t.Fatalf("renew: %v", err)
	}
	for i := hosts - revoked; i < hosts; i++ {
		if _, err := src.Revocation.Revoke(ctx, revocation.Request{Serial: fleet[i].serial, Reason: 1, By: "admin:test"}); err != nil {
			t.Fatal(err)
		}
		fleet[i].revoked = true
	}
	for i := range spareTokens {
		src.Token(t, fmt.Sprintf("spare%d.covalent.example.net", i))
	}
	src.Stop() // lanyard serve holds the bbolt file: stop it first, as the docs say
	from, to := filepath.Join(dir, "lanyard.db"), pgtest.NewDatabase(t)

	for run := 1; run <= 2; run++ {
		out, stderr, err := runLanyard(t, "store", "copy", "--from", from, "--to", to)
		if err != nil {
			t.Fatalf("store copy run %d: %v\n%s%s", run, err, out, stderr)
		}
		if !strings.Contains(out, "verified: destination holds") {
			t.Fatalf("store copy run %d printed no verification:\n%s", run, out)
		}
		if s, d := exportCounts(t, from), exportCounts(t, to); s != d {
			t.Fatalf("after run %d: source holds %s; destination %s", run, s, d)
		} else if run == 2 {
			t.Logf("store copy, twice: both hold %s", d)
		}
	}

	// Serving from PostgreSQL with the same CA folder.
	dst := testca.Start(t, testca.Options{Dir: dir, Store: to})
	var mu sync.Mutex
	renewed, refused := 0, 0
	if err := parallel(hosts, func(i int) error {
		_, err := renewHost(ctx, t, dst, fleet[i])
		var ce *connect.Error
		switch {
		case fleet[i].revoked && errors.As(err, &ce) && ce.Code() == connect.CodePermissionDenied:
			mu.Lock()
			refused++
			mu.Unlock()
			return nil
		case fleet[i].revoked:
			return fmt.Errorf("revoked host %d: renewal answered %v, want PermissionDenied", i, err)
		case err != nil:
			return fmt.Errorf("host %d does not renew after the copy: %w", i, err)
		}
		mu.Lock()
		renewed++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if renewed != hosts-revoked || refused != revoked {
		t.Fatalf("%d renewed and %d refused, want %d and %d", renewed, refused, hosts-revoked, revoked)
	}
	rl, err := servetest.FetchCRL(dst.Anonymous.HTTP, dst.URL)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range rl.RevokedCertificateEntries {
		listed[string(e.SerialNumber.Bytes())] = true
	}
	for i := hosts - revoked; i < hosts; i++ {
		_, n, err := v1.ParseSerial(fleet[i].serial)
		if err != nil {
			t.Fatal(err)
		}
		if !listed[string(n.Bytes())] {
			t.Fatalf("the CRL served from PostgreSQL does not list revoked host %d (%s)", i, fleet[i].serial)
		}
	}
}
