package web

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

// chromiumPath is Debian's chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// screenshotDir is git-ignored (/test-output/ at the repository root).
var screenshotDir = filepath.Join("..", "test-output", "screenshots")

// fakeAnchor stands in for the anchors sync in the browser test: it
// "imports" every CRL the revocation service publishes and records it in
// the store, as the real sync does; the page reads it through the admin
// service.
type fakeAnchor struct {
	mu  sync.Mutex
	st  anchors.Status
	db  store.Meta
	now func() time.Time
}

func (f *fakeAnchor) PublishCRL(ctx context.Context, crl *revocation.CRL) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.LastSync, f.st.CRLNumber, f.st.CRLPushedAt = f.now(), crl.Number, f.now()
	if err := f.db.PutMeta(ctx, anchors.StatusKey, f.st); err != nil {
		panic(err) // the revocation service logs it; the page then lacks the CRL and the test fails
	}
}

// TestBrowser drives Debian's chromium (headless) against a real CA on
// loopback TLS with the admin page mounted.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("headless Chromium test: make test runs it, make test-quick (-short) does not")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("install chromium: make deps (%v)", err)
	}
	anchor := &fakeAnchor{now: time.Now}
	c := testca.Start(t, testca.Options{Web: func(c *testca.CA) http.Handler {
		anchor.db = c.Store
		c.Revocation.SetPublisher(anchor)
		h, err := New(Config{Store: c.Store, Issuance: c.Issuance, Revocation: c.Revocation, Admin: withAnchors(c),
			CAURL: c.URL, Fingerprint: c.Authority.Fingerprint(), Now: c.Now, ClientCert: serverClientCert})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}})
	ctx := context.Background()
	if err := SetPassword(ctx, c.Store, testPassword); err != nil {
		t.Fatal(err)
	}
	target := enrollCert(t, c, "web1.covalent.example.net")
	enrollCert(t, c, "web2.covalent.example.net")
	enrollCert(t, c, "db1.covalent.example.net")
	evil := insertRecord(t, c.Store, `<script>alert(1)</script>`, time.Now())

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.Authority.RootsPEM())
	goClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Trust exactly the test server's key: pin its SPKI rather than
	// ignoring every certificate error.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(c.URL, "https://"), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	conn.Close()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	// Listen starts the browser on bctx, which must carry no timeout.
	var dialogs atomic.Int32
	if err := chromedp.Listen(bctx, func(ev any) {
		if _, ok := ev.(*cdppage.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancelTimeout := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelTimeout()
	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	u := func(path string) string { return c.URL + path }

	// Every page refuses an anonymous visitor: the browser lands on the login form.
	for _, path := range []string{"/admin/", "/admin/certs", "/admin/certs?cn=web", "/admin/certs/" + target.Serial, "/admin/tokens", "/admin/audit"} {
		do("anonymous "+path, chromedp.Navigate(u(path)), chromedp.WaitVisible(css(`#password`)))
		loc, err := chromedp.Run(tctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(loc, "/admin/login?") {
			t.Fatalf("anonymous %s ended at %s, want the login page", path, loc)
		}
	}
	for _, path := range []string{"/admin/tokens", "/admin/certs/" + target.Serial + "/revoke", "/admin/logout"} {
		resp, err := goClient.PostForm(u(path), url.Values{"cn": {"anon.covalent.example.net"}, "reason": {"1"}, "confirm": {"yes"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("anonymous POST %s: %d, want 403", path, resp.StatusCode)
		}
	}

	// Log in with the password; the dashboard shows its chart.
	do("log in",
		chromedp.Navigate(u("/admin/login")),
		chromedp.SendKeys(css(`#password`), testPassword),
		chromedp.Submit(css(`#password`)),
		chromedp.WaitVisible(css(`svg rect.bar`)),
	)
	headerBG, err := chromedp.Run(tctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('header')).backgroundColor`))
	if err != nil {
		t.Fatal(err)
	}
	if headerBG != "rgb(24, 32, 44)" {
		t.Errorf("the stylesheet did not load under the CSP (header background %q)", headerBG)
	}
	screenshot(t, tctx, "dashboard.png")

	// Search by CN prefix and open the certificate.
	// Start from a search with no results, so the result link can only
	// appear once the submitted search has loaded (not on the old page).
	do("search",
		chromedp.Navigate(u("/admin/certs?cn=no-such-host")),
		chromedp.WaitVisible(css(`input[name=cn]`)),
		chromedp.SetValue(css(`input[name=cn]`), "web1"),
		chromedp.Submit(css(`input[name=cn]`)),
		chromedp.WaitVisible(css(`a.cn`)),
	)
	if results := text(`table.list tbody`); !strings.Contains(results, "web1.covalent.example.net") || strings.Contains(results, "web2") || strings.Contains(results, "db1") {
		t.Fatalf("search results: %q", results)
	}
	do("open certificate", chromedp.Click(css(`a.cn`)), chromedp.WaitVisible(css(`#revoke`)))
	if title := text(`h1`); title != "web1.covalent.example.net" {
		t.Fatalf("certificate page title %q", title)
	}
	screenshot(t, tctx, "certificate.png")

	// Revoke it: reason, confirmation, submit; the page shows it revoked.
	do("revoke",
		chromedp.SetValue(css(`#reason`), "1"),
		chromedp.Click(css(`#confirm`)),
		chromedp.Click(css(`#revoke`)),
		chromedp.WaitVisible(css(`section.revoked`)),
	)
	if status, reason := text(`td.status`), text(`td.reason`); status != "revoked" || !strings.Contains(reason, "keyCompromise") {
		t.Fatalf("after revoking: status %q, reason %q", status, reason)
	}
	anchorNote := text(`td.anchor`)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(anchorNote, "reached the trust anchor") && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		do("reload", chromedp.Reload(), chromedp.WaitVisible(css(`td.anchor`)))
		anchorNote = text(`td.anchor`)
	}
	if !strings.Contains(anchorNote, "reached the trust anchor") {
		t.Fatalf("the page never showed the CRL reaching the trust anchor: %q", anchorNote)
	}
	screenshot(t, tctx, "certificate-revoked.png")

	// /crl now lists it.
	resp, err := goClient.Get(u("/crl"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parse /crl: %v", err)
	}
	want, _ := new(big.Int).SetString(target.Serial, 16)
	listed := false
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(want) == 0 && e.ReasonCode == 1 {
			listed = true
		}
	}
	if !listed {
		t.Fatalf("/crl (number %v, %d entries) does not list %s", crl.Number, len(crl.RevokedCertificateEntries), target.Serial)
	}

	// An ACME EAB key from the ACME page: the secret is shown once.
	do("create ACME key",
		chromedp.Navigate(u("/admin/acme")),
		chromedp.WaitVisible(css(`form.token`)),
		chromedp.SendKeys(css(`form.token input[name=cn]`), "acme1.covalent.example.net"),
		chromedp.Submit(css(`form.token input[name=cn]`)),
		chromedp.WaitVisible(css(`#eab-hmac`)),
	)
	keys, err := c.App.AdminAPI.ListEABKeys()
	if err != nil || len(keys) != 1 || text(`#eab-kid`) != keys[0].ID || keys[0].CN != "acme1.covalent.example.net" || len(text(`#eab-hmac`)) < 40 {
		t.Fatalf("ACME key page shows kid %q, store has %+v (%v)", text(`#eab-kid`), keys, err)
	}
	screenshot(t, tctx, "acme-key.png")

	// A POST without the CSRF token is refused and changes nothing.
	do("post without CSRF token",
		chromedp.Navigate(u("/admin/tokens")),
		chromedp.WaitVisible(css(`form.token`)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('form.token input[name=csrf]').remove()`),
		chromedp.SendKeys(css(`form.token input[name=cn]`), "csrf.covalent.example.net"),
		chromedp.Submit(css(`form.token input[name=cn]`)),
		chromedp.WaitVisible(css(`p.message`)),
	)
	if refusal := text(`p.message`); !strings.Contains(refusal, "security token") {
		t.Fatalf("POST without CSRF token: %q", refusal)
	}
	if toks, _ := c.Store.ListUnusedTokens(time.Now()); len(toks) != 0 {
		t.Fatalf("a POST without the CSRF token created %d tokens", len(toks))
	}

	// A CN holding <script> renders as text and runs nothing.
	do("script CN", chromedp.Navigate(u("/admin/certs/"+evil.Serial)), chromedp.WaitVisible(css(`h1`)))
	scripts, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.scripts.length`))
	if err != nil {
		t.Fatal(err)
	}
	if title := text(`h1`); title != `<script>alert(1)</script>` || scripts != 0 {
		t.Fatalf("script CN: title %q, %d script elements", title, scripts)
	}
	do("script CN in results", chromedp.Navigate(u("/admin/certs?cn="+url.QueryEscape("<script>"))), chromedp.WaitVisible(css(`a.cn`)))
	if cn := text(`a.cn`); cn != `<script>alert(1)</script>` {
		t.Fatalf("script CN in results: %q", cn)
	}
	if n := dialogs.Load(); n != 0 {
		t.Fatalf("%d JavaScript dialogs opened", n)
	}
}

// screenshot saves a full-page PNG under screenshotDir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(screenshotDir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
