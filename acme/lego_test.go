package acme_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store"
)

type user struct {
	key crypto.Signer
	reg *legoacme.ExtendedAccount
}

func (u *user) GetEmail() string                           { return "" }
func (u *user) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer               { return u.key }

// newLegoClient is a lego client of profile's ACME directory at c, with
// a new account key (no account registered yet).
func newLegoClient(t *testing.T, c *testca.CA, profile string) (*lego.Client, *user) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u := &user{key: k}
	cfg := lego.NewConfig(u)
	cfg.CADirURL = c.URL + "/acme/" + profile + "/directory"
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Authority.RootsPEM())
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	cl, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, u
}

// registerEAB registers u's account through cl with the EAB key kid.
func registerEAB(cl *lego.Client, u *user, kid, hmacKey string) error {
	reg, err := cl.Registration.RegisterWithExternalAccountBinding(context.Background(), registration.RegisterEABOptions{
		TermsOfServiceAgreed: true, Kid: kid, HmacEncoded: hmacKey})
	u.reg = reg
	return err
}

// legoClient registers an account with EAB at profile's directory; it
// answers http-01 challenges on port.
func legoClient(t *testing.T, c *testca.CA, profile, kid, hmacKey string, port int) *lego.Client {
	t.Helper()
	cl, u := newLegoClient(t, c, profile)
	if err := cl.Challenge.SetHTTP01Provider(http01.NewProviderServer("127.0.0.1", strconv.Itoa(port))); err != nil {
		t.Fatal(err)
	}
	if err := registerEAB(cl, u, kid, hmacKey); err != nil {
		t.Fatalf("register with EAB: %v", err)
	}
	return cl
}

// legoCA starts a CA serving ACME whose http-01 challenges are fetched
// from this host on a free port, makes a single-use EAB key of profile
// covalent (bound to cn, or for any CN when cn is ""), and returns the
// CA, a lego client registered with that key, and the key's id and HMAC.
func legoCA(t *testing.T, cn string) (c *testca.CA, cl *lego.Client, kid, hmacKey string) {
	t.Helper()
	port := servetest.FreePort(t)
	c = testca.Start(t, testca.Options{ACME: config.ACME{HTTP01Port: port, ResolveTo: "127.0.0.1"}})
	kid, hmacKey, err := c.App.ACME.CreateEAB(context.Background(), "covalent", cn, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	return c, legoClient(t, c, "covalent", kid, hmacKey, port), kid, hmacKey
}

func TestLegoIssuesClientAuthCertificate(t *testing.T) {
	c, cl, kid, hk := legoCA(t, "")
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"web1.covalent.example.net"},
		PrivateKey: key, Bundle: true, EnableCommonName: true})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	blk, rest := pem.Decode(res.Certificate)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "web1.covalent.example.net" {
		t.Errorf("CN %q", leaf.Subject.CommonName)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU %v, want clientAuth only", leaf.ExtKeyUsage)
	}
	if !strings.Contains(string(rest), "CERTIFICATE") {
		t.Error("no chain after the leaf")
	}
	if rec, err := c.Store.GetCert(lanyardv1.FormatSerial(leaf.SerialNumber)); err != nil || rec.Profile != "covalent" {
		t.Errorf("certificate not recorded under its profile: %+v, %v", rec, err)
	}
	evs, _, err := c.Store.ListAudit(store.AuditQuery{Action: store.ActionACMEIssue, Subject: lanyardv1.FormatSerial(leaf.SerialNumber)})
	if err != nil || len(evs) != 1 || !strings.HasPrefix(evs[0].Actor, "acme:") {
		t.Errorf("issuance audit %+v (%v), want one naming the ACME account", evs, err)
	}

	// An order outside the profile is refused with rejectedIdentifier.
	_, err = cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"web1.other.example.org"}, PrivateKey: key})
	if err == nil || !strings.Contains(err.Error(), "rejectedIdentifier") {
		t.Errorf("order outside the profile: %v, want rejectedIdentifier", err)
	}

	// The single-use EAB key cannot open a second account.
	if cl2, u2 := newLegoClient(t, c, "covalent"); registerEAB(cl2, u2, kid, hk) == nil {
		t.Error("a used single-use EAB key opened a second account")
	}

	// Revocation through ACME, then ARI says renew now.
	if err := cl.Certificate.RevokeWithReason(ctx, res.Certificate, nil); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	serials, _ := c.Store.SerialsByCN(leaf.Subject.CommonName)
	rec, err := c.Store.GetCert(serials[0])
	if err != nil || rec.Revocation == nil {
		t.Fatalf("not revoked in the store: %v", err)
	}
}

// TestKeyChange: lego rolls the account key over (RFC 8555 section
// 7.3.5); the account orders with the new key, the change is audited,
// and rolling over to the key already current is refused.
func TestKeyChange(t *testing.T) {
	c, cl, _, _ := legoCA(t, "")
	ctx := context.Background()
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := cl.Registration.KeyRollover(ctx, newKey); err != nil {
		t.Fatalf("key rollover: %v", err)
	}
	if _, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"kc.covalent.example.net"},
		KeyType: "EC256", EnableCommonName: true}); err != nil {
		t.Fatalf("order with the new key: %v", err)
	}
	evs, _, err := c.Store.ListAudit(store.AuditQuery{Action: store.ActionACMEKeyChange})
	if err != nil || len(evs) != 1 {
		t.Fatalf("key change audit: %v (%v)", evs, err)
	}
	// A second rollover to the same (now current) key is refused.
	if err := cl.Registration.KeyRollover(ctx, newKey); err == nil {
		t.Fatal("rolling over to the current key succeeded")
	}
}

// TestLegoTLSALPN01: lego proves its identifier with tls-alpn-01 alone
// (RFC 8737; no http-01 listener), and the authorization records it.
func TestLegoTLSALPN01(t *testing.T) {
	port := servetest.FreePort(t)
	c := testca.Start(t, testca.Options{ACME: config.ACME{TLSALPN01Port: port, ResolveTo: "127.0.0.1"}})
	ctx := context.Background()
	kid, hk, err := c.App.ACME.CreateEAB(ctx, "covalent", "", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	cl, u := newLegoClient(t, c, "covalent")
	if err := cl.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", strconv.Itoa(port))); err != nil {
		t.Fatal(err)
	}
	if err := registerEAB(cl, u, kid, hk); err != nil {
		t.Fatalf("register with EAB: %v", err)
	}
	res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"alpn.covalent.example.net"},
		KeyType: certcrypto.EC256, Bundle: true, EnableCommonName: true})
	if err != nil {
		t.Fatalf("obtain with tls-alpn-01: %v", err)
	}
	if leaf, _ := parseLeaf(t, res.Certificate); leaf.Subject.CommonName != "alpn.covalent.example.net" {
		t.Fatalf("CN %q", leaf.Subject.CommonName)
	}
	authzs, err := c.Store.ListMeta("acme/authz/")
	if err != nil || len(authzs) != 1 {
		t.Fatalf("authorizations %v (%v), want one", authzs, err)
	}
	for _, raw := range authzs {
		var a struct{ Status, Via string }
		if err := json.Unmarshal(raw, &a); err != nil || a.Status != "valid" || a.Via != "tls-alpn-01" {
			t.Fatalf("authorization %s (%v), want valid via tls-alpn-01", raw, err)
		}
	}
}
