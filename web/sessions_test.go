package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/tidy"
)

// TestPasswordChangeEndsEverySession: sessions logged in before a password
// change are refused after it (issue 9 item 8).
func TestPasswordChangeEndsEverySession(t *testing.T) {
	e := newEnv(t)
	a, _ := e.login(t)
	b, _ := e.login(t)
	for _, c := range []string{a, b} {
		if w := e.do(t, http.MethodGet, "/admin/", c, nil); w.Code != http.StatusOK {
			t.Fatalf("before the change: %d", w.Code)
		}
	}
	if err := SetPassword(context.Background(), e.ca.Store, "a brand new password 42"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{a, b} {
		if w := e.do(t, http.MethodGet, "/admin/", c, nil); w.Code != http.StatusSeeOther {
			t.Fatalf("a session from before the password change still works: %d", w.Code)
		}
		if _, err := e.ca.Store.GetSession(sessionKey(c)); err == nil {
			t.Error("the ended session is still stored")
		}
	}
}

// TestCertificateRequestsStoreNoSession: requests authorised by the admin
// certificate store no session and write no login audit event, however
// many, and their forms work (CSRF bound to the certificate).
func TestCertificateRequestsStoreNoSession(t *testing.T) {
	e := newEnv(t)
	logins := func() int {
		ev, _, err := e.ca.Store.ListAudit(store.AuditQuery{Action: "login", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(ev)
	}
	before := logins()
	var page string
	for range 5 {
		r := httptest.NewRequest(http.MethodGet, "https://lanyard.test/admin/tokens", nil)
		r.TLS = adminTLS(t, e.ca)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || strings.Contains(w.Header().Get("Set-Cookie"), SessionCookie) {
			t.Fatalf("certificate request: %d, Set-Cookie %q", w.Code, w.Header().Get("Set-Cookie"))
		}
		page = w.Body.String()
	}
	if n := logins(); n != before {
		t.Fatalf("%d login audit events for certificate requests", n-before)
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	post := func(csrf string) int {
		form := url.Values{"csrf": {csrf}, "cn": {"certform.covalent.example.net"}, "profile": {"covalent"}}
		r := httptest.NewRequest(http.MethodPost, "https://lanyard.test/admin/tokens", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.TLS = adminTLS(t, e.ca)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		return w.Code
	}
	if code := post("forged"); code != http.StatusForbidden {
		t.Errorf("certificate POST with a wrong CSRF token: %d, want 403", code)
	}
	if code := post(m[1]); code >= 400 {
		t.Errorf("certificate POST with the page's CSRF token: %d", code)
	}
}

// TestExpiredSessionsAreSwept: a session that expired on the server's
// clock is refused, and the tidy sweep removes it from the store.
func TestExpiredSessionsAreSwept(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	e.clock.Advance(DefaultSessionTTL + time.Minute)
	// Swept without anyone presenting it again.
	svc := tidy.New(tidy.Config{Store: e.ca.Store, Retention: tidy.Retention{Sessions: time.Nanosecond}, Now: e.clock.Now})
	rep, err := svc.Run(context.Background(), "test", false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sessions < 1 {
		t.Fatalf("tidy swept %d sessions, want the expired one", rep.Sessions)
	}
	if _, err := e.ca.Store.GetSession(sessionKey(cookie)); err == nil {
		t.Fatal("the expired session is still stored after the sweep")
	}
	if w := e.do(t, http.MethodGet, "/admin/", cookie, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("expired session: %d, want a redirect to the login", w.Code)
	}
}
