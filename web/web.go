package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Limits and defaults.
const (
	// DefaultSessionTTL is how long a session lasts when Config.SessionTTL is zero.
	DefaultSessionTTL = 8 * time.Hour
	// MaxFormBytes caps a form body; a larger one is refused with 413.
	MaxFormBytes = 16 << 10
	// SessionCookie is the session cookie's name. The __Host- prefix makes
	// browsers insist on Secure, Path=/ and no Domain.
	SessionCookie = "__Host-lanyard_session"
	// maxField caps one search or filter field.
	maxField = 256
)

// Security headers sent with every response.
const (
	// ContentSecurityPolicy allows only same-origin scripts, styles and
	// forms, no framing and no <base>.
	ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

// AnchorStatus is what the pages show of the IAM Roles Anywhere
// trust-anchor sync (of the default target): the status the sync
// recorded, read through admin.Service.AnchorStatus.
type AnchorStatus struct {
	// LastSync is the last successful sync (zero: never).
	LastSync time.Time
	// Drift describes how the trust anchor differs from the CA ("" if it
	// matches).
	Drift string
	// CRLNumber is the number of the newest CRL imported to the trust
	// anchor (0: none), CRLReachedAt when it was imported.
	CRLNumber    int64
	CRLReachedAt time.Time
	// Err is the last sync error ("" if none).
	Err string
	// KillSwitch is set while `lanyard anchors disable` holds the trust
	// anchor and profile disabled (its time and reason): no host gets
	// credentials.
	KillSwitch string
	// SubjectsAt is when Roles Anywhere's subjects were last reconciled
	// with the inventory (zero: never); SubjectsSeen the certificates it
	// had seen, SubjectFindings the flagged ones (one line each),
	// SubjectsTotal their number before any cap, SubjectsErr why the last
	// reconciliation failed.
	SubjectsAt      time.Time
	SubjectsSeen    int
	SubjectFindings []string
	SubjectsTotal   int
	SubjectsErr     string
}

// Config configures New.
type Config struct {
	// Store holds the sessions and the admin password; Issuance and
	// Revocation build Admin when it is nil.
	Store      store.Store
	Issuance   *issuance.Service
	Revocation *revocation.Service
	// Admin is the service the pages call (the one behind the Connect
	// AdminService too); default: one built on Store, Issuance and
	// Revocation.
	Admin *admin.Service
	// CAURL and Fingerprint go into the enroll command shown for a new token.
	CAURL, Fingerprint string
	// Now is the clock (default time.Now); sessions expire on it.
	Now func() time.Time
	// SessionTTL is a session's lifetime (default DefaultSessionTTL).
	SessionTTL time.Duration
	// ClientCert returns the request's TLS client certificate, verified
	// against the CA (nil: none, or it did not verify). The default reads
	// r.TLS.VerifiedChains, which is right when the TLS layer verifies;
	// a server that verifies per request (package server) passes its own.
	ClientCert func(r *http.Request) *x509.Certificate
	// Logger (default slog.Default).
	Logger *slog.Logger
}

// handler serves the admin page.
type handler struct {
	cfg    Config
	log    *slog.Logger
	pages  map[string]*template.Template
	static http.Handler
	login  *loginLimiter
	// csrfKey keys the CSRF tokens of certificate-authorised requests
	// (certSession); per process, as those pages are.
	csrfKey [32]byte
	root    http.Handler
}

// New returns the admin page's handler, serving paths under /admin/.
func New(cfg Config) (http.Handler, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("web: no store")
	case cfg.Issuance == nil:
		return nil, errors.New("web: no issuance service")
	case cfg.Revocation == nil:
		return nil, errors.New("web: no revocation service")
	}
	cfg.Now = clock.Or(cfg.Now)
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ClientCert == nil {
		cfg.ClientCert = verifiedChainLeaf
	}
	if cfg.Admin == nil {
		cfg.Admin = admin.New(admin.Config{Store: cfg.Store, Issuance: cfg.Issuance, Revocation: cfg.Revocation, Now: cfg.Now})
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	staticFS, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	h := &handler{
		cfg:    cfg,
		log:    cfg.Logger,
		pages:  pages,
		static: http.StripPrefix("/admin/static/", http.FileServerFS(staticFS)),
		// Password attempts: per source address, a per-account backoff
		// that spares addresses without failures, and a cap on concurrent
		// argon2id checks (see loginlimit.go).
		login: newLoginLimiter(cfg.Now),
	}
	if _, err := rand.Read(h.csrfKey[:]); err != nil {
		return nil, fmt.Errorf("web: CSRF key: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/login", h.loginPage)
	mux.HandleFunc("POST /admin/login", h.loginPost)
	mux.HandleFunc("GET /admin/static/", h.serveStatic)
	mux.HandleFunc("POST /admin/logout", h.auth(h.logout))
	mux.HandleFunc("GET /admin/{$}", h.auth(h.dashboard))
	mux.HandleFunc("GET /admin/certs", h.auth(h.certs))
	mux.HandleFunc("GET /admin/certs/{serial}", h.auth(h.cert))
	mux.HandleFunc("POST /admin/certs/{serial}/revoke", h.auth(h.revoke))
	mux.HandleFunc("GET /admin/tokens", h.auth(h.tokens))
	mux.HandleFunc("POST /admin/tokens", h.auth(h.createToken))
	mux.HandleFunc("POST /admin/tokens/{id}/revoke", h.auth(h.revokeToken))
	mux.HandleFunc("GET /admin/acme", h.auth(h.acmeKeys))
	mux.HandleFunc("POST /admin/acme", h.auth(h.createEAB))
	mux.HandleFunc("POST /admin/acme/{id}/revoke", h.auth(h.revokeEAB))
	mux.HandleFunc("GET /admin/audit", h.auth(h.audit))
	mux.HandleFunc("/admin/", h.auth(h.notFound))
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, nil, http.StatusForbidden, "This request came from another site and was refused; nothing was changed.")
	}))
	h.root = cop.Handler(mux)
	return h, nil
}

// parsePages builds one template set per page: the layout plus the page.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{"reasonName": revocation.ReasonName}
	base, err := template.New("layout").Funcs(funcs).ParseFS(assets, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse layout: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"error", "login", "dashboard", "certs", "cert", "tokens", "acme", "audit"} {
		b, err := base.Clone()
		if err != nil {
			return nil, fmt.Errorf("web: clone layout: %w", err)
		}
		if pages[name], err = b.ParseFS(assets, "templates/"+name+".html"); err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
	}
	return pages, nil
}

// ServeHTTP sets the security headers, refuses path tricks and panics, and
// dispatches.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("web: panic", "path", r.URL.Path, "panic", fmt.Sprint(v))
			h.fail(w, r, nil, http.StatusInternalServerError, "Internal error; nothing was changed.")
		}
	}()
	if !cleanPath(r.URL.Path) {
		// No redirect to a cleaned path: a traversal attempt is simply not a page.
		h.fail(w, r, nil, http.StatusNotFound, "No such page.")
		return
	}
	h.root.ServeHTTP(w, r)
}

// cleanPath reports whether p is an /admin/ path without dot segments,
// empty segments, backslashes or control characters.
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/admin/") || strings.Contains(p, "//") || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func (h *handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/") {
		h.fail(w, r, nil, http.StatusNotFound, "No such page.")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	h.static.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Session *store.Session
	Flash   string
	Error   string
	Data    any
}

// render executes a page into a buffer first, so a template error becomes
// a clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, status int, name string, p *page) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.log.Error("web: render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the error page's data.
type errorData struct {
	Message string
	Back    string
}

// fail renders the error page with one clear sentence.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, s *store.Session, status int, msg string) {
	back := "/admin/"
	if s == nil {
		back = "/admin/login"
	}
	h.render(w, status, "error", &page{Title: http.StatusText(status), Session: s, Error: msg, Data: errorData{Message: msg, Back: back}})
}

// internal logs err and renders a 500 that leaks nothing.
func (h *handler) internal(w http.ResponseWriter, r *http.Request, s *store.Session, what string, err error) {
	h.log.Error("web: "+what, "path", r.URL.Path, "err", err)
	h.fail(w, r, s, http.StatusInternalServerError, "Internal error while trying to "+what+"; see the server log.")
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request, s *store.Session) {
	h.fail(w, r, s, http.StatusNotFound, "No such page.")
}

// ctxWithoutCancel keeps a store write going if the browser goes away.
func ctxWithoutCancel(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}
