package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/acmeclient"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store"
)

var (
	eabKIDRE  = regexp.MustCompile(`id="eab-kid">([A-Za-z0-9_-]+)<`)
	eabHMACRE = regexp.MustCompile(`id="eab-hmac">([A-Za-z0-9_-]+)<`)
)

// TestACMEKeys: the ACME page mints an EAB key (its secret shown once,
// never in the list), refuses bad input writing nothing, revokes, and
// every change is audited under the session's actor.
func TestACMEKeys(t *testing.T) {
	e := newEnv(t)
	cookie, csrf := e.login(t)
	w := e.do(t, "POST", "/admin/acme", cookie, url.Values{"csrf": {csrf}, "profile": {"covalent"}, "cn": {"Web1.covalent.example.net"}})
	body := w.Body.String()
	kid, hm := eabKIDRE.FindStringSubmatch(body), eabHMACRE.FindStringSubmatch(body)
	if w.Code != 200 || kid == nil || hm == nil || !strings.Contains(body, e.ca.URL+"/acme/covalent/directory") {
		t.Fatalf("create: %d, want the key id, HMAC key and directory in %s", w.Code, body)
	}
	keys, err := e.ca.App.AdminAPI.ListEABKeys()
	if err != nil || len(keys) != 1 || keys[0].ID != kid[1] || keys[0].CN != "web1.covalent.example.net" || keys[0].Reusable || keys[0].Profile != "covalent" {
		t.Fatalf("keys after create: %+v, %v", keys, err)
	}
	list := e.do(t, "GET", "/admin/acme", cookie, nil).Body.String()
	if strings.Contains(list, hm[1]) || !strings.Contains(list, kid[1]) || !strings.Contains(list, "single use") {
		t.Fatal("the key list shows the HMAC key again, or lacks the key")
	}
	for _, tt := range []struct {
		name string
		form url.Values
		msg  string
	}{
		{"cn outside profile", url.Values{"cn": {"evil.example.com"}, "profile": {"covalent"}}, "not allow"},
		{"unknown profile", url.Values{"profile": {"nope"}}, "unknown profile"},
		{"cn too long", url.Values{"cn": {strings.Repeat("a", 300)}, "profile": {"covalent"}}, "too long"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("csrf", csrf)
			w := e.do(t, "POST", "/admin/acme", cookie, tt.form)
			if w.Code != 400 || !strings.Contains(w.Body.String(), tt.msg) {
				t.Fatalf("status %d, want 400 with %q: %s", w.Code, tt.msg, w.Body)
			}
		})
	}
	if keys, _ := e.ca.Store.ListMeta("acme/eab/"); len(keys) != 1 {
		t.Fatalf("refused creations wrote keys: %d in the store", len(keys))
	}
	w = e.do(t, "POST", "/admin/acme", cookie, url.Values{"csrf": {csrf}, "profile": {"covalent"}, "reusable": {"yes"}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), "any number of accounts") {
		t.Fatalf("reusable create: %d %s", w.Code, w.Body)
	}
	if w := e.do(t, "POST", "/admin/acme/"+kid[1]+"/revoke", cookie, url.Values{"csrf": {csrf}}); w.Code != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	keys, _ = e.ca.App.AdminAPI.ListEABKeys()
	revoked := 0
	for _, k := range keys {
		if k.Revoked {
			revoked++
			if k.ID != kid[1] {
				t.Fatalf("revoked the wrong key %s", k.ID)
			}
		}
	}
	if len(keys) != 2 || revoked != 1 {
		t.Fatalf("keys after revoke: %+v", keys)
	}
	for _, id := range []string{"AAAAAAAAAAAAAAAA", "not%20valid"} {
		if w := e.do(t, "POST", "/admin/acme/"+id+"/revoke", cookie, url.Values{"csrf": {csrf}}); w.Code != 404 {
			t.Fatalf("revoke unknown key %s: %d", id, w.Code)
		}
	}
	for action, want := range map[store.AuditAction]int{store.ActionACMEEABCreate: 2, store.ActionACMEEABRevoke: 1} {
		evs, _, err := e.ca.Store.ListAudit(store.AuditQuery{Action: action})
		if err != nil || len(evs) != want || evs[0].Actor == "" {
			t.Fatalf("audit %s: %d events (%v), want %d with an actor", action, len(evs), err, want)
		}
	}
}

// TestCertificatePageNamesACMEAccount: the page of a certificate an ACME
// order got names the account that asked and the EAB key it was opened
// with (issue 14: shown with the ACME account that asked).
func TestCertificatePageNamesACMEAccount(t *testing.T) {
	resp, err := acmeclient.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	e := newEnvWith(t, testca.Options{ACME: config.ACME{HTTP01Port: resp.Port(), ResolveTo: "127.0.0.1"}})
	ctx := context.Background()
	kid, hk, err := e.ca.App.ACME.CreateEAB(ctx, "covalent", "", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.ca.Authority.RootsPEM())
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	cl, err := acmeclient.Register(ctx, e.ca.URL+"/acme/covalent/directory", hc, kid, hk, resp)
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := cl.Obtain(ctx, "acmepage.covalent.example.net")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := e.ca.Store.ListAudit(store.AuditQuery{Action: store.ActionACMEAccount})
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit of the account: %v (%v)", evs, err)
	}
	acct := evs[0].Subject
	cookie, _ := e.login(t)
	body := e.do(t, "GET", "/admin/certs/"+lanyardv1.FormatSerial(leaf.SerialNumber), cookie, nil).Body.String()
	for _, want := range []string{`class="mono acme-account" href="/admin/audit?subject=` + acct + `">` + acct + `<`,
		`class="mono acme-eab" href="/admin/audit?subject=` + kid + `">`, "ACME order"} {
		if !strings.Contains(body, want) {
			t.Errorf("the ACME certificate's page lacks %q", want)
		}
	}
}
