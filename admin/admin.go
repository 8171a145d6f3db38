// Package admin is the one service behind the CA's two admin faces, the
// Connect AdminService (package server) and the admin web page (package
// web): enrollment tokens, ACME external account binding keys, the
// certificate list, revocation, the audit log and the dashboard's counts. Both faces decode their input, call one
// method here and encode the answer; neither reaches into the store, so
// what one shows the other shows too, and an error one reports the other
// reports. Who may call (the admin certificate, a web session) is the
// faces' business; By fields name the caller for the audit log.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lanyard/lanyard/acme"
	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

// AuditTokenRevoke is the audit action of an admin withdrawing a token.
const AuditTokenRevoke = store.ActionTokenRevoke

// ErrNotFound: no such certificate, token or EAB key.
var ErrNotFound = errors.New("not found")

// ErrNoACME: the service was built without the ACME server.
var ErrNoACME = errors.New("admin: no ACME server configured")

// ErrNoAnchors: the trust-anchor sync is not configured (anchors.enabled
// is off), so there is no status to show.
var ErrNoAnchors = errors.New("admin: the IAM Roles Anywhere trust-anchor sync is not configured (anchors.enabled)")

// Store is what the admin service reads and writes directly (everything
// else goes through the issuance and revocation services).
type Store interface {
	ListUnusedTokens(now time.Time) ([]*store.Token, error)
	RevokeToken(ctx context.Context, id string, ev *store.AuditEvent) error
	GetCert(serial string) (*store.Cert, error)
	ListCerts(q store.CertQuery) ([]*store.Cert, string, error)
	CountCerts(now time.Time, hours int) (*store.Counts, error)
	ListAudit(q store.AuditQuery) ([]*store.AuditEvent, string, error)
	// GetMeta reads the trust-anchor sync's persisted status.
	GetMeta(key string, v any) error
}

// Service carries out admin requests. Safe for concurrent use.
type Service struct {
	st   Store
	iss  *issuance.Service
	rev  *revocation.Service
	acme *acme.Server
	// anchorTargets are the trust-anchor targets (nil: no sync).
	anchorTargets []string
	now           func() time.Time
}

// Config builds a Service.
type Config struct {
	Store      Store
	Issuance   *issuance.Service
	Revocation *revocation.Service
	// ACME holds the EAB keys (nil: the EAB calls fail with ErrNoACME).
	ACME *acme.Server
	// AnchorTargets names the trust-anchor sync's targets, the default
	// ("") first; nil when the sync is not configured (AnchorStatus then
	// fails with ErrNoAnchors).
	AnchorTargets []string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	cfg.Now = clock.Or(cfg.Now)
	return &Service{st: cfg.Store, iss: cfg.Issuance, rev: cfg.Revocation, acme: cfg.ACME, anchorTargets: cfg.AnchorTargets, now: cfg.Now}
}

// Now returns the service clock's time (what "valid" and "expired" are
// judged at).
func (s *Service) Now() time.Time { return s.now() }

// Profiles returns the current profiles (names for the forms).
func (s *Service) Profiles() *issuance.Profiles { return s.iss.Profiles() }

// CreateToken mints an enrollment token (issuance.Service.CreateToken).
func (s *Service) CreateToken(ctx context.Context, req issuance.TokenRequest) (secret string, tok *store.Token, err error) {
	return s.iss.CreateToken(ctx, req)
}

// ListTokens returns the tokens neither used, revoked nor expired, newest
// first.
func (s *Service) ListTokens() ([]*store.Token, error) {
	toks, err := s.st.ListUnusedTokens(s.now())
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return toks, nil
}

// RevokeToken withdraws an unused token. It fails with ErrNotFound for an
// unknown id and store.ErrTokenUsed for a token already redeemed (revoke
// the certificate it paid for instead).
func (s *Service) RevokeToken(ctx context.Context, id, by string) error {
	ev := &store.AuditEvent{At: s.now(), Actor: by, Action: AuditTokenRevoke, Subject: id}
	err := s.st.RevokeToken(ctx, id, ev)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// CertQuery selects certificates. Serial, when set, looks up that one
// certificate (lower-case hex, as the store keys it) and the other fields
// filter it; otherwise they search, one page at a time.
type CertQuery struct {
	Serial   string
	CNPrefix string
	Profile  string
	Status   string
	// After is the page token from the previous page's answer.
	After string
	// Limit caps the page (store default and maximum apply).
	Limit int
}

// ListCertificates returns one page of certificates matching q and the
// next page's token ("" at the end). A serial that names no certificate
// is an empty answer, not an error; a damaged page token fails with
// ErrNotFound; any other store error is returned.
func (s *Service) ListCertificates(q CertQuery) ([]*store.Cert, string, error) {
	now := s.now()
	if q.Serial != "" {
		c, err := s.st.GetCert(q.Serial)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, "", nil
		case err != nil:
			return nil, "", fmt.Errorf("look up certificate %s: %w", q.Serial, err)
		case strings.HasPrefix(c.CN, q.CNPrefix) &&
			(q.Profile == "" || c.Profile == q.Profile) && (q.Status == "" || c.Status(now) == q.Status):
			return []*store.Cert{c}, "", nil
		}
		return nil, "", nil
	}
	certs, next, err := s.st.ListCerts(store.CertQuery{CNPrefix: q.CNPrefix, Profile: q.Profile, Status: q.Status,
		After: q.After, Limit: q.Limit, Now: now})
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", fmt.Errorf("page token %q: %w", q.After, ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("search certificates: %w", err)
	}
	return certs, next, nil
}

// GetCertificate returns the record of serial, or ErrNotFound.
func (s *Service) GetCertificate(serial string) (*store.Cert, error) {
	c, err := s.st.GetCert(serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("certificate %q: %w", serial, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", serial, err)
	}
	return c, nil
}

// Revoke revokes a certificate (with its lineage) or every certificate of
// a CN (revocation.Service.Revoke).
func (s *Service) Revoke(ctx context.Context, req revocation.Request) (*revocation.Result, error) {
	return s.rev.Revoke(ctx, req)
}

// ListAudit returns one page of audit events, newest first, and the next
// page's token.
func (s *Service) ListAudit(q store.AuditQuery) ([]*store.AuditEvent, string, error) {
	evs, next, err := s.st.ListAudit(q)
	if err != nil {
		return nil, "", fmt.Errorf("read the audit log: %w", err)
	}
	return evs, next, nil
}

// Counts summarises the certificates for the dashboard: by status, by
// profile, and valid ones expiring in each of the next hours.
func (s *Service) Counts(hours int) (*store.Counts, error) {
	c, err := s.st.CountCerts(s.now(), hours)
	if err != nil {
		return nil, fmt.Errorf("count certificates: %w", err)
	}
	return c, nil
}

// CRL returns the newest CRL (what /crl serves).
func (s *Service) CRL() *revocation.CRL { return s.rev.Current() }

// EABRequest asks for an ACME external account binding key.
type EABRequest struct {
	// Profile ("" : the default profile) and CN ("" : any the profile
	// allows) bound the accounts the key opens; Reusable keys open any
	// number of them, others one.
	Profile, CN string
	Reusable    bool
	// By names the caller for the audit log.
	By string
}

// CreateEABKey mints an EAB key (acme.Server.CreateEAB): its ID, its
// HMAC key (base64url, shown once) and the profile it is bound to. An
// unknown profile is issuance.ErrUnknownProfile, a CN the profile does
// not allow issuance.ErrNameNotAllowed.
func (s *Service) CreateEABKey(ctx context.Context, req EABRequest) (kid, hmacKey, profile string, err error) {
	if s.acme == nil {
		return "", "", "", ErrNoACME
	}
	profile = req.Profile
	if profile == "" {
		profile = s.iss.Profiles().Default
	}
	kid, hmacKey, err = s.acme.CreateEAB(ctx, profile, req.CN, req.Reusable, req.By)
	if err != nil {
		return "", "", "", fmt.Errorf("create EAB key: %w", err)
	}
	return kid, hmacKey, profile, nil
}

// CertificateACMEAccount returns the ACME account that ordered the
// certificate serial (acme.Server.CertAccount): nil if no ACME order did,
// or the service has no ACME server.
func (s *Service) CertificateACMEAccount(serial string) (*acme.Account, error) {
	if s.acme == nil {
		return nil, nil
	}
	return s.acme.CertAccount(serial)
}

// ListEABKeys returns every EAB key, newest first, without secrets.
func (s *Service) ListEABKeys() ([]*acme.EAB, error) {
	if s.acme == nil {
		return nil, ErrNoACME
	}
	return s.acme.ListEAB()
}

// RevokeEABKey withdraws an EAB key (idempotent); ErrNotFound for an
// unknown one.
func (s *Service) RevokeEABKey(ctx context.Context, kid, by string) error {
	if s.acme == nil {
		return ErrNoACME
	}
	err := s.acme.RevokeEAB(ctx, kid, by)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("EAB key %q: %w", kid, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke EAB key %s: %w", kid, err)
	}
	return nil
}

// AnchorTarget is the recorded trust-anchor sync status of one target.
type AnchorTarget struct {
	// Target names it ("" for the default target).
	Target string
	// Status is what its sync last persisted (nil: nothing yet).
	Status *anchors.Status
}

// AnchorStatus returns the recorded status of every trust-anchor target,
// the default first. It reads the store, where the sync persists every
// change of its status (anchors.StatusKeyFor): the one source, so every
// replica of a shared store answers with what the leader's sync did, and
// the CLI and the admin page show the same. ErrNoAnchors when the sync is
// not configured.
func (s *Service) AnchorStatus() ([]AnchorTarget, error) {
	if s.anchorTargets == nil {
		return nil, ErrNoAnchors
	}
	out := make([]AnchorTarget, 0, len(s.anchorTargets))
	for _, target := range s.anchorTargets {
		st, err := anchors.LoadStatusFor(s.st, target)
		switch {
		case errors.Is(err, anchors.ErrNoStatus):
			st = nil
		case err != nil:
			return nil, fmt.Errorf("trust-anchor target %q: %w", target, err)
		}
		out = append(out, AnchorTarget{Target: target, Status: st})
	}
	return out, nil
}
