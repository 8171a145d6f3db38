package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/certlint"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/internal/testpki"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/store"
)

// newKey and csr are the server tests' short names for testpki.Key (a
// P-256 key) and testpki.CSR.
func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	return testpki.Key(t, "ec")
}

func csr(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	return testpki.CSR(t, key, tmpl)
}

// enroll redeems a fresh token for cn and returns the bundle and key.
func enroll(t testing.TB, c *testca.CA, cn string) (*v1.Bundle, crypto.Signer) {
	t.Helper()
	key := newKey(t)
	resp, err := c.Anonymous.Certificates.Enroll(context.Background(), connect.NewRequest(&v1.EnrollRequest{Token: c.Token(t, cn), Csr: csr(t, key, nil)}))
	if err != nil {
		t.Fatalf("enroll %s: %v", cn, err)
	}
	return resp.Msg.GetBundle(), key
}

func TestEnrollEndToEndVerifiesWithOpenSSL(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	b, _ := enroll(t, c, "host1.covalent.example.net")
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("root.pem", string(c.Authority.RootsPEM()))
	chain := write("chain.pem", b.GetChainPem())
	cert := write("cert.pem", b.GetCertificatePem())
	out, err := exec.Command(realtools.OpenSSL(t), "verify", "-CAfile", root, "-untrusted", chain, "-purpose", "sslclient", cert).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	blk, _ := pem.Decode([]byte(b.GetCertificatePem()))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "host1.covalent.example.net" || leaf.IsCA || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("leaf CN=%q CA=%v EKU=%v", leaf.Subject.CommonName, leaf.IsCA, leaf.ExtKeyUsage)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != 24*time.Hour+issuance.Backdate {
		t.Fatalf("lifetime %s", life)
	}
	if err := certlint.Certificate(leaf.Raw); err != nil {
		t.Fatalf("zlint: %v", err)
	}
}

// TestConcurrentRedemptionsYieldOneCertificate: however many clients
// redeem one token at once, exactly one certificate is issued and stored.
func TestConcurrentRedemptionsYieldOneCertificate(t *testing.T) {
	for _, n := range []int{100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := testca.Start(t, testca.Options{})
			tok := c.Token(t, "race.covalent.example.net")
			der := csr(t, newKey(t), nil)
			testca.RedeemConcurrently(t, []*testca.CA{c}, tok, der, n).CheckOneWinner(t, n)
			certs, _, err := c.Store.ListCerts(store.CertQuery{CNPrefix: "race.", Now: time.Now(), Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 1 {
				t.Fatalf("the store holds %d certificates for the token, want 1", len(certs))
			}
		})
	}
}

func TestRestartKeepsEveryRecord(t *testing.T) {
	dir := t.TempDir()
	c := testca.Start(t, testca.Options{Dir: dir})
	var serials []string
	for i := 0; i < 5; i++ {
		b, _ := enroll(t, c, fmt.Sprintf("h%d.covalent.example.net", i))
		serials = append(serials, b.GetSerial())
	}
	c.Stop()
	c2 := testca.Start(t, testca.Options{Dir: dir})
	for _, s := range serials {
		resp, err := c2.Admin.Admin.GetCertificate(context.Background(), connect.NewRequest(&v1.GetCertificateRequest{Serial: s}))
		if err != nil || resp.Msg.GetCertificate().GetTokenId() == "" {
			t.Fatalf("after restart %s: %v", s, err)
		}
	}
}

func TestAdminCallsNeedTheAdminCertificate(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	_, hostKey := enroll(t, c, "h.covalent.example.net")
	_ = hostKey
	ctx := context.Background()
	req := connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: "x.covalent.example.net"})
	if _, err := c.Anonymous.Admin.CreateEnrollmentToken(ctx, req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous admin call: %v, want Unauthenticated", err)
	}
	// A host certificate from this CA is not the admin certificate.
	hostCert, err := c.Authority.ClientTLSCertificate("h2.covalent.example.net", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client(t, hostCert).Admin.CreateEnrollmentToken(ctx, req); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("host-cert admin call: %v, want PermissionDenied", err)
	}
}

func TestEnrollBadInputOverTheWire(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	ctx := context.Background()
	tests := []struct {
		name string
		req  func() *v1.EnrollRequest
		want connect.Code
	}{
		{"malformed token", func() *v1.EnrollRequest { return &v1.EnrollRequest{Token: "x", Csr: csr(t, newKey(t), nil)} }, connect.CodeUnauthenticated},
		{"garbage CSR", func() *v1.EnrollRequest {
			return &v1.EnrollRequest{Token: c.Token(t, "a.covalent.example.net"), Csr: []byte("garbage")}
		}, connect.CodeInvalidArgument},
		{"CSR widens CN", func() *v1.EnrollRequest {
			return &v1.EnrollRequest{Token: c.Token(t, "a.covalent.example.net"),
				Csr: csr(t, newKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "root.covalent.example.net"}})}
		}, connect.CodePermissionDenied},
		{"CSR asks for more SANs", func() *v1.EnrollRequest {
			return &v1.EnrollRequest{Token: c.Token(t, "a.covalent.example.net"),
				Csr: csr(t, newKey(t), &x509.CertificateRequest{DNSNames: []string{"a.covalent.example.net", "b.covalent.example.net"}})}
		}, connect.CodePermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Anonymous.Certificates.Enroll(ctx, connect.NewRequest(tc.req()))
			if connect.CodeOf(err) != tc.want {
				t.Fatalf("code %v (%v), want %v", connect.CodeOf(err), err, tc.want)
			}
		})
	}
	// A body over 64 KiB is refused before it is read.
	body := bytes.Repeat([]byte("a"), 70<<10)
	resp, err := c.Anonymous.HTTP.Post(c.URL+"/lanyard.v1.CertificateService/Enroll", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize body: %d, want 413", resp.StatusCode)
	}
	certs, _, _ := c.Store.ListCerts(store.CertQuery{Profile: "covalent", Now: time.Now()})
	if len(certs) != 0 {
		t.Fatalf("bad input left %d certificates", len(certs))
	}
}

func TestPlainEndpoints(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	for _, tc := range []struct {
		path, contentType string
		check             func([]byte) error
	}{
		{"/roots.pem", "application/x-pem-file", func(b []byte) error {
			if !bytes.Equal(b, c.Authority.RootsPEM()) {
				return errors.New("roots differ")
			}
			return nil
		}},
		{"/crl", "application/pkix-crl", func(b []byte) error { _, err := x509.ParseRevocationList(b); return err }},
		{"/crl.pem", "application/x-pem-file", func(b []byte) error {
			blk, _ := pem.Decode(b)
			if blk == nil || blk.Type != "X509 CRL" {
				return errors.New("not a PEM CRL")
			}
			return nil
		}},
		{"/healthz", "text/plain", func(b []byte) error { return nil }},
		{"/metrics", "", func(b []byte) error {
			if !bytes.Contains(b, []byte("lanyard_store_size_bytes")) {
				return errors.New("no lanyard metrics")
			}
			return nil
		}},
	} {
		resp, err := c.Anonymous.HTTP.Get(c.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (tc.contentType != "" && resp.Header.Get("Content-Type") != tc.contentType) {
			t.Errorf("%s: %d %s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if err := tc.check(b); err != nil {
			t.Errorf("%s: %v", tc.path, err)
		}
	}
}

func TestTLSBelow12Refused(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	conn, err := tls.Dial("tcp", strings.TrimPrefix(c.URL, "https://"), &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}) //nolint:gosec // testing the server refuses old TLS
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}
