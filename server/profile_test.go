package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/store"
)

// A SAN deny rule added to a profile stops a renewal from re-issuing that
// SAN and an older token from being redeemed with it, and renewal-info
// tells the host holding it to renew now (issue 9, item 7).
func TestTightenedProfileIsEnforcedAtRenewalAndRedemption(t *testing.T) {
	const cn = "web.covalent.example.net"
	c := testca.Start(t, testca.Options{})
	ctx := context.Background()
	key := newKey(t)
	resp, err := c.Anonymous.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: c.Token(t, cn, cn), Csr: csr(t, key, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	b := resp.Msg.GetBundle()
	oldToken := c.Token(t, cn, cn)

	cfg := testca.DefaultProfiles()
	p := cfg["covalent"]
	p.DenyDNS = []string{cn}
	cfg["covalent"] = p
	ps, err := issuance.CompileProfiles(cfg, "covalent")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Issuance.SetProfiles(ps); err != nil {
		t.Fatal(err)
	}
	certs := func() int {
		t.Helper()
		all, _, err := c.Store.ListCerts(store.CertQuery{Now: c.Now(), Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(all)
	}
	before := certs()

	refused := func(what string, err error) {
		t.Helper()
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodePermissionDenied || !strings.Contains(ce.Message(), cn) {
			t.Fatalf("%s: err = %v, want PermissionDenied naming %q", what, err, cn)
		}
	}
	_, err = c.Client(t, tlsCert(t, b, key)).Certificates.Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: csr(t, newKey(t), nil)}))
	refused("renew", err)
	_, err = c.Anonymous.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: oldToken, Csr: csr(t, newKey(t), nil)}))
	refused("redeem an older token", err)
	if n := certs(); n != before {
		t.Fatalf("%d certificates recorded after the refusals, want %d", n, before)
	}

	info, err := c.Anonymous.Certificates.GetRenewalInfo(ctx, connect.NewRequest(&v1.GetRenewalInfoRequest{Serial: b.GetSerial()}))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Msg.GetRenewalInfo().GetReason(); got != "profile-changed" {
		t.Fatalf("renewal-info reason %q, want profile-changed", got)
	}
}
