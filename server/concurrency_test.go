package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
)

// tlsCert turns an issued bundle and its key into a client certificate.
func tlsCert(t testing.TB, b *v1.Bundle, key any) *tls.Certificate {
	t.Helper()
	leaf, _ := pem.Decode([]byte(b.GetCertificatePem()))
	chain, _ := pem.Decode([]byte(b.GetChainPem()))
	if leaf == nil || chain == nil {
		t.Fatal("bundle without PEM")
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Bytes, chain.Bytes}, PrivateKey: key}
}

// TestConcurrentRenewalsOfOneCertificate documents the chosen outcome:
// every renewal succeeds with a distinct serial, each recorded and linked
// to the same predecessor (an agent that crashed after the CA answered
// must be able to renew again). The per-client rate limit is what bounds
// how many a host can get; here it is off.
func TestConcurrentRenewalsOfOneCertificate(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	b, key := enroll(t, c, "renewed.covalent.example.net")
	cl := c.Client(t, tlsCert(t, b, key))
	// One request first, so the 100 share one HTTP/2 connection (as in
	// testca.RedeemConcurrently); a retryable answer from a loaded
	// machine is retried, as the agent does.
	if _, err := cl.Roots(context.Background()); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	var wg sync.WaitGroup
	serials := make(chan string, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &v1.RenewRequest{Csr: csr(t, newKey(t), nil)}
			resp, err := cl.Certificates.Renew(context.Background(), connect.NewRequest(req))
			for try := 1; try < 5 && connect.CodeOf(err) == connect.CodeUnavailable; try++ {
				resp, err = cl.Certificates.Renew(context.Background(), connect.NewRequest(req))
			}
			if err != nil {
				t.Errorf("renew: %v", err)
				return
			}
			serials <- resp.Msg.GetBundle().GetSerial()
		}()
	}
	wg.Wait()
	close(serials)
	seen := map[string]bool{}
	for s := range serials {
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
		rec, err := c.Store.GetCert(s)
		if err != nil || rec.PreviousSerial != b.GetSerial() {
			t.Fatalf("renewal %s: previous %q (%v), want %s", s, rec.PreviousSerial, err, b.GetSerial())
		}
	}
	if len(seen) != 100 {
		t.Fatalf("%d renewals recorded, want 100", len(seen))
	}
}

// TestRevokeRacingRenew: whichever commits first, the successor is never
// left valid: either the renewal is refused or the revocation cascades to it.
func TestRevokeRacingRenew(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	for round := 0; round < 20; round++ {
		b, key := enroll(t, c, "race.covalent.example.net")
		cl := c.Client(t, tlsCert(t, b, key))
		var wg sync.WaitGroup
		var renewed string
		wg.Add(2)
		go func() {
			defer wg.Done()
			resp, err := cl.Certificates.Renew(context.Background(), connect.NewRequest(&v1.RenewRequest{Csr: csr(t, newKey(t), nil)}))
			if err == nil {
				renewed = resp.Msg.GetBundle().GetSerial()
			} else if code := connect.CodeOf(err); code != connect.CodePermissionDenied {
				t.Errorf("renew refused with %v, want PermissionDenied", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := c.Revocation.Revoke(context.Background(), revocation.Request{Serial: b.GetSerial(), Reason: 1, By: "test"}); err != nil {
				t.Errorf("revoke: %v", err)
			}
		}()
		wg.Wait()
		if renewed != "" {
			rec, err := c.Store.GetCert(renewed)
			if err != nil || rec.Revocation == nil {
				t.Fatalf("round %d: renewal %s raced a revocation and is still valid", round, renewed)
			}
			crl, err := x509.ParseRevocationList(c.Revocation.Current().DER)
			if err != nil {
				t.Fatal(err)
			}
			listed := false
			for _, e := range crl.RevokedCertificateEntries {
				listed = listed || v1.FormatSerial(e.SerialNumber) == renewed
			}
			if !listed {
				t.Fatalf("round %d: cascaded revocation of %s is not on the current CRL", round, renewed)
			}
		}
	}
}

func TestRenewRefusesKeyReuseUnlessProfileAllows(t *testing.T) {
	for _, allow := range []bool{false, true} {
		profiles := testca.DefaultProfiles()
		p := profiles["covalent"]
		p.AllowKeyReuse = allow
		profiles["covalent"] = p
		c := testca.Start(t, testca.Options{Profiles: profiles})
		b, key := enroll(t, c, "reuse.covalent.example.net")
		cl := c.Client(t, tlsCert(t, b, key))
		_, err := cl.Certificates.Renew(context.Background(), connect.NewRequest(&v1.RenewRequest{Csr: csr(t, key, nil)}))
		if allow && err != nil {
			t.Fatalf("allow_key_reuse: renewal with the same key refused: %v", err)
		}
		if !allow && connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("renewal with the same key: %v, want InvalidArgument", err)
		}
	}
}
