package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
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
