package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/lanyard/lanyard/admincred"
	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/store"
)

// PasswordMetaKey is the store meta key holding the admin password hash.
const PasswordMetaKey = "web.admin_password"

// Password length bounds (in characters).
const (
	MinPasswordLen = 12
	MaxPasswordLen = 1024
)

// argon2id parameters: OWASP's second recommended set (19 MiB, 2 passes, 1 lane).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// Sentinel errors of SetPassword and login.
var (
	// ErrWeakPassword: the password is shorter than MinPasswordLen or not UTF-8.
	ErrWeakPassword = errors.New("password too weak")
	// ErrNoPassword: no admin password has been set.
	ErrNoPassword = errors.New("no admin password is set")
)

// passwordHash is the stored form of the admin password.
type passwordHash struct {
	Alg     string `json:"alg"` // "argon2id"
	Version int    `json:"v"`
	Time    uint32 `json:"t"`
	Memory  uint32 `json:"m"` // KiB
	Threads uint8  `json:"p"`
	Salt    []byte `json:"salt"`
	Hash    []byte `json:"hash"`
}

// SetPassword replaces the admin password of the web page: it stores an
// argon2id hash (random salt) under PasswordMetaKey and records an audit
// event. Every session logged in before it ends (its generation no longer
// matches; see passwordGeneration). The password must have at least MinPasswordLen characters.
func SetPassword(ctx context.Context, db store.Store, password string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case !utf8.ValidString(password):
		return fmt.Errorf("%w: not valid UTF-8", ErrWeakPassword)
	case n < MinPasswordLen:
		return fmt.Errorf("%w: %d characters, at least %d needed", ErrWeakPassword, n, MinPasswordLen)
	case n > MaxPasswordLen:
		return fmt.Errorf("%w: over %d characters", ErrWeakPassword, MaxPasswordLen)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("set admin password: %w", err)
	}
	ph := passwordHash{Alg: "argon2id", Version: argon2.Version, Time: argonTime, Memory: argonMemory, Threads: argonThreads, Salt: salt,
		Hash: argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)}
	if err := db.PutMeta(ctx, PasswordMetaKey, ph); err != nil {
		return fmt.Errorf("set admin password: %w", err)
	}
	if err := db.AppendAudit(ctx, &store.AuditEvent{Actor: "admin:local", Action: store.ActionAdminPassword, Subject: "web"}); err != nil {
		return fmt.Errorf("set admin password: audit: %w", err)
	}
	return nil
}

// passwordGeneration names the stored password (a digest of its random
// salt): sessions carry it, and a new password ends every session that
// carries an older one. "" when no password is set.
func passwordGeneration(db store.Meta) (string, error) {
	var ph passwordHash
	if err := db.GetMeta(PasswordMetaKey, &ph); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", nil
		}
		return "", fmt.Errorf("read admin password hash: %w", err)
	}
	sum := sha256.Sum256(ph.Salt)
	return hex.EncodeToString(sum[:8]), nil
}

// CheckPassword reports whether password is the admin password, comparing
// argon2id hashes in constant time. It fails with ErrNoPassword when none
// is set.
func CheckPassword(db store.Meta, password string) (bool, error) {
	var ph passwordHash
	if err := db.GetMeta(PasswordMetaKey, &ph); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, ErrNoPassword
		}
		return false, fmt.Errorf("read admin password hash: %w", err)
	}
	if ph.Alg != "argon2id" || len(ph.Hash) == 0 || ph.Threads == 0 || ph.Time == 0 {
		return false, fmt.Errorf("admin password hash: unsupported algorithm %q", ph.Alg)
	}
	if len(password) > 4*MaxPasswordLen {
		return false, nil
	}
	got := argon2.IDKey([]byte(password), ph.Salt, ph.Time, ph.Memory, ph.Threads, uint32(len(ph.Hash)))
	return subtle.ConstantTimeCompare(got, ph.Hash) == 1, nil
}

// NewOneTimePassword returns a fresh random password (160 bits, 32
// lower-case base32 characters) for `serve --dev` to print.
func NewOneTimePassword() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("one-time password: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}

// randomToken returns 32 random bytes, base64url.
func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// sessionKey is the store key of a cookie value: the store never holds a
// usable cookie.
func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// sessionState says why a request has no session.
type sessionState int

const (
	sessionNone sessionState = iota
	sessionExpired
	sessionOK
)

// currentSession looks up the request's session cookie. An expired session
// is deleted.
func (h *handler) currentSession(r *http.Request) (*store.Session, sessionState) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, sessionNone
	}
	key := sessionKey(c.Value)
	s, err := h.cfg.Store.GetSession(key)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			h.log.Error("web: read session", "err", err)
		}
		return nil, sessionNone
	}
	gen, err := passwordGeneration(h.cfg.Store)
	if err != nil {
		h.log.Error("web: read the password generation", "err", err)
		return nil, sessionNone
	}
	if !h.cfg.Now().Before(s.ExpiresAt) || s.Generation != gen {
		// Expired on the server's clock, or the password changed since it
		// logged in: gone for good.
		if err := h.cfg.Store.DeleteSession(ctxWithoutCancel(r), key); err != nil {
			h.log.Error("web: delete ended session", "err", err)
		}
		return nil, sessionExpired
	}
	return s, sessionOK
}

// newSession creates a session for actor and sets its cookie.
func (h *handler) newSession(w http.ResponseWriter, r *http.Request, actor string) (*store.Session, error) {
	cookie, err := randomToken()
	if err != nil {
		return nil, fmt.Errorf("new session: %w", err)
	}
	csrf, err := randomToken()
	if err != nil {
		return nil, fmt.Errorf("new session: %w", err)
	}
	key := sessionKey(cookie)
	now := h.cfg.Now()
	gen, err := passwordGeneration(h.cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("new session: %w", err)
	}
	s := &store.Session{ID: key[:16], CSRF: csrf, Actor: actor, ExpiresAt: now.Add(h.cfg.SessionTTL), Generation: gen}
	if err := h.cfg.Store.PutSession(ctxWithoutCancel(r), key, s); err != nil {
		return nil, fmt.Errorf("new session: %w", err)
	}
	if err := h.cfg.Store.AppendAudit(ctxWithoutCancel(r), &store.AuditEvent{At: now, Actor: actor, Action: store.ActionLogin, Subject: "session:" + s.ID}); err != nil {
		h.log.Error("web: audit login", "err", err)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: cookie, Path: "/", MaxAge: int(h.cfg.SessionTTL.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return s, nil
}

// verifiedChainLeaf is the default Config.ClientCert: the leaf of the
// chain the TLS layer verified.
func verifiedChainLeaf(r *http.Request) *x509.Certificate {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return r.TLS.VerifiedChains[0][0]
	}
	return nil
}

// certSession is the session of a request authorised by a live admin
// certificate: built per request, never stored, no cookie and no login
// audit event (the certificate is the credential on every request). Its
// CSRF token is an HMAC of the certificate under a per-process key, so
// the forms of a page it rendered post back with the same certificate.
func (h *handler) certSession(r *http.Request) *store.Session {
	c := h.cfg.ClientCert(r)
	if c == nil || !h.adminCert(r) {
		return nil
	}
	mac := hmac.New(sha256.New, h.csrfKey[:])
	mac.Write(c.Raw)
	return &store.Session{ID: "cert", CSRF: base64.RawURLEncoding.EncodeToString(mac.Sum(nil)),
		Actor: "admin:cert:" + lanyardv1.FormatSerial(c.SerialNumber), ExpiresAt: c.NotAfter}
}

// adminCert reports whether the request came with a live admin client
// certificate: verified against the CA (Config.ClientCert), then
// admincred.Check (recorded, not revoked, not expired), on every request.
func (h *handler) adminCert(r *http.Request) bool {
	c := h.cfg.ClientCert(r)
	if c == nil {
		return false
	}
	if err := admincred.Check(h.cfg.Store, c, h.cfg.Now()); err != nil {
		if !errors.Is(err, admincred.ErrNotAdmin) {
			h.log.Warn("web: admin certificate refused", "remote", r.RemoteAddr, "err", err)
		}
		return false
	}
	return true
}

// auth wraps a page: a visitor without a session is sent to the login
// page (GET) or refused (POST); an admin certificate logs in at once on
// GET. POST bodies are capped at MaxFormBytes and must carry the
// session's CSRF token.
func (h *handler) auth(next func(http.ResponseWriter, *http.Request, *store.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead
		s, state := h.currentSession(r)
		if s == nil {
			s = h.certSession(r)
		}
		if s == nil {
			if safe {
				v := url.Values{"next": {r.URL.RequestURI()}}
				if state == sessionExpired {
					v.Set("expired", "1")
				}
				http.Redirect(w, r, "/admin/login?"+v.Encode(), http.StatusSeeOther)
				return
			}
			msg := "You are not logged in; nothing was changed. Log in and try again."
			if state == sessionExpired {
				msg = "Your session has expired; nothing was changed. Log in again and retry."
			}
			h.fail(w, r, nil, http.StatusForbidden, msg)
			return
		}
		if !safe {
			if !h.parseForm(w, r, s) {
				return
			}
			if !csrfOK(s, r.PostForm.Get("csrf")) {
				h.fail(w, r, s, http.StatusForbidden, "This form did not carry the security token of your current session (missing, stale or from another session); nothing was changed. Reload the page and try again.")
				return
			}
		}
		next(w, r, s)
	}
}

// parseForm reads a POST body of at most MaxFormBytes; it answers 413 or
// 400 itself and returns false when the body is unusable.
func (h *handler) parseForm(w http.ResponseWriter, r *http.Request, s *store.Session) bool {
	tooBig := fmt.Sprintf("The form is larger than %d KiB and was refused; nothing was changed.", MaxFormBytes>>10)
	if r.ContentLength > MaxFormBytes {
		h.fail(w, r, s, http.StatusRequestEntityTooLarge, tooBig)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.fail(w, r, s, http.StatusRequestEntityTooLarge, tooBig)
		} else {
			h.fail(w, r, s, http.StatusBadRequest, "The form could not be read; nothing was changed.")
		}
		return false
	}
	return true
}

// csrfOK compares the form's token with the session's in constant time.
func csrfOK(s *store.Session, got string) bool {
	return got != "" && s.CSRF != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) == 1
}

// safeNext keeps a post-login redirect on the admin page.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/admin/") && !strings.HasPrefix(next, "/admin/login") && cleanPath(strings.SplitN(next, "?", 2)[0]) {
		return next
	}
	return "/admin/"
}

// loginData is the login page's data.
type loginData struct{ Next string }

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if s, _ := h.currentSession(r); s != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if h.adminCert(r) {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	p := &page{Title: "Log in", Data: loginData{Next: next}}
	if r.URL.Query().Get("expired") != "" {
		p.Error = "Your session has expired; log in again."
	}
	if r.URL.Query().Get("out") != "" {
		p.Flash = "You are logged out."
	}
	h.render(w, http.StatusOK, "login", p)
}

func (h *handler) loginPost(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r, nil) {
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	again := func(status int, msg string) {
		h.render(w, status, "login", &page{Title: "Log in", Error: msg, Data: loginData{Next: next}})
	}
	src := sourceOf(r.RemoteAddr)
	if wait, ok := h.login.allow(src); !ok {
		secs := int(wait.Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		again(http.StatusTooManyRequests, fmt.Sprintf("Too many failed login attempts from your address; try again in %d s (the admin client certificate logs in at any time).", max(secs, 1)))
		return
	}
	if !h.login.acquire() {
		w.Header().Set("Retry-After", "1")
		again(http.StatusServiceUnavailable, "The server is checking other logins; try again in a second.")
		return
	}
	ok, err := CheckPassword(h.cfg.Store, r.PostForm.Get("password"))
	h.login.release()
	if err == nil {
		h.login.record(src, ok)
	}
	switch {
	case errors.Is(err, ErrNoPassword):
		again(http.StatusUnauthorized, "No admin password is set: run `lanyard admin passwd` on the server, or use the admin client certificate.")
		return
	case err != nil:
		h.internal(w, r, nil, "check the password", err)
		return
	case !ok:
		h.log.Warn("web: failed admin login", "remote", r.RemoteAddr)
		again(http.StatusUnauthorized, "Wrong password.")
		return
	}
	if _, err := h.newSession(w, r, "admin:password"); err != nil {
		h.internal(w, r, nil, "start a session", err)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := h.cfg.Store.DeleteSession(ctxWithoutCancel(r), sessionKey(c.Value)); err != nil {
			h.internal(w, r, s, "log out", err)
			return
		}
	}
	if s.ID == "cert" {
		// Nothing to end: the certificate authorises each request.
		http.Redirect(w, r, "/admin/", http.StatusSeeOther)
		return
	}
	if err := h.cfg.Store.AppendAudit(ctxWithoutCancel(r), &store.AuditEvent{At: h.cfg.Now(), Actor: s.Actor, Action: store.ActionLogout, Subject: "session:" + s.ID}); err != nil {
		h.log.Error("web: audit logout", "err", err)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/admin/login?out=1", http.StatusSeeOther)
}
