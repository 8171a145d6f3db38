// Package acme serves RFC 8555 ACME at /acme/<profile>/ on lanyard's TLS
// port, with External Account Binding required: an EAB key minted by the
// admin for one profile (optionally one CN) is the only way to open an
// account. Orders carry one dns identifier, the certificate's CN; http-01
// proves control of it; finalize turns the order into an issuance grant
// (issuance.Service.AuthorizeOrder) and issuance.Service.Issue signs and
// records it — there is no other signing path and no other store: ACME
// state (EAB keys, accounts, orders, authorizations) lives in the store's
// Meta part. JWS is go.step.sm/crypto/jose.
//
// Several replicas on one store serve one ACME service. Every
// read-modify-write of ACME state is a conditional store write
// (store.SwapMeta): an EAB key is redeemed once, an authorization changes
// state once, and an order pays for exactly one certificate because
// finalize marks it in the transaction that records the certificate
// (store.InsertCertSwap), on any replica. Nonces are minted without a
// write: a nonce is its mint time, random bytes and an HMAC under a key
// every replica shares through the store (created once, at first use),
// so any replica accepts any replica's nonce; each replica refuses a
// nonce it has seen (single use per replica) or one older than
// NonceLifetime. A nonce replayed to another replica within that window
// is accepted there; that is the price of no store write per request,
// and it buys an attacker nothing the TLS connection and the store's
// single-use rules do not already refuse (see docs/ARCHITECTURE.md).
package acme

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.step.sm/crypto/jose"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

// MaxBody bounds a JWS request body: the largest legitimate one is a
// finalize with an RSA-4096 CSR (about 2 KiB base64) plus the JWS
// envelope; 64 KiB leaves ample room and refuses anything abusive.
const MaxBody = 64 << 10

// Lifetimes of ACME objects.
const (
	// OrderLifetime is how long an order (and its authorization) may be
	// completed: long enough for a client's retries, short enough that a
	// stale proof of control is not reused.
	OrderLifetime = time.Hour
	// NonceLifetime bounds how long an unused nonce is accepted.
	NonceLifetime = 10 * time.Minute
	// NonceSkew is how far in the future a nonce's mint time may be: the
	// replicas' clocks differ by a little.
	NonceSkew = time.Minute
	// MaxNonces bounds the set of used nonces a replica remembers; beyond
	// it the oldest is forgotten and every nonce minted before it is
	// refused from then on (its client gets badNonce and retries), so
	// forgetting never lets a nonce be used twice.
	MaxNonces = 1 << 16
	// nonceKeyMeta is where the replicas' shared nonce HMAC key lives.
	nonceKeyMeta = "acme/nonce-key"
)

// Issuer is the part of issuance the ACME server uses.
type Issuer interface {
	AuthorizeOrder(profile, cn string, dnsNames []string, actor string, consume func(serial string) []store.MetaWrite) (*issuance.Grant, error)
	Issue(ctx context.Context, g *issuance.Grant, csrDER []byte) (*issuance.Issued, error)
	Profiles() *issuance.Profiles
	RenewalInfo(serial string) (schedule.Window, error)
}

// Revoker is the revocation service.
type Revoker interface {
	Revoke(ctx context.Context, req revocation.Request) (*revocation.Result, error)
}

// Store is the part of the store ACME state goes through.
type Store interface {
	store.Meta
	GetCert(serial string) (*store.Cert, error)
	AppendAudit(ctx context.Context, ev *store.AuditEvent) error
}

// Config builds a Server.
type Config struct {
	Issuer     Issuer
	Revocation Revoker
	Store      Store
	// ChainPEM is the intermediate chain appended to every certificate.
	ChainPEM []byte
	Now      func() time.Time
	Logger   *slog.Logger
	// ValidationPort and ResolveTo are for dev and tests only (the
	// composition root refuses them otherwise): the http-01 port (default
	// 80) and the host every identifier resolves to for validation.
	ValidationPort int
	ResolveTo      string
	// Client fetches http-01 responses (default: 10 s timeout, no redirects
	// followed beyond Go's default of 10).
	Client *http.Client
}

// Server is the ACME handler.
type Server struct {
	cfg Config

	mu       sync.Mutex // the fields below
	nonceKey []byte
	seen     map[string]bool // nonces used at this replica
	used     []usedNonce     // seen, in the order used
	floor    time.Time       // nonces minted at or before it are refused
	// maxNonces is MaxNonces (tests lower it).
	maxNonces int
}

type usedNonce struct {
	nonce  string
	minted time.Time
}

// New returns the ACME handler, to be mounted at /acme/.
func New(cfg Config) *Server {
	cfg.Now = clock.Or(cfg.Now)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ValidationPort == 0 {
		cfg.ValidationPort = 80
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Server{cfg: cfg, seen: map[string]bool{}, maxNonces: MaxNonces}
}

// Problem is an RFC 8555 section 6.7 error.
type Problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

func (p *Problem) Error() string { return p.Type + ": " + p.Detail }

func prob(status int, typ, format string, a ...any) *Problem {
	return &Problem{Type: "urn:ietf:params:acme:error:" + typ, Detail: fmt.Sprintf(format, a...), Status: status}
}

// records, each JSON under a Meta key.
type eabKey struct {
	ID       string    `json:"id"`
	Key      []byte    `json:"key"`
	Profile  string    `json:"profile"`
	CN       string    `json:"cn,omitempty"`
	Reusable bool      `json:"reusable"`
	Used     bool      `json:"used"`
	Revoked  bool      `json:"revoked"`
	Created  time.Time `json:"created"`
}

type account struct {
	ID      string          `json:"id"`
	Profile string          `json:"profile"`
	JWK     json.RawMessage `json:"jwk"`
	EABKey  string          `json:"eab_key"`
	Status  string          `json:"status"`
}

type order struct {
	ID       string    `json:"id"`
	Account  string    `json:"account"`
	Profile  string    `json:"profile"`
	CN       string    `json:"cn"`
	Status   string    `json:"status"`
	Expires  time.Time `json:"expires"`
	Authz    string    `json:"authz"`
	Serial   string    `json:"serial,omitempty"`
	Replaces string    `json:"replaces,omitempty"`
	Error    *Problem  `json:"error,omitempty"`
}

type authz struct {
	ID      string    `json:"id"`
	Account string    `json:"account"`
	CN      string    `json:"cn"`
	Status  string    `json:"status"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

func key(kind, id string) string { return "acme/" + kind + "/" + id }

func (s *Server) get(kind, id string, v any) error { return s.cfg.Store.GetMeta(key(kind, id), v) }

// swap replaces the record kind/id, read as old, with v: store.ErrConflict
// if another writer (any replica) changed it first.
func (s *Server) swap(ctx context.Context, kind, id string, old, v any, ev *store.AuditEvent) error {
	return s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{{Key: key(kind, id), If: old, Value: v}}, ev)
}

// storeProblem answers a failed store write.
func storeProblem(err error) *Problem {
	if errors.Is(err, store.ErrConflict) {
		return prob(409, "malformed", "the resource changed while this request was handled; retry")
	}
	if errors.Is(err, store.ErrUnavailable) {
		return prob(503, "serverInternal", "store unavailable; retry")
	}
	return prob(500, "serverInternal", "store: %v", err)
}

func randID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// EAB describes an external account binding key, without its secret.
type EAB struct {
	ID       string
	Profile  string
	CN       string // "" : any CN the profile allows
	Reusable bool
	Used     bool
	Revoked  bool
	Created  time.Time
}

func (k *eabKey) view() *EAB {
	return &EAB{ID: k.ID, Profile: k.Profile, CN: k.CN, Reusable: k.Reusable, Used: k.Used, Revoked: k.Revoked, Created: k.Created}
}

// CreateEAB mints an EAB key for profile (optionally bound to cn, which
// the profile must allow); the HMAC key is returned once, base64url, and
// stored only in the store. by is audited.
func (s *Server) CreateEAB(ctx context.Context, profile, cn string, reusable bool, by string) (kid, hmacKey string, err error) {
	p, err := s.cfg.Issuer.Profiles().Get(profile)
	if err != nil {
		return "", "", err
	}
	cn = strings.ToLower(strings.TrimSpace(cn))
	if cn != "" {
		if err := p.CheckNames(cn, nil); err != nil {
			return "", "", err
		}
	}
	k := &eabKey{ID: randID(12), Key: make([]byte, 32), Profile: p.Name, CN: cn, Reusable: reusable, Created: s.cfg.Now()}
	_, _ = rand.Read(k.Key)
	ev := &store.AuditEvent{At: k.Created, Actor: by, Action: store.ActionACMEEABCreate, Subject: k.ID,
		Detail: fmt.Sprintf("profile=%s cn=%s reusable=%t", p.Name, cn, reusable)}
	if err := s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{{Key: key("eab", k.ID), IfAbsent: true, Value: k}}, ev); err != nil {
		return "", "", fmt.Errorf("store EAB key: %w", err)
	}
	return k.ID, base64.RawURLEncoding.EncodeToString(k.Key), nil
}

// ListEAB returns every EAB key (used and revoked ones too), newest first.
func (s *Server) ListEAB() ([]*EAB, error) {
	raw, err := s.cfg.Store.ListMeta(key("eab", ""))
	if err != nil {
		return nil, fmt.Errorf("list EAB keys: %w", err)
	}
	out := make([]*EAB, 0, len(raw))
	for k, v := range raw {
		var e eabKey
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("EAB key %s: %w", k, err)
		}
		out = append(out, e.view())
	}
	slices.SortFunc(out, func(a, b *EAB) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// RevokeEAB withdraws an EAB key: no new account may bind it (accounts
// already opened with it keep working; deactivate them or revoke their
// certificates). Revoking twice is not an error; an unknown kid is
// store.ErrNotFound.
func (s *Server) RevokeEAB(ctx context.Context, kid, by string) error {
	for {
		var k eabKey
		if err := s.get("eab", kid, &k); err != nil {
			return fmt.Errorf("EAB key %q: %w", kid, err)
		}
		if k.Revoked {
			return nil
		}
		old := k
		k.Revoked = true
		err := s.swap(ctx, "eab", kid, &old, &k, &store.AuditEvent{At: s.cfg.Now(), Actor: by, Action: store.ActionACMEEABRevoke, Subject: kid})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

// nonceMACKey returns the replicas' shared nonce key, creating it in the
// store at first use (the first replica to write it wins; the others read
// it).
func (s *Server) nonceMACKey() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nonceKey != nil {
		return s.nonceKey, nil
	}
	var k []byte
	err := s.cfg.Store.GetMeta(nonceKeyMeta, &k)
	if errors.Is(err, store.ErrNotFound) {
		k = make([]byte, 32)
		_, _ = rand.Read(k)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{{Key: nonceKeyMeta, IfAbsent: true, Value: k}}, nil)
		cancel()
		if errors.Is(err, store.ErrConflict) {
			err = s.cfg.Store.GetMeta(nonceKeyMeta, &k)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ACME nonce key: %w", err)
	}
	if len(k) < 32 {
		return nil, fmt.Errorf("ACME nonce key in the store is %d bytes, want 32", len(k))
	}
	s.nonceKey = k
	return k, nil
}

// nonceLen is mint time (8) + random (8) + HMAC-SHA256 truncated to 16.
const nonceLen = 8 + 8 + 16

func nonceMAC(k, body []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write(body)
	return m.Sum(nil)[:16]
}

func (s *Server) newNonce() (string, error) {
	k, err := s.nonceMACKey()
	if err != nil {
		return "", err
	}
	b := make([]byte, 16, nonceLen)
	binary.BigEndian.PutUint64(b, uint64(s.cfg.Now().UnixNano()))
	_, _ = rand.Read(b[8:16])
	return base64.RawURLEncoding.EncodeToString(append(b, nonceMAC(k, b)...)), nil
}

// useNonce accepts a nonce minted by any replica, once at this one.
func (s *Server) useNonce(n string) bool {
	k, err := s.nonceMACKey()
	if err != nil {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != nonceLen || !hmac.Equal(nonceMAC(k, b[:16]), b[16:]) {
		return false
	}
	minted := time.Unix(0, int64(binary.BigEndian.Uint64(b)))
	now := s.cfg.Now()
	if now.Sub(minted) >= NonceLifetime || minted.Sub(now) > NonceSkew {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[n] || !minted.After(s.floor) {
		return false
	}
	s.seen[n] = true
	s.used = append(s.used, usedNonce{n, minted})
	for len(s.used) > 0 && (len(s.used) > s.maxNonces || now.Sub(s.used[0].minted) >= NonceLifetime+NonceSkew) {
		if len(s.used) > s.maxNonces && s.used[0].minted.After(s.floor) {
			s.floor = s.used[0].minted
		}
		delete(s.seen, s.used[0].nonce)
		s.used = s.used[1:]
	}
	return true
}

// ServeHTTP routes /acme/<profile>/<op>[/<id>].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/acme/"), "/")
	w.Header().Set("Cache-Control", "no-store")
	nonce, err := s.newNonce()
	if err != nil {
		s.cfg.Logger.Error("acme nonce", "err", err)
		s.fail(w, prob(503, "serverInternal", "nonces unavailable; retry"))
		return
	}
	w.Header().Set("Replay-Nonce", nonce)
	if len(parts) < 2 {
		s.fail(w, prob(404, "malformed", "no such ACME resource"))
		return
	}
	profile, op := parts[0], parts[1]
	id := ""
	if len(parts) > 2 {
		id = parts[2]
	}
	if _, err := s.cfg.Issuer.Profiles().Get(profile); err != nil {
		s.fail(w, prob(404, "malformed", "no profile %q", profile))
		return
	}
	base := "https://" + r.Host + "/acme/" + profile
	w.Header().Add("Link", "<"+base+"/directory>;rel=\"index\"")
	switch {
	case op == "directory" && r.Method == http.MethodGet:
		writeJSON(w, 200, map[string]any{
			"newNonce": base + "/new-nonce", "newAccount": base + "/new-account", "newOrder": base + "/new-order",
			"revokeCert": base + "/revoke-cert", "renewalInfo": base + "/renewal-info", "keyChange": base + "/key-change",
			"meta": map[string]any{"externalAccountRequired": true},
		})
		return
	case op == "new-nonce" && (r.Method == http.MethodHead || r.Method == http.MethodGet):
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusNoContent)
		}
		return
	case op == "renewal-info" && r.Method == http.MethodGet:
		s.renewalInfo(w, id)
		return
	case r.Method != http.MethodPost:
		s.fail(w, prob(405, "malformed", "method %s not allowed here", r.Method))
		return
	}
	url := base + "/" + op
	if id != "" {
		url += "/" + id
	}
	req, p := s.verify(r, url, op == "new-account" || op == "revoke-cert")
	if p != nil {
		s.fail(w, p)
		return
	}
	req.profile, req.base, req.id, req.w = profile, base, id, w
	var h func(context.Context, *request) (int, any, *Problem)
	switch op {
	case "new-account":
		h = s.newAccount
	case "account":
		h = s.accountOp
	case "new-order":
		h = s.newOrder
	case "order":
		h = s.getOrder
	case "authz":
		h = s.getAuthz
	case "chall":
		h = s.challenge
	case "finalize":
		h = s.finalize
	case "cert":
		s.certificate(w, r.Context(), req)
		return
	case "revoke-cert":
		h = s.revokeCert
	case "key-change":
		h = s.keyChange
	default:
		s.fail(w, prob(404, "malformed", "no such ACME resource"))
		return
	}
	status, body, p := h(r.Context(), req)
	if p != nil {
		s.fail(w, p)
		return
	}
	writeJSON(w, status, body)
}

// BodyTooLarge answers a request body over the server's limit
// (server.BodyLimiter) as RFC 8555 asks of any error: a malformed problem
// document, with a fresh nonce so that the client can go on.
func (s *Server) BodyTooLarge(w http.ResponseWriter, _ *http.Request, detail string) {
	if n, err := s.newNonce(); err == nil {
		w.Header().Set("Replay-Nonce", n)
	}
	w.Header().Set("Cache-Control", "no-store")
	s.fail(w, prob(http.StatusRequestEntityTooLarge, "malformed", "%s", detail))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// request is a verified JWS request.
type request struct {
	payload           []byte
	jwk               *jose.JSONWebKey // embedded key (new-account, revoke-cert by key)
	acct              *account
	profile, base, id string
	w                 http.ResponseWriter
}

// verify checks the JWS: size, form, nonce (single use), url, signature
// by the account key (kid) or the embedded key (jwk, only where allowed).
func (s *Server) verify(r *http.Request, url string, jwkAllowed bool) (*request, *Problem) {
	if ct := r.Header.Get("Content-Type"); ct != "application/jose+json" {
		return nil, prob(415, "malformed", "content type must be application/jose+json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBody))
	if err != nil {
		return nil, prob(413, "malformed", "request body over %d bytes, or unreadable", MaxBody)
	}
	jws, err := jose.ParseJWS(string(body))
	if err != nil || len(jws.Signatures) != 1 {
		return nil, prob(400, "malformed", "not a flattened JWS with one signature")
	}
	h := jws.Signatures[0].Protected
	switch h.Algorithm {
	case "RS256", "ES256", "ES384", "ES512", "EdDSA", "PS256":
	default:
		return nil, prob(400, "badSignatureAlgorithm", "algorithm %q not accepted", h.Algorithm)
	}
	if !s.useNonce(h.Nonce) {
		return nil, prob(400, "badNonce", "nonce unknown, expired or already used")
	}
	if u, _ := h.ExtraHeaders["url"].(string); u != url {
		return nil, prob(401, "unauthorized", "JWS url %q is not the request URL %q", u, url)
	}
	req := &request{}
	var verifyKey any
	switch {
	case h.JSONWebKey != nil && h.KeyID == "":
		if !jwkAllowed {
			return nil, prob(400, "malformed", "this request must be signed by an account key (kid)")
		}
		if !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
			return nil, prob(400, "badPublicKey", "jwk is not a valid public key")
		}
		req.jwk, verifyKey = h.JSONWebKey, h.JSONWebKey
	case h.KeyID != "" && h.JSONWebKey == nil:
		prefix := strings.TrimSuffix(url[:strings.Index(url, "/acme/")], "/") + "/acme/"
		rest := strings.TrimPrefix(h.KeyID, prefix)
		parts := strings.Split(rest, "/")
		var a account
		if rest == h.KeyID || len(parts) != 3 || parts[1] != "account" || s.get("account", parts[2], &a) != nil {
			return nil, prob(400, "accountDoesNotExist", "no account %q", h.KeyID)
		}
		if a.Status != "valid" {
			return nil, prob(401, "unauthorized", "account is %s", a.Status)
		}
		if !strings.HasPrefix(url, prefix+a.Profile+"/") {
			return nil, prob(401, "unauthorized", "account belongs to another profile")
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(a.JWK); err != nil {
			return nil, prob(500, "serverInternal", "stored account key unreadable")
		}
		req.acct, verifyKey = &a, &k
	default:
		return nil, prob(400, "malformed", "exactly one of jwk and kid must be given")
	}
	payload, err := jws.Verify(verifyKey)
	if err != nil {
		return nil, prob(400, "malformed", "JWS signature does not verify")
	}
	req.payload = payload
	return req, nil
}

func (s *Server) acctURL(req *request, id string) string { return req.base + "/account/" + id }

func (s *Server) newAccount(ctx context.Context, req *request) (int, any, *Problem) {
	var in struct {
		Contact              []string        `json:"contact"`
		TermsOfServiceAgreed bool            `json:"termsOfServiceAgreed"`
		OnlyReturnExisting   bool            `json:"onlyReturnExisting"`
		EAB                  json.RawMessage `json:"externalAccountBinding"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a newAccount object")
	}
	if req.jwk == nil {
		return 0, nil, prob(400, "malformed", "newAccount must be signed with jwk")
	}
	thumb, err := req.jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return 0, nil, prob(400, "badPublicKey", "cannot hash the key")
	}
	acctID := base64.RawURLEncoding.EncodeToString(thumb)
	if existing := s.accountByKey(acctID); existing != nil && existing.Profile == req.profile {
		req.wHeader("Location", s.acctURL(req, existing.ID))
		return 200, acctJSON(existing, req), nil
	}
	if in.OnlyReturnExisting {
		return 0, nil, prob(400, "accountDoesNotExist", "no account for this key")
	}
	if len(in.EAB) == 0 {
		return 0, nil, prob(401, "externalAccountRequired", "an external account binding is required")
	}
	eab, err := jose.ParseJWS(string(in.EAB))
	if err != nil || len(eab.Signatures) != 1 {
		return 0, nil, prob(400, "malformed", "externalAccountBinding is not a JWS")
	}
	eh := eab.Signatures[0].Protected
	if eh.Algorithm != "HS256" && eh.Algorithm != "HS384" && eh.Algorithm != "HS512" {
		return 0, nil, prob(400, "malformed", "externalAccountBinding must be HMAC-signed")
	}
	if u, _ := eh.ExtraHeaders["url"].(string); u != req.base+"/new-account" {
		return 0, nil, prob(401, "unauthorized", "externalAccountBinding url is not the newAccount URL")
	}
	var k eabKey
	if eh.KeyID == "" || s.get("eab", eh.KeyID, &k) != nil || k.Revoked || (k.Used && !k.Reusable) {
		return 0, nil, prob(401, "unauthorized", "external account key unknown, revoked or used")
	}
	if k.Profile != req.profile {
		return 0, nil, prob(401, "unauthorized", "external account key belongs to another profile")
	}
	bound, err := eab.Verify(k.Key)
	if err != nil {
		return 0, nil, prob(401, "unauthorized", "externalAccountBinding signature does not verify")
	}
	jwkJSON, _ := req.jwk.MarshalJSON()
	var a, b any
	if json.Unmarshal(bound, &a) != nil || json.Unmarshal(jwkJSON, &b) != nil || !jsonEqual(a, b) {
		return 0, nil, prob(401, "unauthorized", "externalAccountBinding does not bind the account key")
	}
	acct := &account{ID: acctID, Profile: req.profile, JWK: jwkJSON, EABKey: k.ID, Status: "valid"}
	// One transaction, on any replica: the key is still as read (unused,
	// unrevoked) and becomes used, and the account is new.
	used := k
	used.Used = true
	err = s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{
		{Key: key("eab", k.ID), If: &k, Value: &used},
		{Key: key("account", acctID), IfAbsent: true, Value: acct},
		{Key: key("acctkey", acctID), IfAbsent: true, Delete: true}, // no account rolled over to this key
	}, &store.AuditEvent{At: s.cfg.Now(), Actor: "acme-eab:" + k.ID, Action: store.ActionACMEAccount, Subject: acctID,
		Detail: "profile=" + req.profile})
	if errors.Is(err, store.ErrConflict) {
		return 0, nil, prob(401, "unauthorized", "external account key used or revoked meanwhile, or the account exists; retry")
	}
	if err != nil {
		return 0, nil, storeProblem(err)
	}
	req.wHeader("Location", s.acctURL(req, acctID))
	return 201, acctJSON(acct, req), nil
}

// accountByKey finds the account whose current key has thumbprint thumb:
// through the index a keyChange writes, else the account the key opened
// (its ID is the thumbprint of its first key) if that is still its key.
func (s *Server) accountByKey(thumb string) *account {
	var id string
	if s.get("acctkey", thumb, &id) != nil {
		id = thumb
	}
	var a account
	if s.get("account", id, &a) != nil || jwkThumb(a.JWK) != thumb {
		return nil
	}
	return &a
}

// jwkThumb is the base64url RFC 7638 thumbprint of a stored key ("" if
// it does not parse).
func jwkThumb(raw json.RawMessage) string {
	var k jose.JSONWebKey
	if k.UnmarshalJSON(raw) != nil {
		return ""
	}
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(t)
}

// keyChange replaces the account's key (RFC 8555 section 7.3.5): the
// outer JWS is signed by the current key (kid), the inner one by the new
// key (jwk) over {account, oldKey}. The account keeps its URL; an index
// from the new key's thumbprint finds it for newAccount.
func (s *Server) keyChange(ctx context.Context, req *request) (int, any, *Problem) {
	if req.acct == nil {
		return 0, nil, prob(400, "malformed", "keyChange must be signed by the account's current key (kid)")
	}
	inner, err := jose.ParseJWS(string(req.payload))
	if err != nil || len(inner.Signatures) != 1 {
		return 0, nil, prob(400, "malformed", "keyChange payload is not a JWS with one signature")
	}
	ih := inner.Signatures[0].Protected
	if ih.JSONWebKey == nil || ih.KeyID != "" || !ih.JSONWebKey.Valid() || !ih.JSONWebKey.IsPublic() {
		return 0, nil, prob(400, "malformed", "the inner JWS must carry the new public key as jwk")
	}
	if u, _ := ih.ExtraHeaders["url"].(string); u != req.base+"/key-change" {
		return 0, nil, prob(400, "malformed", "the inner JWS url is not the keyChange URL")
	}
	payload, err := inner.Verify(ih.JSONWebKey)
	if err != nil {
		return 0, nil, prob(400, "malformed", "the inner JWS signature does not verify with the new key")
	}
	var kc struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if json.Unmarshal(payload, &kc) != nil || kc.Account != s.acctURL(req, req.acct.ID) {
		return 0, nil, prob(400, "malformed", "keyChange names another account")
	}
	oldThumb := jwkThumb(req.acct.JWK)
	if jwkThumb(kc.OldKey) != oldThumb || oldThumb == "" {
		return 0, nil, prob(400, "malformed", "oldKey is not the account's current key")
	}
	newJWK, _ := ih.JSONWebKey.MarshalJSON()
	newThumb := jwkThumb(newJWK)
	if newThumb == oldThumb {
		return 0, nil, prob(400, "malformed", "the new key is the current key")
	}
	if other := s.accountByKey(newThumb); other != nil {
		req.wHeader("Location", s.acctURL(req, other.ID))
		return 0, nil, prob(409, "malformed", "the new key belongs to another account")
	}
	old := *req.acct
	req.acct.JWK = newJWK
	writes := []store.MetaWrite{
		{Key: key("account", req.acct.ID), If: &old, Value: req.acct},
		{Key: key("acctkey", newThumb), IfAbsent: true, Value: req.acct.ID},
	}
	if oldThumb != req.acct.ID {
		writes = append(writes, store.MetaWrite{Key: key("acctkey", oldThumb), Delete: true})
	}
	err = s.cfg.Store.SwapMeta(ctx, writes, &store.AuditEvent{At: s.cfg.Now(), Actor: "acme:" + req.acct.ID,
		Action: store.ActionACMEKeyChange, Subject: req.acct.ID, Detail: "old=" + oldThumb + " new=" + newThumb})
	if errors.Is(err, store.ErrConflict) {
		return 0, nil, prob(409, "malformed", "the account or the new key changed meanwhile; retry")
	}
	if err != nil {
		return 0, nil, storeProblem(err)
	}
	req.wHeader("Location", s.acctURL(req, req.acct.ID))
	return 200, acctJSON(req.acct, req), nil
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return subtle.ConstantTimeCompare(x, y) == 1
}

func (r *request) wHeader(k, v string) { r.w.Header().Set(k, v) }

func acctJSON(a *account, req *request) map[string]any {
	return map[string]any{"status": a.Status, "orders": req.base + "/orders/" + a.ID}
}

func (s *Server) accountOp(ctx context.Context, req *request) (int, any, *Problem) {
	if req.id != req.acct.ID {
		return 0, nil, prob(403, "unauthorized", "not your account")
	}
	var in struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(req.payload, &in)
	if in.Status == "deactivated" && req.acct.Status != "deactivated" {
		old := *req.acct
		req.acct.Status = "deactivated"
		if err := s.swap(ctx, "account", req.acct.ID, &old, req.acct, nil); err != nil {
			return 0, nil, storeProblem(err)
		}
	}
	return 200, acctJSON(req.acct, req), nil
}

func (s *Server) orderJSON(o *order, req *request) map[string]any {
	m := map[string]any{
		"status": o.Status, "expires": o.Expires.UTC().Format(time.RFC3339),
		"identifiers":    []map[string]string{{"type": "dns", "value": o.CN}},
		"authorizations": []string{req.base + "/authz/" + o.Authz},
		"finalize":       req.base + "/finalize/" + o.ID,
	}
	if o.Serial != "" {
		m["certificate"] = req.base + "/cert/" + o.ID
	}
	if o.Replaces != "" {
		m["replaces"] = o.Replaces
	}
	if o.Error != nil {
		m["error"] = o.Error
	}
	return m
}

func (s *Server) newOrder(ctx context.Context, req *request) (int, any, *Problem) {
	if req.acct == nil {
		return 0, nil, prob(400, "malformed", "newOrder must be signed by an account")
	}
	var in struct {
		Identifiers []struct{ Type, Value string } `json:"identifiers"`
		NotBefore   string                         `json:"notBefore"`
		NotAfter    string                         `json:"notAfter"`
		Replaces    string                         `json:"replaces"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a newOrder object")
	}
	if len(in.Identifiers) != 1 || in.Identifiers[0].Type != "dns" {
		return 0, nil, prob(400, "rejectedIdentifier", "an order names exactly one dns identifier: the certificate's CN")
	}
	if in.NotBefore != "" || in.NotAfter != "" {
		return 0, nil, prob(400, "malformed", "notBefore/notAfter are set by the profile")
	}
	cn := strings.ToLower(in.Identifiers[0].Value)
	p, err := s.cfg.Issuer.Profiles().Get(req.acct.Profile)
	if err != nil || !p.AllowsCN(cn) {
		return 0, nil, prob(400, "rejectedIdentifier", "profile %q does not allow CN %q", req.acct.Profile, cn)
	}
	var k eabKey
	if s.get("eab", req.acct.EABKey, &k) == nil && k.CN != "" && k.CN != cn {
		return 0, nil, prob(400, "rejectedIdentifier", "this account's key is bound to CN %q", k.CN)
	}
	if in.Replaces != "" {
		serial, p := s.replacedSerial(in.Replaces)
		if p != nil {
			return 0, nil, p
		}
		rec, err := s.cfg.Store.GetCert(serial)
		if err != nil || rec.CN != cn || rec.Profile != req.acct.Profile {
			return 0, nil, prob(400, "malformed", "replaces names no certificate of CN %q under profile %q", cn, req.acct.Profile)
		}
		var by string
		if s.get("replaced", serial, &by) == nil {
			return 0, nil, prob(409, "alreadyReplaced", "certificate %s was already replaced by %s", serial, by)
		}
	}
	now := s.cfg.Now()
	o := &order{ID: randID(12), Account: req.acct.ID, Profile: req.acct.Profile, CN: cn, Status: "pending",
		Expires: now.Add(OrderLifetime), Authz: randID(12), Replaces: in.Replaces}
	az := &authz{ID: o.Authz, Account: req.acct.ID, CN: cn, Status: "pending", Token: randID(32), Expires: o.Expires}
	if err := s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{
		{Key: key("authz", az.ID), IfAbsent: true, Value: az},
		{Key: key("order", o.ID), IfAbsent: true, Value: o},
	}, nil); err != nil {
		return 0, nil, storeProblem(err)
	}
	req.wHeader("Location", req.base+"/order/"+o.ID)
	return 201, s.orderJSON(o, req), nil
}

// loadOrder returns the order as the client sees it (its status derived
// from its authorization and expiry) and as stored (the condition of a
// write that changes it).
func (s *Server) loadOrder(req *request) (view, stored *order, p *Problem) {
	var o order
	if req.acct == nil || s.get("order", req.id, &o) != nil || o.Account != req.acct.ID {
		return nil, nil, prob(404, "malformed", "no such order")
	}
	st := o
	if o.Status == "pending" || o.Status == "ready" {
		var a authz
		switch {
		case !s.cfg.Now().Before(o.Expires):
			o.Status = "invalid"
		case s.get("authz", o.Authz, &a) == nil && a.Status == "valid":
			o.Status = "ready"
		case a.Status == "invalid":
			o.Status = "invalid"
		}
	}
	return &o, &st, nil
}

func (s *Server) getOrder(_ context.Context, req *request) (int, any, *Problem) {
	o, _, p := s.loadOrder(req)
	if p != nil {
		return 0, nil, p
	}
	return 200, s.orderJSON(o, req), nil
}

func (s *Server) authzJSON(a *authz, req *request) map[string]any {
	ch := map[string]any{"type": "http-01", "url": req.base + "/chall/" + a.ID, "token": a.Token, "status": a.Status}
	if a.Status == "valid" {
		ch["status"] = "valid"
	}
	return map[string]any{
		"status": a.Status, "expires": a.Expires.UTC().Format(time.RFC3339),
		"identifier": map[string]string{"type": "dns", "value": a.CN},
		"challenges": []any{ch},
	}
}

func (s *Server) loadAuthz(req *request) (*authz, *Problem) {
	var a authz
	if req.acct == nil || s.get("authz", req.id, &a) != nil || a.Account != req.acct.ID {
		return nil, prob(404, "malformed", "no such authorization")
	}
	if a.Status == "pending" && !s.cfg.Now().Before(a.Expires) {
		a.Status = "expired"
	}
	return &a, nil
}

func (s *Server) getAuthz(_ context.Context, req *request) (int, any, *Problem) {
	a, p := s.loadAuthz(req)
	if p != nil {
		return 0, nil, p
	}
	return 200, s.authzJSON(a, req), nil
}

// challenge validates http-01 at once (synchronously): the client then
// polls the authorization, which is already final.
func (s *Server) challenge(ctx context.Context, req *request) (int, any, *Problem) {
	a, p := s.loadAuthz(req)
	if p != nil {
		return 0, nil, p
	}
	chURL := req.base + "/chall/" + a.ID
	if a.Status == "pending" {
		var k jose.JSONWebKey
		_ = k.UnmarshalJSON(req.acct.JWK)
		thumb, _ := k.Thumbprint(crypto.SHA256)
		want := a.Token + "." + base64.RawURLEncoding.EncodeToString(thumb)
		old := *a
		a.Status = "invalid"
		if err := s.fetchHTTP01(ctx, a.CN, a.Token, want); err == nil {
			a.Status = "valid"
		} else {
			s.cfg.Logger.Info("acme http-01 failed", "cn", a.CN, "err", err)
		}
		// A validation racing another (a retry on another replica): the
		// first outcome stands.
		if err := s.swap(ctx, "authz", a.ID, &old, a, nil); errors.Is(err, store.ErrConflict) {
			if a, p = s.loadAuthz(req); p != nil {
				return 0, nil, p
			}
		} else if err != nil {
			return 0, nil, storeProblem(err)
		}
	}
	req.wHeader("Link", "<"+req.base+"/authz/"+a.ID+">;rel=\"up\"")
	return 200, map[string]any{"type": "http-01", "url": chURL, "token": a.Token, "status": a.Status}, nil
}

func (s *Server) fetchHTTP01(ctx context.Context, cn, token, want string) error {
	host := cn
	if s.cfg.ResolveTo != "" {
		host = s.cfg.ResolveTo
	}
	u := "http://" + net.JoinHostPort(host, strconv.Itoa(s.cfg.ValidationPort)) + "/.well-known/acme-challenge/" + token
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	hr.Host = cn
	resp, err := s.cfg.Client.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
		return fmt.Errorf("http-01 at %s: status %d, wrong key authorization", u, resp.StatusCode)
	}
	return nil
}

func (s *Server) finalize(ctx context.Context, req *request) (int, any, *Problem) {
	o, stored, p := s.loadOrder(req)
	if p != nil {
		return 0, nil, p
	}
	var a authz
	if s.get("authz", o.Authz, &a) != nil || a.Status != "valid" || o.Status == "invalid" {
		return 0, nil, prob(403, "orderNotReady", "the order's authorization is not valid")
	}
	if o.Status == "valid" {
		return 0, nil, prob(403, "orderNotReady", "the order is already finalized")
	}
	var in struct {
		CSR string `json:"csr"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a finalize object")
	}
	der, err := base64.RawURLEncoding.DecodeString(in.CSR)
	if err != nil {
		return 0, nil, prob(400, "badCSR", "csr is not base64url")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return 0, nil, prob(400, "badCSR", "csr does not parse")
	}
	// lego and certbot put the identifier in the SANs and may leave the CN
	// empty; the certificate's CN is the order's, its SANs none or the CN.
	for _, n := range csr.DNSNames {
		if !strings.EqualFold(n, o.CN) {
			return 0, nil, prob(400, "badCSR", "csr names %q, which the order does not", n)
		}
	}
	if csr.Subject.CommonName != "" && !strings.EqualFold(csr.Subject.CommonName, o.CN) {
		return 0, nil, prob(400, "badCSR", "csr CN %q is not the order's %q", csr.Subject.CommonName, o.CN)
	}
	var dns []string
	if len(csr.DNSNames) > 0 {
		dns = []string{o.CN}
	}
	replaced := ""
	if o.Replaces != "" {
		if replaced, p = s.replacedSerial(o.Replaces); p != nil {
			return 0, nil, p
		}
	}
	// The order (as stored, unfinalized) becomes valid with the serial,
	// and the serial names its account, in the transaction that records
	// the certificate: a second finalize, on any replica, conflicts.
	consume := func(serial string) []store.MetaWrite {
		done := *o
		done.Status, done.Serial = "valid", serial
		w := []store.MetaWrite{
			{Key: key("order", o.ID), If: stored, Value: &done},
			{Key: key("cert", serial), IfAbsent: true, Value: o.Account},
		}
		if replaced != "" { // RFC 9773 section 5: a certificate is replaced once
			w = append(w, store.MetaWrite{Key: key("replaced", replaced), IfAbsent: true, Value: serial})
		}
		return w
	}
	g, err := s.cfg.Issuer.AuthorizeOrder(o.Profile, o.CN, dns, "acme:"+o.Account, consume)
	if err != nil {
		return 0, nil, prob(400, "rejectedIdentifier", "%v", err)
	}
	iss, err := s.cfg.Issuer.Issue(ctx, g, der)
	switch {
	case errors.Is(err, store.ErrConflict):
		var by string
		if replaced != "" && s.get("replaced", replaced, &by) == nil {
			return 0, nil, prob(409, "alreadyReplaced", "certificate %s was replaced by %s meanwhile", replaced, by)
		}
		return 0, nil, prob(403, "orderNotReady", "the order was finalized by another request")
	case errors.Is(err, issuance.ErrBadCSR) || errors.Is(err, issuance.ErrNameNotAllowed) || errors.Is(err, issuance.ErrKeyType):
		return 0, nil, prob(400, "badCSR", "%v", err)
	case errors.Is(err, store.ErrUnavailable):
		return 0, nil, storeProblem(err)
	case err != nil:
		return 0, nil, prob(500, "serverInternal", "issue: %v", err)
	}
	o.Status, o.Serial = "valid", iss.Record.Serial
	req.wHeader("Location", req.base+"/order/"+o.ID)
	return 200, s.orderJSON(o, req), nil
}

func (s *Server) certificate(w http.ResponseWriter, _ context.Context, req *request) {
	o, _, p := s.loadOrder(req)
	if p == nil && o.Serial == "" {
		p = prob(404, "malformed", "order has no certificate")
	}
	if p != nil {
		s.fail(w, p)
		return
	}
	rec, err := s.cfg.Store.GetCert(o.Serial)
	if err != nil {
		s.fail(w, prob(500, "serverInternal", "certificate record: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: rec.DER})
	_, _ = w.Write(s.cfg.ChainPEM)
}

// revokeCert revokes through the revocation service, for the account
// whose order got the certificate, or for the certificate's own key.
func (s *Server) revokeCert(ctx context.Context, req *request) (int, any, *Problem) {
	var in struct {
		Certificate string `json:"certificate"`
		Reason      int    `json:"reason"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a revokeCert object")
	}
	der, err := base64.RawURLEncoding.DecodeString(in.Certificate)
	if err != nil {
		return 0, nil, prob(400, "malformed", "certificate is not base64url")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return 0, nil, prob(400, "malformed", "certificate does not parse")
	}
	serial := lanyardv1.FormatSerial(cert.SerialNumber)
	rec, err := s.cfg.Store.GetCert(serial)
	if err != nil || !hmac.Equal(rec.DER, der) {
		return 0, nil, prob(404, "malformed", "not a certificate of this CA")
	}
	by := ""
	switch {
	case req.acct != nil:
		if rec.Profile != req.acct.Profile || !s.accountOrdered(req.acct.ID, serial) {
			return 0, nil, prob(403, "unauthorized", "this account did not order the certificate")
		}
		by = "acme:" + req.acct.ID
	case req.jwk != nil:
		if !keyEqual(req.jwk.Key, cert.PublicKey) {
			return 0, nil, prob(403, "unauthorized", "jwk is not the certificate's key")
		}
		by = "acme-certkey:" + serial
	}
	if rec.Revocation != nil {
		return 0, nil, prob(400, "alreadyRevoked", "certificate already revoked")
	}
	if _, err := s.cfg.Revocation.Revoke(ctx, revocation.Request{Serial: serial, Reason: in.Reason, By: by}); err != nil {
		if errors.Is(err, revocation.ErrBadRequest) {
			return 0, nil, prob(400, "badRevocationReason", "%v", err)
		}
		return 0, nil, prob(500, "serverInternal", "revoke: %v", err)
	}
	return 200, struct{}{}, nil
}

func keyEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// accountOrdered reports whether the account's order produced serial
// (finalize records serial → account).
func (s *Server) accountOrdered(acct, serial string) bool {
	var got string
	return s.get("cert", serial, &got) == nil && got == acct
}

// replacedSerial decodes an RFC 9773 certificate identifier
// (base64url(AKI) "." base64url(serial)) into a serial in store form.
func (s *Server) replacedSerial(id string) (string, *Problem) {
	aki, ser, ok := strings.Cut(id, ".")
	_, err1 := base64.RawURLEncoding.DecodeString(aki)
	b, err2 := base64.RawURLEncoding.DecodeString(ser)
	if !ok || err1 != nil || err2 != nil || len(b) == 0 {
		return "", prob(400, "malformed", "not a certificate identifier: %q", id)
	}
	return lanyardv1.FormatSerial(new(big.Int).SetBytes(b)), nil
}

// renewalInfo answers RFC 9773 from issuance's renewal window (the one the
// agent follows): a revoked certificate's window is now.
func (s *Server) renewalInfo(w http.ResponseWriter, id string) {
	serial, p := s.replacedSerial(id)
	if p != nil {
		s.fail(w, p)
		return
	}
	win, err := s.cfg.Issuer.RenewalInfo(serial)
	if err != nil {
		s.fail(w, prob(404, "malformed", "no certificate %s", serial))
		return
	}
	// "Renew now" (revoked, or the profile no longer issues it) is a
	// window that has just ended: RFC 9773 section 4.2 has clients renew
	// at once for a window in the past, where one starting now would let
	// them pick a moment in it.
	if win.Reason == schedule.ReasonRevoked || win.Reason == schedule.ReasonProfileChanged {
		now := s.cfg.Now()
		win.Start, win.End = now.Add(-time.Minute), now
	}
	w.Header().Set("Retry-After", "21600")
	writeJSON(w, 200, map[string]any{"suggestedWindow": map[string]string{
		"start": win.Start.UTC().Format(time.RFC3339), "end": win.End.UTC().Format(time.RFC3339)}})
}
