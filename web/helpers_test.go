package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// testPassword is the admin password the tests set.
const testPassword = "correct horse battery staple"

// env is a real CA (store, issuance, revocation) with the web handler
// called directly through httptest.
type env struct {
	ca    *testca.CA
	clock *clock.Fake
	h     http.Handler
}

func newEnv(t *testing.T) *env { t.Helper(); return newEnvWith(t, testca.Options{}) }

// newEnvWith is newEnv on a CA started with opts (its Clock is the env's).
func newEnvWith(t *testing.T, opts testca.Options) *env {
	t.Helper()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	opts.Clock = clk
	c := testca.Start(t, opts)
	h, err := New(Config{Store: c.Store, Issuance: c.Issuance, Revocation: c.Revocation, Admin: c.App.AdminAPI, CAURL: c.URL,
		Fingerprint: c.Authority.Fingerprint(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(context.Background(), c.Store, testPassword); err != nil {
		t.Fatal(err)
	}
	return &env{ca: c, clock: clk, h: h}
}

// withAnchors is c's admin service with the default trust-anchor target
// configured: the CA runs no sync, the tests record its status in the
// store (anchors.StatusKey) themselves, as the sync does.
func withAnchors(c *testca.CA) *admin.Service {
	return admin.New(admin.Config{Store: c.Store, Issuance: c.Issuance, Revocation: c.Revocation, ACME: c.App.ACME,
		AnchorTargets: []string{""}, Now: c.Now})
}

// do sends one request; cookie may be "" and form nil.
func (e *env) do(t testing.TB, method, target, cookie string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://lanyard.test"+target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs in with the password and returns the session cookie and the
// session's CSRF token.
func (e *env) login(t testing.TB) (cookie, csrf string) {
	t.Helper()
	w := e.do(t, http.MethodPost, "/admin/login", "", url.Values{"password": {testPassword}, "next": {"/admin/"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookie {
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				t.Fatalf("session cookie attributes: %+v", c)
			}
			cookie = c.Value
		}
	}
	if cookie == "" {
		t.Fatal("login set no session cookie")
	}
	page := e.do(t, http.MethodGet, "/admin/tokens", cookie, nil)
	m := csrfRE.FindStringSubmatch(page.Body.String())
	if m == nil {
		t.Fatalf("no CSRF token on the tokens page: %s", page.Body)
	}
	return cookie, m[1]
}

// enroll issues a real certificate for cn through the issuance service.
func (e *env) enroll(t testing.TB, cn string) *store.Cert {
	t.Helper()
	return enrollCert(t, e.ca, cn)
}

func enrollCert(t testing.TB, c *testca.CA, cn string) *store.Cert {
	t.Helper()
	ctx := context.Background()
	secret, _, err := c.Issuance.CreateToken(ctx, issuance.TokenRequest{CN: cn, Profile: "covalent", By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.Issuance.Enroll(ctx, secret, csr)
	if err != nil {
		t.Fatal(err)
	}
	return iss.Record
}

// insertRecord puts a certificate record straight into the store (no DER),
// as an import would.
func insertRecord(t testing.TB, db store.Store, cn string, now time.Time) *store.Cert {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	c := &store.Cert{Serial: hex.EncodeToString(b), CN: cn, Profile: "covalent", KeyType: "P-256",
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(12 * time.Hour), IssuedAt: now}
	if err := db.InsertCert(context.Background(), c, &store.AuditEvent{At: now, Actor: "test", Action: "import", Subject: c.Serial}); err != nil {
		t.Fatal(err)
	}
	return c
}

// adminTLS is a connection state carrying the verified admin certificate.
func adminTLS(t testing.TB, c *testca.CA) *tls.ConnectionState {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.AdminCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
}

var nextRE = regexp.MustCompile(`rel="next" href="([^"]+)"`)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// serverClientCert is Config.ClientCert for a handler behind package
// server, which verifies client certificates per request.
func serverClientCert(r *http.Request) *x509.Certificate { return server.ClientCert(r.Context()) }
