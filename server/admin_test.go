package server_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/web"
)

// adminEntryPoints calls every admin entry point of the server with cert
// and returns, per entry point, whether it was let in.
func adminEntryPoints(t *testing.T, c *testca.CA, cert *tls.Certificate) map[string]bool {
	t.Helper()
	cl := c.Client(t, cert)
	// A fresh connection per call: no TLS session or keep-alive state
	// carries a verdict from one call to the next.
	cl.HTTP.Transport.(*http.Transport).DisableKeepAlives = true
	ctx := context.Background()
	got := map[string]bool{}
	_, err := cl.Admin.ListCertificates(ctx, connect.NewRequest(&v1.ListCertificatesRequest{}))
	got["connect admin call"] = err == nil
	if err != nil && connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("connect admin call refused with %v, want PermissionDenied", err)
	}
	resp, err := cl.HTTP.Get(c.URL + server.BackupPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got["online backup"] = resp.StatusCode == http.StatusOK
	resp, err = cl.HTTP.Post(c.URL+app.TidyPath+"?dry_run=1", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got["tidy"] = resp.StatusCode == http.StatusOK
	// The web page's certificate login: a GET without a cookie either
	// logs in (200, a page) or is sent to the password login.
	noRedirect := *cl.HTTP
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = noRedirect.Get(c.URL + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got["web certificate login"] = resp.StatusCode == http.StatusOK
	if resp.StatusCode != http.StatusOK && !strings.HasPrefix(resp.Header.Get("Location"), "/admin/login") {
		t.Errorf("web page: %s (Location %q), want 200 or a redirect to the login", resp.Status, resp.Header.Get("Location"))
	}
	return got
}

func startWithWeb(t *testing.T, o testca.Options) *testca.CA {
	t.Helper()
	o.Web = func(c *testca.CA) http.Handler {
		h, err := web.New(web.Config{Store: c.Store, Issuance: c.Issuance, Revocation: c.Revocation, Now: c.Now,
			ClientCert: func(r *http.Request) *x509.Certificate { return server.ClientCert(r.Context()) }})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	return testca.Start(t, o)
}

// TestRevokedAdminCertificateRefusedEverywhere is the regression test of
// issue 9 item 2: once the admin certificate is revoked, every admin entry
// point refuses it on the very next request (no cache outlives it).
func TestRevokedAdminCertificateRefusedEverywhere(t *testing.T) {
	c := startWithWeb(t, testca.Options{})
	before := adminEntryPoints(t, c, &c.AdminCert)
	for ep, ok := range before {
		if !ok {
			t.Fatalf("%s refuses the live admin certificate", ep)
		}
	}
	serial := v1.FormatSerial(c.AdminCert.Leaf.SerialNumber)
	if _, err := c.Revocation.Revoke(context.Background(), revocation.Request{Serial: serial, Reason: revocation.ReasonKeyCompromise, By: "test"}); err != nil {
		t.Fatalf("revoke the admin certificate: %v", err)
	}
	for ep, ok := range adminEntryPoints(t, c, &c.AdminCert) {
		if ok {
			t.Errorf("%s still accepts the revoked admin certificate", ep)
		}
	}
	// Renewing the revoked admin certificate is refused too.
	_, err := c.Client(t, &c.AdminCert).Certificates.Renew(context.Background(), connect.NewRequest(&v1.RenewRequest{Csr: csr(t, newKey(t), nil)}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("renewing the revoked admin certificate: %v, want PermissionDenied", err)
	}
}

// TestUnrecordedAdminCertificateRefused: a certificate with the admin
// marker that the store does not know (signed by the CA key, as the old
// admin.crt of another install or a forged request would be) is no admin.
func TestUnrecordedAdminCertificateRefused(t *testing.T) {
	c := startWithWeb(t, testca.Options{})
	stray, err := c.Authority.ClientTLSCertificate("lanyard-admin", time.Hour, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	for ep, ok := range adminEntryPoints(t, c, stray) {
		if ok {
			t.Errorf("%s accepts an admin certificate the store has no record of", ep)
		}
	}
}

// adminTLS turns a rotation or renewal answer and its key into a client
// certificate.
func adminTLS(t *testing.T, b *v1.Bundle, key any) *tls.Certificate {
	t.Helper()
	cert := tlsCert(t, b, key)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	cert.Leaf = leaf
	return cert
}

// TestRotateAdminCertificate: rotation issues a new admin credential for
// the caller's new key, revokes every other admin certificate (the old one
// and one a thief might have rotated to), and each change is audited.
func TestRotateAdminCertificate(t *testing.T) {
	c := startWithWeb(t, testca.Options{})
	ctx := context.Background()
	rotate := func(cert *tls.Certificate, reason int32) (*tls.Certificate, *v1.RotateAdminCertificateResponse, error) {
		key := newKey(t)
		resp, err := c.Client(t, cert).Admin.RotateAdminCertificate(ctx, connect.NewRequest(&v1.RotateAdminCertificateRequest{Csr: csr(t, key, nil), Reason: reason}))
		if err != nil {
			return nil, nil, err
		}
		return adminTLS(t, resp.Msg.GetBundle(), key), resp.Msg, nil
	}
	// A renewal of the first credential stands for a second live admin
	// certificate (a thief's).
	thiefKey := newKey(t)
	rr, err := c.Client(t, &c.AdminCert).Certificates.Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: csr(t, thiefKey, nil)}))
	if err != nil {
		t.Fatalf("admin renewal: %v", err)
	}
	thief := adminTLS(t, rr.Msg.GetBundle(), thiefKey)
	if got := rr.Msg.GetPreviousSerial(); got != v1.FormatSerial(c.AdminCert.Leaf.SerialNumber) {
		t.Fatalf("renewal's previous serial %s", got)
	}
	if left := thief.Leaf.NotAfter.Sub(thief.Leaf.NotBefore); left < 89*24*time.Hour || left > 91*24*time.Hour {
		t.Fatalf("renewed admin certificate valid %v, want 90 days", left)
	}

	fresh, msg, err := rotate(&c.AdminCert, int32(revocation.ReasonKeyCompromise))
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if len(msg.GetRevokedSerials()) != 2 || msg.GetCrlNumber() == 0 {
		t.Fatalf("rotation revoked %v (CRL %d), want the old credential and its renewal", msg.GetRevokedSerials(), msg.GetCrlNumber())
	}
	for name, cert := range map[string]*tls.Certificate{"old": &c.AdminCert, "thief's": thief} {
		for ep, ok := range adminEntryPoints(t, c, cert) {
			if ok {
				t.Errorf("%s: %s admin certificate still accepted after the rotation", ep, name)
			}
		}
	}
	for ep, ok := range adminEntryPoints(t, c, fresh) {
		if !ok {
			t.Errorf("%s refuses the rotated admin certificate", ep)
		}
	}
	// The CRL lists the old one; the audit log has the rotation and the revocations.
	crl, err := x509.ParseRevocationList(c.Revocation.Current().DER)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, e := range crl.RevokedCertificateEntries {
		listed = listed || e.SerialNumber.Cmp(c.AdminCert.Leaf.SerialNumber) == 0
	}
	if !listed {
		t.Error("the old admin certificate is not on the CRL")
	}
	aud, err := c.Client(t, fresh).Admin.ListCertificates(ctx, connect.NewRequest(&v1.ListCertificatesRequest{CnPrefix: "lanyard-admin"}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(aud.Msg.GetCertificates()); n != 3 {
		t.Errorf("%d admin certificate records, want 3", n)
	}
	events, _, err := c.Store.ListAudit(store.AuditQuery{Action: "admin.rotate"})
	if err != nil || len(events) != 1 || events[0].Subject != v1.FormatSerial(fresh.Leaf.SerialNumber) {
		t.Errorf("admin.rotate audit events %v (%v)", events, err)
	}
	// A revoked credential cannot rotate; reusing the key is refused.
	if _, _, err := rotate(&c.AdminCert, 0); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("rotation with the revoked credential: %v, want PermissionDenied", err)
	}
	_, err = c.Client(t, fresh).Admin.RotateAdminCertificate(ctx, connect.NewRequest(&v1.RotateAdminCertificateRequest{Csr: csr(t, fresh.PrivateKey.(crypto.Signer), nil)}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("rotation reusing the key: %v, want InvalidArgument", err)
	}
}

// TestAdminRenewal: the admin credential renews over mTLS like a host's
// certificate; the renewed one keeps working for the crash-retry grace,
// then only the newest acts; revoking the old one revokes the lineage.
func TestAdminRenewal(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := startWithWeb(t, testca.Options{Clock: clk})
	ctx := context.Background()
	renew := func(cert *tls.Certificate) (*tls.Certificate, error) {
		key := newKey(t)
		resp, err := c.Client(t, cert).Certificates.Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: csr(t, key, nil)}))
		if err != nil {
			return nil, err
		}
		return adminTLS(t, resp.Msg.GetBundle(), key), nil
	}
	next, err := renew(&c.AdminCert)
	if err != nil {
		t.Fatalf("renew the admin credential: %v", err)
	}
	for name, cert := range map[string]*tls.Certificate{"renewed (within the grace)": &c.AdminCert, "new": next} {
		for ep, ok := range adminEntryPoints(t, c, cert) {
			if !ok {
				t.Errorf("%s refuses the %s admin certificate", ep, name)
			}
		}
	}
	clk.Advance(issuance.RenewalRetryGrace + time.Minute)
	for ep, ok := range adminEntryPoints(t, c, &c.AdminCert) {
		if ok {
			t.Errorf("%s accepts a superseded admin certificate after the grace", ep)
		}
	}
	if _, err := renew(&c.AdminCert); err == nil {
		t.Error("a superseded admin certificate renewed again after the grace")
	}
	// Revoking the first certificate of the lineage revokes its renewal.
	if _, err := c.Revocation.Revoke(ctx, revocation.Request{Serial: v1.FormatSerial(c.AdminCert.Leaf.SerialNumber), Reason: revocation.ReasonKeyCompromise, By: "test"}); err != nil {
		t.Fatal(err)
	}
	for ep, ok := range adminEntryPoints(t, c, next) {
		if ok {
			t.Errorf("%s accepts the renewal of a revoked admin certificate", ep)
		}
	}
	if _, err := renew(next); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("renewing a revoked admin lineage: %v, want PermissionDenied", err)
	}
}

// TestServerNamesOutsideProfiles (issue 9 item 12): the server refuses a
// server name that a profile's CN rules allow, naming the profile.
func TestServerNamesOutsideProfiles(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	tests := []struct {
		names   []string
		wantErr bool
	}{
		{[]string{"ca.example.org", "127.0.0.1"}, false},
		{[]string{"ca.example.org", "ca.covalent.example.net"}, true},
	}
	for _, tt := range tests {
		_, err := server.New(server.Options{CA: c.Authority, Store: c.Store, Issuance: c.Issuance, Revocation: c.Revocation, ServerNames: tt.names})
		if got := errors.Is(err, server.ErrServerNameInProfile); got != tt.wantErr {
			t.Errorf("server names %v: %v, want refused %v", tt.names, err, tt.wantErr)
		}
		if tt.wantErr && (err == nil || !strings.Contains(err.Error(), `profile "covalent"`)) {
			t.Errorf("the error does not name the profile: %v", err)
		}
	}
}
