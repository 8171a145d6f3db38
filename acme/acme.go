// Package acme serves RFC 8555 ACME at /acme/<profile>/ on lanyard's TLS
// port, with External Account Binding required: an EAB key minted by the
// admin for one profile (optionally one CN) is the only way to open an
// account. Orders carry one dns identifier, the certificate's CN; http-01
// or tls-alpn-01 (RFC 8737) proves control of it; finalize turns the
// order into an issuance grant (issuance.Service.AuthorizeOrder) and
// issuance.Service.Issue signs and records it — there is no other signing path and no other store: ACME
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
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

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
	AuthorizeOrder(profile, cn string, dnsNames []string, actor, replaces string, consume func(serial string) []store.MetaWrite) (*issuance.Grant, error)
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
	// ValidationPort, TLSALPNPort and ResolveTo are for dev and tests
	// only (the composition root refuses them otherwise): the http-01 port
	// (default 80), the tls-alpn-01 port (default 443) and the host every
	// identifier resolves to for validation.
	ValidationPort int
	TLSALPNPort    int
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

// New returns the ACME handler, to be mounted at /acme/.
func New(cfg Config) *Server {
	cfg.Now = clock.Or(cfg.Now)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ValidationPort == 0 {
		cfg.ValidationPort = 80
	}
	if cfg.TLSALPNPort == 0 {
		cfg.TLSALPNPort = 443
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
	// Via is the challenge type that was tried ("": none yet, or a
	// record from before tls-alpn-01, which was http-01).
	Via string `json:"via,omitempty"`
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
		h = s.challenge(http01)
	case "chall-alpn":
		h = s.challenge(tlsALPN01)
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
