package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store"
)

func TestSecurityHeadersAndNoScript(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	c := e.enroll(t, "hdr.covalent.example.net")
	for _, path := range []string{"/admin/login", "/admin/", "/admin/certs", "/admin/certs/" + c.Serial, "/admin/tokens", "/admin/audit", "/admin/static/style.css", "/admin/nope"} {
		t.Run(path, func(t *testing.T) {
			w := e.do(t, "GET", path, cookie, nil)
			h := w.Header()
			for k, v := range map[string]string{
				"Content-Security-Policy": ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
			} {
				if h.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, h.Get(k), v)
				}
			}
			body := w.Body.String()
			if strings.Contains(body, "<script") || strings.Contains(body, " style=") || strings.Contains(body, " onclick") {
				t.Errorf("page has inline script or style")
			}
		})
	}
}

func TestXSSEscaped(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	const evil = `<script>alert(1)</script>`
	c := insertRecord(t, e.ca.Store, evil, e.clock.Now())
	for _, path := range []string{"/admin/certs/" + c.Serial, "/admin/certs?cn=" + url.QueryEscape("<script>"), "/admin/certs", "/admin/audit?actor=" + url.QueryEscape(`"><script>alert(2)</script>`)} {
		t.Run(path, func(t *testing.T) {
			w := e.do(t, "GET", path, cookie, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			body := w.Body.String()
			if strings.Contains(body, "<script") {
				t.Fatalf("unescaped script tag in %s", body)
			}
			if !strings.Contains(body, "&lt;script&gt;") {
				t.Fatalf("escaped text missing")
			}
		})
	}
}

func TestOversizeBody(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	big := strings.Repeat("a", MaxFormBytes+1)
	tests := []struct {
		name    string
		path    string
		cookie  string
		chunked bool
	}{
		{"token form", "/admin/tokens", cookie, false},
		{"token form, chunked", "/admin/tokens", cookie, true},
		{"login form", "/admin/login", "", false},
		{"login form, chunked", "/admin/login", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := url.Values{"csrf": {csrf}, "cn": {"big.covalent.example.net"}, "dns": {big}, "password": {big}}.Encode()
			r := httptest.NewRequest("POST", "https://lanyard.test"+tt.path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.chunked {
				r.ContentLength = -1
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: SessionCookie, Value: tt.cookie})
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "KiB") {
				t.Fatalf("status %d, want 413 with a message: %s", w.Code, w.Body)
			}
		})
	}
	if toks, _ := e.ca.Store.ListUnusedTokens(e.clock.Now()); len(toks) != 0 {
		t.Fatal("an oversize form created a token")
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/admin/", true},
		{"/admin/certs/00ff", true},
		{"/admin/certs/../x", false},
		{"/admin/./certs", false},
		{"/admin//certs", false},
		{"/admin/certs\\..\\x", false},
		{"/admin/a\x00b", false},
		{"/other", false},
	}
	for _, tt := range tests {
		if got := cleanPath(tt.path); got != tt.want {
			t.Errorf("cleanPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without services succeeded")
	}
}

func TestAnonymousRefused(t *testing.T) {
	e := newEnv(t)
	c := e.enroll(t, "anon.covalent.example.net")
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/admin/", http.StatusSeeOther},
		{"GET", "/admin/certs", http.StatusSeeOther},
		{"GET", "/admin/certs?cn=anon", http.StatusSeeOther},
		{"GET", "/admin/certs/" + c.Serial, http.StatusSeeOther},
		{"GET", "/admin/certs/" + c.Serial + ".pem", http.StatusSeeOther},
		{"GET", "/admin/tokens", http.StatusSeeOther},
		{"GET", "/admin/audit", http.StatusSeeOther},
		{"GET", "/admin/no-such-page", http.StatusSeeOther},
		{"HEAD", "/admin/", http.StatusSeeOther},
		{"POST", "/admin/logout", http.StatusForbidden},
		{"POST", "/admin/certs/" + c.Serial + "/revoke", http.StatusForbidden},
		{"POST", "/admin/tokens", http.StatusForbidden},
		{"POST", "/admin/tokens/0123456789abcdef/revoke", http.StatusForbidden},
		{"GET", "/admin/acme", http.StatusSeeOther},
		{"POST", "/admin/acme", http.StatusForbidden},
		{"POST", "/admin/acme/abc/revoke", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			form := url.Values{"reason": {"1"}, "confirm": {"yes"}, "cn": {"x.covalent.example.net"}}
			if tt.method != "POST" {
				form = nil
			}
			w := e.do(t, tt.method, tt.path, "", form)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if tt.want == http.StatusSeeOther && !strings.HasPrefix(w.Header().Get("Location"), "/admin/login?") {
				t.Fatalf("redirected to %q, want the login page", w.Header().Get("Location"))
			}
			if tt.want == http.StatusForbidden && !strings.Contains(w.Body.String(), "not logged in") {
				t.Fatalf("no clear message: %s", w.Body)
			}
		})
	}
	// A forged session cookie is no session either.
	if w := e.do(t, "GET", "/admin/", "forged-cookie-value", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d", w.Code)
	}
	if got, _ := e.ca.Store.GetCert(c.Serial); got.Revocation != nil {
		t.Fatal("an anonymous POST revoked the certificate")
	}
	if toks, _ := e.ca.Store.ListUnusedTokens(e.clock.Now()); len(toks) != 0 {
		t.Fatalf("an anonymous POST created %d tokens", len(toks))
	}
}

func TestLoginAndLogout(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		password string
		want     int
		msg      string
	}{
		{"wrong", "not the password at all", http.StatusUnauthorized, "Wrong password."},
		{"empty", "", http.StatusUnauthorized, "Wrong password."},
		{"right", testPassword, http.StatusSeeOther, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(t, "POST", "/admin/login", "", url.Values{"password": {tt.password}, "next": {"//evil.example/"}})
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.msg) {
				t.Fatalf("status %d, want %d with %q: %s", w.Code, tt.want, tt.msg, w.Body)
			}
			if tt.want == http.StatusSeeOther && w.Header().Get("Location") != "/admin/" {
				t.Fatalf("open redirect: %q", w.Header().Get("Location"))
			}
		})
	}
	cookie, csrf := e.login(t)
	if w := e.do(t, "GET", "/admin/", cookie, nil); w.Code != http.StatusOK {
		t.Fatalf("dashboard: %d", w.Code)
	}
	if w := e.do(t, "POST", "/admin/logout", cookie, url.Values{"csrf": {csrf}}); w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	if _, err := e.ca.Store.GetSession(sessionKey(cookie)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session still stored after logout: %v", err)
	}
	if w := e.do(t, "GET", "/admin/", cookie, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("after logout: %d", w.Code)
	}
}

func TestAdminCertificateLogsIn(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		tls  bool
		want int
	}{
		{"admin certificate", true, http.StatusOK},
		{"no certificate", false, http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://lanyard.test/admin/", nil)
			if tt.tls {
				r.TLS = adminTLS(t, e.ca)
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			// The certificate authorises each request: no session is
			// stored, so no cookie is set (issue 9 item 8).
			if c := w.Header().Get("Set-Cookie"); strings.Contains(c, SessionCookie) {
				t.Fatalf("admin certificate request set a session cookie: %s", c)
			}
		})
	}
}

// TestAdminCertificateOverTLS logs in with the admin client certificate
// through the real server, which verifies client certificates per request.
func TestAdminCertificateOverTLS(t *testing.T) {
	c := testca.Start(t, testca.Options{Web: func(c *testca.CA) http.Handler {
		h, err := New(Config{Store: c.Store, Issuance: c.Issuance, Revocation: c.Revocation, CAURL: c.URL,
			Fingerprint: c.Authority.Fingerprint(), ClientCert: serverClientCert})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.Authority.RootsPEM())
	tests := []struct {
		name string
		cert *tls.Certificate
		want int
	}{
		{"admin certificate", &c.AdminCert, http.StatusOK},
		{"no certificate", nil, http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: roots}
			if tt.cert != nil {
				// Send it whatever CA names the server lists, as browsers and curl do.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tt.cert, nil }
			}
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := cl.Get(c.URL + "/admin/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	_, otherCSRF := e.login(t)
	c := e.enroll(t, "csrf.covalent.example.net")
	tests := []struct {
		name  string
		token string
	}{
		{"missing", ""},
		{"from another session", otherCSRF},
		{"garbage", "x" + csrf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, req := range []struct {
				path string
				form url.Values
			}{
				{"/admin/certs/" + c.Serial + "/revoke", url.Values{"reason": {"1"}, "confirm": {"yes"}}},
				{"/admin/tokens", url.Values{"cn": {"new.covalent.example.net"}, "profile": {"covalent"}}},
				{"/admin/acme", url.Values{"profile": {"covalent"}}},
				{"/admin/logout", url.Values{}},
			} {
				if tt.token != "" {
					req.form.Set("csrf", tt.token)
				}
				w := e.do(t, "POST", req.path, cookie, req.form)
				if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "security token") {
					t.Fatalf("%s: status %d, want 403 with a clear message: %s", req.path, w.Code, w.Body)
				}
			}
		})
	}
	if got, _ := e.ca.Store.GetCert(c.Serial); got.Revocation != nil {
		t.Fatal("a POST without a valid CSRF token revoked the certificate")
	}
	if toks, _ := e.ca.Store.ListUnusedTokens(e.clock.Now()); len(toks) != 0 {
		t.Fatalf("a POST without a valid CSRF token created %d tokens", len(toks))
	}
	if keys, _ := e.ca.Store.ListMeta("acme/eab/"); len(keys) != 0 {
		t.Fatalf("a POST without a valid CSRF token created %d ACME keys", len(keys))
	}
	if _, err := e.ca.Store.GetSession(sessionKey(cookie)); err != nil {
		t.Fatal("a POST without a valid CSRF token logged the session out")
	}
	// A cross-site browser POST is refused by http.CrossOriginProtection even with the right token.
	r := httptest.NewRequest("POST", "https://lanyard.test/admin/tokens", strings.NewReader(url.Values{"csrf": {csrf}, "cn": {"x.covalent.example.net"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "another site") {
		t.Fatalf("cross-site POST: %d %s", w.Code, w.Body)
	}
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	c := e.enroll(t, "expiry.covalent.example.net")
	e.clock.Advance(DefaultSessionTTL - time.Second)
	if w := e.do(t, "GET", "/admin/", cookie, nil); w.Code != http.StatusOK {
		t.Fatalf("just before expiry: %d", w.Code)
	}
	e.clock.Advance(time.Second)
	w := e.do(t, "POST", "/admin/certs/"+c.Serial+"/revoke", cookie, url.Values{"csrf": {csrf}, "reason": {"1"}, "confirm": {"yes"}})
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "session has expired") {
		t.Fatalf("POST with an expired session: %d %s", w.Code, w.Body)
	}
	if got, _ := e.ca.Store.GetCert(c.Serial); got.Revocation != nil {
		t.Fatal("an expired session revoked the certificate")
	}
	w = e.do(t, "GET", "/admin/", cookie, nil)
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "/admin/login?") {
		t.Fatalf("GET with an expired session: %d %q", w.Code, w.Header().Get("Location"))
	}
	if _, err := e.ca.Store.GetSession(sessionKey(cookie)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session not deleted: %v", err)
	}
	if w := e.do(t, "GET", "/admin/login?expired=1", "", nil); !strings.Contains(w.Body.String(), "session has expired") {
		t.Fatal("login page does not say the session expired")
	}
}

func TestPasswords(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		password string
		wantErr  error
	}{
		{"short", "elevenchars", ErrWeakPassword},
		{"not utf-8", "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4", ErrWeakPassword},
		{"twelve", "twelve chars", nil},
		{"unicode", "pässwörd-ünïcødé", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := SetPassword(ctx, e.ca.Store, tt.password)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SetPassword: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			for pw, want := range map[string]bool{tt.password: true, tt.password + "x": false, "": false} {
				if ok, err := CheckPassword(e.ca.Store, pw); err != nil || ok != want {
					t.Fatalf("CheckPassword(%q) = %v, %v; want %v", pw, ok, err, want)
				}
			}
		})
	}
	a, err := NewOneTimePassword()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewOneTimePassword()
	if len(a) < MinPasswordLen || a == b {
		t.Fatalf("one-time passwords %q %q", a, b)
	}
	if err := SetPassword(ctx, e.ca.Store, a); err != nil {
		t.Fatalf("a one-time password is refused: %v", err)
	}
}
