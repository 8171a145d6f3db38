package web

import (
	"context"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/anchors"
	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

func TestSearch(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	c := e.enroll(t, "web1.covalent.example.net")
	e.enroll(t, "db1.covalent.example.net")
	tests := []struct {
		name   string
		query  url.Values
		status int
		want   []string // substrings of the body
		not    []string
	}{
		{"cn prefix", url.Values{"cn": {"web"}}, 200, []string{"web1.covalent.example.net"}, []string{"db1.covalent"}},
		{"serial", url.Values{"serial": {c.Serial}}, 200, []string{"web1.covalent.example.net"}, []string{"db1.covalent"}},
		{"serial upper case with colons", url.Values{"serial": {strings.ToUpper(c.Serial[:2] + ":" + c.Serial[2:])}}, 200, []string{"web1.covalent"}, nil},
		{"profile", url.Values{"profile": {"covalent"}}, 200, []string{"web1.covalent", "db1.covalent"}, nil},
		{"status valid", url.Values{"status": {"valid"}}, 200, []string{"web1.covalent", "db1.covalent"}, nil},
		{"status revoked", url.Values{"status": {"revoked"}}, 200, []string{"No certificates match."}, nil},
		{"sql", url.Values{"cn": {`' OR 1=1; DROP TABLE certs; --`}}, 200, []string{"No certificates match."}, []string{"web1.covalent"}},
		{"html", url.Values{"cn": {`<img src=x onerror=alert(1)>`}}, 200, []string{"No certificates match.", "&lt;img"}, []string{"<img"}},
		{"regex", url.Values{"cn": {`.*`}}, 200, []string{"No certificates match."}, []string{"web1.covalent"}},
		{"regex class", url.Values{"cn": {`[a-z]+(`}}, 200, []string{"No certificates match."}, nil},
		{"percent and underscore", url.Values{"cn": {`%_%`}}, 200, []string{"No certificates match."}, nil},
		{"nul", url.Values{"cn": {"web\x00"}}, 200, []string{"No certificates match."}, nil},
		{"sql profile", url.Values{"profile": {`covalent' --`}}, 200, []string{"No certificates match."}, nil},
		{"serial not hex", url.Values{"serial": {`'; DROP--`}}, 200, []string{"No certificates match.", "hexadecimal"}, nil},
		{"serial regex", url.Values{"serial": {`.*`}}, 200, []string{"No certificates match."}, nil},
		{"bad status", url.Values{"status": {`valid' OR '1`}}, 400, []string{"Status must be"}, nil},
		{"bad page token", url.Values{"cn": {"web"}, "after": {"zz"}}, 400, []string{"page link is damaged"}, nil},
		{"too long", url.Values{"cn": {strings.Repeat("a", maxField+1)}}, 400, []string{"longer than"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(t, "GET", "/admin/certs?"+tt.query.Encode(), cookie, nil)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			body := w.Body.String()
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q", s)
				}
			}
			for _, s := range tt.not {
				if strings.Contains(body, s) {
					t.Errorf("body has %q", s)
				}
			}
		})
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	for i := 0; i < pageSize+5; i++ {
		insertRecord(t, e.ca.Store, "page.covalent.example.net", e.clock.Now())
	}
	w := e.do(t, "GET", "/admin/certs?cn=page", cookie, nil)
	m := nextRE.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no next page link: %s", w.Body)
	}
	if n := strings.Count(w.Body.String(), `class="cn"`); n != pageSize {
		t.Fatalf("first page has %d rows, want %d", n, pageSize)
	}
	w = e.do(t, "GET", strings.ReplaceAll(m[1], "&amp;", "&"), cookie, nil)
	if n := strings.Count(w.Body.String(), `class="cn"`); w.Code != 200 || n != 5 {
		t.Fatalf("second page: status %d, %d rows, want 5", w.Code, n)
	}
	if nextRE.MatchString(w.Body.String()) {
		t.Fatal("last page has a next link")
	}
}

func TestNotFound(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	tests := []string{
		"/admin/certs/00000000000000000000000000000001",
		"/admin/certs/00000000000000000000000000000001.pem",
		"/admin/certs/not-hex",
		"/admin/certs/..%2f..%2f..%2fetc%2fpasswd",
		"/admin/certs/../../../etc/passwd",
		"/admin/certs/%2e%2e",
		"/admin/static/../web.go",
		"/admin/static/..%2fweb.go",
		"/admin/static/",
		"/admin/static/nope.css",
		"/admin//certs",
		"/admin/certs/" + strings.Repeat("a", 41),
		"/admin/no-such-page",
	}
	for _, path := range tests {
		t.Run(path, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://lanyard.test/", nil)
			r.URL.Path, r.URL.RawPath = mustUnescape(t, path), path
			r.RequestURI = path
			r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != http.StatusNotFound {
				t.Fatalf("status %d, want 404: %s", w.Code, w.Body)
			}
		})
	}
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	s, err := url.PathUnescape(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCertificatePage(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	c := e.enroll(t, "page1.covalent.example.net")
	w := e.do(t, "GET", "/admin/certs/"+c.Serial, cookie, nil)
	body := w.Body.String()
	for _, s := range []string{"page1.covalent.example.net", "CN=page1.covalent.example.net", c.Serial, c.TokenID, ".pem", "keyCompromise", `name="confirm"`} {
		if !strings.Contains(body, s) {
			t.Errorf("certificate page lacks %q", s)
		}
	}
	if strings.Contains(body, "acme-account") {
		t.Error("an enrolled certificate's page names an ACME account")
	}
	w = e.do(t, "GET", "/admin/certs/"+strings.ToUpper(c.Serial)+".pem", cookie, nil)
	if w.Code != 200 || !strings.HasPrefix(w.Body.String(), "-----BEGIN CERTIFICATE-----") || w.Header().Get("Content-Type") != "application/x-pem-file" {
		t.Fatalf("PEM download: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	c := e.enroll(t, "rev.covalent.example.net")
	other := e.enroll(t, "keep.covalent.example.net")
	post := func(serial string, form url.Values) *httptest.ResponseRecorder {
		form.Set("csrf", csrf)
		return e.do(t, "POST", "/admin/certs/"+serial+"/revoke", cookie, form)
	}
	bad := []struct {
		name   string
		serial string
		form   url.Values
		status int
		msg    string
	}{
		{"unknown reason code", other.Serial, url.Values{"reason": {"7"}, "confirm": {"yes"}}, 400, "not an RFC 5280 reason"},
		{"CA reason", other.Serial, url.Values{"reason": {"2"}, "confirm": {"yes"}}, 400, "not allowed for leaf"},
		{"reason text", other.Serial, url.Values{"reason": {"<b>bogus</b>"}, "confirm": {"yes"}}, 400, "&lt;b&gt;bogus"},
		{"no confirmation", other.Serial, url.Values{"reason": {"1"}}, 400, "confirmation"},
		{"unknown serial", "00000000000000000000000000000001", url.Values{"reason": {"1"}, "confirm": {"yes"}}, 404, "No certificate has serial"},
		{"serial not hex", "zz", url.Values{"reason": {"1"}, "confirm": {"yes"}}, 404, "hexadecimal"},
		{"oversize comment", other.Serial, url.Values{"reason": {"1"}, "confirm": {"yes"}, "comment": {strings.Repeat("c", revocation.MaxCommentBytes+1)}}, 400, "Not revoked"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			w := post(tt.serial, tt.form)
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.msg) {
				t.Fatalf("status %d, want %d with %q: %s", w.Code, tt.status, tt.msg, w.Body)
			}
		})
	}
	if got, _ := e.ca.Store.GetCert(other.Serial); got.Revocation != nil {
		t.Fatal("a refused revocation changed the certificate")
	}
	crlBefore := e.ca.Revocation.Current().Number

	w := post(c.Serial, url.Values{"reason": {"1"}, "confirm": {"yes"}, "comment": {"laptop stolen"}})
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || !strings.Contains(loc, "done=revoked") {
		t.Fatalf("revoke: %d %q %s", w.Code, loc, w.Body)
	}
	first, _ := e.ca.Store.GetCert(c.Serial)
	if first.Revocation == nil || first.Revocation.Reason != 1 || first.Revocation.By != "admin:password" {
		t.Fatalf("revocation record: %+v", first.Revocation)
	}
	if e.ca.Revocation.Current().Number <= crlBefore {
		t.Fatal("no new CRL after the revocation")
	}
	page := e.do(t, "GET", loc, cookie, nil).Body.String()
	for _, s := range []string{"Certificate revoked", "keyCompromise", "laptop stolen", "trust-anchor sync is not configured", "status-revoked"} {
		if !strings.Contains(page, s) {
			t.Errorf("page after revoking lacks %q", s)
		}
	}
	if strings.Contains(page, `name="confirm"`) {
		t.Error("revoked certificate still offers the revoke form")
	}

	e.clock.Advance(time.Minute)
	w = post(c.Serial, url.Values{"reason": {"4"}, "confirm": {"yes"}})
	loc = w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || !strings.Contains(loc, "done=already") {
		t.Fatalf("second revoke: %d %q %s", w.Code, loc, w.Body)
	}
	if page := e.do(t, "GET", loc, cookie, nil).Body.String(); !strings.Contains(page, "already revoked") {
		t.Fatal("second revoke: no idempotency message")
	}
	second, _ := e.ca.Store.GetCert(c.Serial)
	if second.Revocation.Reason != 1 || !second.Revocation.At.Equal(first.Revocation.At) {
		t.Fatalf("second revoke changed the first reason or time: %+v", second.Revocation)
	}
}

func TestAnchorNote(t *testing.T) {
	e := newEnv(t)
	at := e.clock.Now()
	tests := []struct {
		name    string
		anchors *anchors.Status // recorded in the store; nil: the sync is not configured
		crl     int64
		want    string
	}{
		{"not configured", nil, 3, "not configured"},
		{"reached", &anchors.Status{CRLNumber: 3, CRLPushedAt: at}, 3, "reached the trust anchor"},
		{"newer reached", &anchors.Status{CRLNumber: 4, CRLPushedAt: at}, 3, "reached the trust anchor"},
		{"older at AWS", &anchors.Status{CRLNumber: 2}, 3, "pending: CRL #3 lists it; the trust anchor still has CRL #2"},
		{"none at AWS", &anchors.Status{}, 3, "the trust anchor has no CRL yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := e.ca.App.AdminAPI
			if tt.anchors != nil {
				if err := e.ca.Store.PutMeta(context.Background(), anchors.StatusKey, tt.anchors); err != nil {
					t.Fatal(err)
				}
				svc = withAnchors(e.ca)
			}
			h := &handler{cfg: Config{Revocation: e.ca.Revocation, Admin: svc, Now: e.clock.Now}}
			if got := h.anchorNote(&store.Revocation{At: at}, tt.crl); !strings.Contains(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	w := e.do(t, "POST", "/admin/tokens", cookie, url.Values{"csrf": {csrf}, "cn": {"new1.covalent.example.net"}, "profile": {"covalent"}, "ttl": {"2h"}})
	body := w.Body.String()
	want := "lanyard enroll --ca " + e.ca.URL + " --fingerprint " + e.ca.Authority.Fingerprint() + " --cn new1.covalent.example.net --token - --out /etc/lanyard/pki"
	if w.Code != 200 || !strings.Contains(body, want) || !strings.Contains(body, `<pre class="command" id="enroll-token">lyt1_`) {
		t.Fatalf("create: %d, want %q and the token on its own in %s", w.Code, want, body)
	}
	secret := body[strings.Index(body, "lyt1_"):]
	secret = secret[:strings.IndexByte(secret, '<')]
	if strings.Contains(body, "--token "+secret) {
		t.Fatal("the printed command carries the token in argv")
	}
	toks, _ := e.ca.Store.ListUnusedTokens(e.clock.Now())
	if len(toks) != 1 || toks[0].CN != "new1.covalent.example.net" || toks[0].ExpiresAt.Sub(toks[0].CreatedAt) != 2*time.Hour {
		t.Fatalf("tokens: %+v", toks)
	}
	list := e.do(t, "GET", "/admin/tokens", cookie, nil).Body.String()
	if strings.Contains(list, secret) || !strings.Contains(list, toks[0].ID) {
		t.Fatal("the token list shows the secret again, or lacks the token")
	}
	bad := []struct {
		name string
		form url.Values
		msg  string
	}{
		{"no cn", url.Values{"profile": {"covalent"}}, "common name is required"},
		{"cn outside profile", url.Values{"cn": {"evil.example.com"}, "profile": {"covalent"}}, "not allow"},
		{"unknown profile", url.Values{"cn": {"x.covalent.example.net"}, "profile": {"nope"}}, "unknown profile"},
		{"bad ttl", url.Values{"cn": {"x.covalent.example.net"}, "ttl": {"forever"}}, "duration"},
		{"ttl too long", url.Values{"cn": {"x.covalent.example.net"}, "ttl": {"1000h"}}, "maximum"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("csrf", csrf)
			w := e.do(t, "POST", "/admin/tokens", cookie, tt.form)
			if w.Code != 400 || !strings.Contains(w.Body.String(), tt.msg) {
				t.Fatalf("status %d, want 400 with %q: %s", w.Code, tt.msg, w.Body)
			}
		})
	}
	w = e.do(t, "POST", "/admin/tokens/"+toks[0].ID+"/revoke", cookie, url.Values{"csrf": {csrf}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("revoke token: %d %s", w.Code, w.Body)
	}
	if toks, _ := e.ca.Store.ListUnusedTokens(e.clock.Now()); len(toks) != 0 {
		t.Fatal("revoked token still listed")
	}
	for _, id := range []string{"0123456789abcdef", "not-hex"} {
		if w := e.do(t, "POST", "/admin/tokens/"+id+"/revoke", cookie, url.Values{"csrf": {csrf}}); w.Code != 404 {
			t.Fatalf("revoke unknown token %s: %d", id, w.Code)
		}
	}
	used := e.enroll(t, "used.covalent.example.net")
	if w := e.do(t, "POST", "/admin/tokens/"+used.TokenID+"/revoke", cookie, url.Values{"csrf": {csrf}}); w.Code != http.StatusConflict {
		t.Fatalf("revoke used token: %d", w.Code)
	}
}

func TestAuditAndDashboard(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	c := e.enroll(t, "aud.covalent.example.net")
	if _, err := e.ca.Revocation.Revoke(context.Background(), revocation.Request{Serial: c.Serial, Reason: 5, By: "admin:test"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		query string
		want  []string
		not   []string
	}{
		{"all", "", []string{"revoke", "token.create", "login"}, nil},
		{"action", "action=revoke", []string{c.Serial, "cessationOfOperation"}, []string{"token.create"}},
		{"actor", "actor=admin:test", []string{"revoke"}, []string{"token.create"}},
		{"subject", "subject=" + c.Serial[:10], []string{"revoke"}, []string{"token.create"}},
		{"metacharacters", "actor=" + url.QueryEscape(`.*'"<>`), []string{"no events"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(t, "GET", "/admin/audit?"+tt.query, cookie, nil)
			body := w.Body.String()
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("lacks %q", s)
				}
			}
			for _, s := range tt.not {
				if strings.Contains(body, ">"+s+"<") {
					t.Errorf("has %q", s)
				}
			}
		})
	}
	e.enroll(t, "dash.covalent.example.net")
	w := e.do(t, "GET", "/admin/", cookie, nil)
	body := w.Body.String()
	for _, s := range []string{"<svg", `class="bar"`, "per hour, next 24 hours", "per day, next 14 days", "not configured", "#" + itoa(e.ca.Revocation.Current().Number), "covalent"} {
		if !strings.Contains(body, s) {
			t.Errorf("dashboard lacks %q", s)
		}
	}
}

func TestExpiryCharts(t *testing.T) {
	hours := make([]int, expiryHours)
	hours[0], hours[5], hours[30], hours[expiryHours-1] = 4, 2, 7, 1
	tests := []struct {
		name  string
		chart chart
		bars  int
		max   int
		sum   int
	}{}
	byHour, byDay := expiryCharts(hours)
	tests = append(tests,
		struct {
			name  string
			chart chart
			bars  int
			max   int
			sum   int
		}{"hours", byHour, 24, 4, 6},
		struct {
			name  string
			chart chart
			bars  int
			max   int
			sum   int
		}{"days", byDay, 14, 7, 14},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.chart.Bars) != tt.bars || tt.chart.Max != tt.max {
				t.Fatalf("%d bars, max %d; want %d, %d", len(tt.chart.Bars), tt.chart.Max, tt.bars, tt.max)
			}
			sum := 0
			for _, b := range tt.chart.Bars {
				sum += b.Count
				if b.Y+b.H != tt.chart.Base || b.H < 0 || b.H > chartPlot || (b.Count > 0 && b.H == 0) {
					t.Fatalf("bar geometry %+v", b)
				}
			}
			if sum != tt.sum {
				t.Fatalf("sum %d, want %d", sum, tt.sum)
			}
		})
	}
}

// TestDashboardAnchorsPanels: the kill switch and the subjects findings
// are on the dashboard.
func TestDashboardAnchorsPanels(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	record := func(st anchors.Status) {
		t.Helper()
		if err := e.ca.Store.PutMeta(context.Background(), anchors.StatusKey, st); err != nil {
			t.Fatal(err)
		}
	}
	record(anchors.Status{LastSync: e.clock.Now()})
	h, err := New(Config{Store: e.ca.Store, Issuance: e.ca.Issuance, Revocation: e.ca.Revocation, Admin: withAnchors(e.ca), CAURL: e.ca.URL,
		Fingerprint: e.ca.Authority.Fingerprint(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	page := e.do(t, "GET", "/admin/", cookie, nil).Body.String()
	if strings.Contains(page, "Kill switch engaged") || !strings.Contains(page, "not reconciled yet") {
		t.Fatalf("dashboard without kill switch or subjects:\n%s", page)
	}
	record(anchors.Status{LastSync: e.clock.Now(), KillSwitch: "2026-12-01T21:00:00Z key leak",
		Subjects: &anchors.SubjectsSummary{At: e.clock.Now(), Seen: 4, Total: 2, Findings: []anchors.Finding{
			{Kind: "not issued by lanyard", Subject: "CN=rogue", Serial: big.NewInt(0x1f)},
			{Kind: "valid, never used with Roles Anywhere", Subject: "CN=idle", Serial: big.NewInt(0x2a)},
		}}})
	page = e.do(t, "GET", "/admin/", cookie, nil).Body.String()
	for _, want := range []string{"Kill switch engaged", "key leak", "lanyard anchors enable", "4 certificate(s) seen by AWS",
		"not issued by lanyard: CN=rogue (serial " + lanyardv1.FormatSerial(big.NewInt(0x1f)) + ")", "never used with Roles Anywhere: CN=idle"} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
}
