// Package issuance decides what lanyard signs. It owns profiles (which
// CNs, SANs, key types and lifetimes a token may get), enrollment tokens
// (single use, stored hashed), the server side of renewal (mTLS with the
// current certificate, and the ARI-style renewal windows), CSR checks,
// certificate templates, pre-issuance lint, and recording every
// certificate in the store before it is returned.
//
// There is one path to a leaf: an authorization (AuthorizeToken,
// AuthorizeRenewal) yields a Grant, and Issue checks the CSR against the
// grant and the profile as it is now, signs through package ca, and
// records the certificate in the transaction that consumes the
// authorization. Nothing else in the package, and nothing outside it,
// signs a leaf. A certificate's CN and SANs are the grant's, which the
// profile allows; a CSR may ask for no more than them.
package issuance

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/store"
)

// Sentinel errors callers branch on (the server maps them to Connect codes).
var (
	ErrTokenMalformed = errors.New("enrollment token is malformed")
	ErrTokenInvalid   = errors.New("enrollment token is unknown, used, expired or revoked")
	ErrBadCSR         = errors.New("invalid certificate request")
	ErrKeyType        = errors.New("key type not allowed")
	ErrNameNotAllowed = errors.New("name not allowed")
	ErrUnknownProfile = errors.New("unknown profile")
	ErrLint           = errors.New("certificate failed lint")
	// ErrBadTokenTTL: a token lifetime that is negative or over MaxTokenTTL.
	ErrBadTokenTTL = errors.New("invalid token lifetime")
)

// DefaultTokenTTL is how long an unused enrollment token stays valid: long
// enough to paste it on a host, short enough that a leaked one is useless
// by the next day.
const DefaultTokenTTL = time.Hour

// MaxTokenTTL bounds token lifetimes (a week covers shipping a machine).
const MaxTokenTTL = 7 * 24 * time.Hour

// Backdate is subtracted from NotBefore so a host whose clock is a little
// behind can use its certificate at once.
const Backdate = time.Minute

// Signer is the CA key that signs certificates (package ca's Authority).
// SignLeaf must be safe for concurrent use.
type Signer interface {
	SignLeaf(req ca.LeafRequest) ([]byte, *x509.Certificate, error)
	Intermediate() *x509.Certificate
}

// Store is what issuance needs of the store (package store's DB, or any
// engine passing its conformance suite). RedeemToken and InsertRenewal
// (and InsertCertSwap, InsertRenewalSwap) must record the certificate and consume the
// authorization (mark the token used, link the predecessor, mark the ACME
// order finalized) in one durable transaction, and fail
// writing nothing; concurrent redemptions of one token: exactly one
// succeeds.
type Store interface {
	PutToken(ctx context.Context, t *store.Token, ev *store.AuditEvent) error
	GetToken(id string) (*store.Token, error)
	GetCert(serial string) (*store.Cert, error)
	RedeemToken(ctx context.Context, tokenID string, tokenHash []byte, now time.Time, c *store.Cert, ev *store.AuditEvent) error
	InsertRenewal(ctx context.Context, prev string, c *store.Cert, ev *store.AuditEvent) error
	InsertCert(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error
	InsertCertSwap(ctx context.Context, c *store.Cert, ev *store.AuditEvent, writes []store.MetaWrite) error
	InsertRenewalSwap(ctx context.Context, prev string, c *store.Cert, ev *store.AuditEvent, writes []store.MetaWrite) error
}

// Service issues certificates. It is safe for concurrent use; profiles
// can be swapped at run time with SetProfiles.
type Service struct {
	signer   Signer
	db       Store
	now      func() time.Time
	log      *slog.Logger
	profiles atomic.Pointer[Profiles]
	crlDP    string
}

// Config builds a Service.
type Config struct {
	Signer   Signer
	Store    Store
	Profiles *Profiles
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// CRLDistributionPoint, when set, is the CRL URL put in every
	// certificate (an http:// URL, as RFC 5280 recommends).
	CRLDistributionPoint string
}

// New returns a Service after linting every profile's template.
func New(cfg Config) (*Service, error) {
	cfg.Now = clock.Or(cfg.Now)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{signer: cfg.Signer, db: cfg.Store, now: cfg.Now, log: cfg.Logger, crlDP: cfg.CRLDistributionPoint}
	if err := s.SetProfiles(cfg.Profiles); err != nil {
		return nil, err
	}
	return s, nil
}

// SetProfiles lints each profile's template (signed with a throwaway key
// under the real issuer's name) and, if all pass, makes them current.
func (s *Service) SetProfiles(ps *Profiles) error {
	for _, name := range ps.Names() {
		p, _ := ps.Get(name)
		if err := lintProfile(p, s.signer.Intermediate(), s.now()); err != nil {
			return fmt.Errorf("profile %q: %w", name, err)
		}
	}
	s.profiles.Store(ps)
	return nil
}

// Profiles returns the current profiles.
func (s *Service) Profiles() *Profiles { return s.profiles.Load() }

// Now returns the service clock's time.
func (s *Service) Now() time.Time { return s.now() }

// TokenRequest asks for an enrollment token.
type TokenRequest struct {
	CN       string
	Profile  string
	DNSNames []string
	TTL      time.Duration
	// By names the admin, for the audit log.
	By string
}

// CreateToken mints a single-use token bound to CN, profile and SANs. The
// secret is returned once; the store keeps its hash.
func (s *Service) CreateToken(ctx context.Context, req TokenRequest) (string, *store.Token, error) {
	p, err := s.Profiles().Get(req.Profile)
	if err != nil {
		return "", nil, err
	}
	if !p.AllowsCN(req.CN) {
		return "", nil, fmt.Errorf("%w: profile %q does not allow CN %q", ErrNameNotAllowed, p.Name, req.CN)
	}
	if err := p.CheckDNSNames(req.DNSNames); err != nil {
		return "", nil, err
	}
	ttl := req.TTL
	switch {
	case ttl < 0:
		return "", nil, fmt.Errorf("%w: %s is negative", ErrBadTokenTTL, ttl)
	case ttl == 0:
		ttl = DefaultTokenTTL
	case ttl > MaxTokenTTL:
		return "", nil, fmt.Errorf("%w: %s is over the maximum %s", ErrBadTokenTTL, ttl, MaxTokenTTL)
	}
	secret, err := NewTokenSecret()
	if err != nil {
		return "", nil, err
	}
	id, hash, err := ParseToken(secret)
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	tok := &store.Token{ID: id, Hash: hash, CN: req.CN, Profile: p.Name, DNSNames: slices.Clone(req.DNSNames),
		CreatedAt: now, ExpiresAt: now.Add(ttl), CreatedBy: req.By}
	ev := &store.AuditEvent{At: now, Actor: req.By, Action: store.ActionTokenCreate, Subject: id,
		Detail: fmt.Sprintf("cn=%s profile=%s ttl=%s", req.CN, p.Name, ttl)}
	if err := s.db.PutToken(ctx, tok, ev); err != nil {
		return "", nil, fmt.Errorf("store token: %w", err)
	}
	return secret, tok, nil
}

// Issued is a certificate that is in the store.
type Issued struct {
	Cert   *x509.Certificate
	DER    []byte
	Record *store.Cert
}

// ParseCSR parses and checks a DER PKCS#10 request: well formed, signed
// by its own key. Type and size checks against a profile come later.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if _, err := KeyType(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %v", ErrBadCSR, err)
	}
	return csr, nil
}

// checkCSRNames refuses a CSR asking for more than the token grants: a
// different CN, a DNS name the token lacks, or any IP, email or URI SAN.
func checkCSRNames(csr *x509.CertificateRequest, cn string, dns []string) error {
	if csr.Subject.CommonName != "" && csr.Subject.CommonName != cn {
		return fmt.Errorf("%w: CSR asks for CN %q, the token is for %q", ErrNameNotAllowed, csr.Subject.CommonName, cn)
	}
	for _, n := range csr.DNSNames {
		if !slices.Contains(dns, n) {
			return fmt.Errorf("%w: CSR asks for SAN %q, which the token does not grant", ErrNameNotAllowed, n)
		}
	}
	if len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return fmt.Errorf("%w: CSR asks for IP, email or URI SANs; lanyard issues DNS SANs only", ErrNameNotAllowed)
	}
	return nil
}

// Enroll redeems token for a certificate for the CSR's key:
// AuthorizeToken then Issue. The token is checked before any signing work
// and consumed atomically with the store write, so concurrent redemptions
// yield exactly one certificate.
func (s *Service) Enroll(ctx context.Context, token string, csrDER []byte) (*Issued, error) {
	g, err := s.AuthorizeToken(token)
	if err != nil {
		return nil, err
	}
	return s.Issue(ctx, g, csrDER)
}

func tokenUsable(t *store.Token, hash []byte, now time.Time) bool {
	if t == nil || !constantTimeEqual(t.Hash, hash) {
		return false
	}
	return t.UsedAt.IsZero() && !t.Revoked && now.Before(t.ExpiresAt)
}

// sign builds the certificate for cn/dns under profile p and signs it for
// pub, without recording it: only Issue calls it, and records the result
// before returning it to anyone. ttl 0 means the profile default.
func (s *Service) sign(p *Profile, cn string, dns []string, pub crypto.PublicKey, ttl time.Duration) (*Issued, error) {
	kt, err := p.AllowsKey(pub)
	if err != nil {
		return nil, err
	}
	now := s.now()
	sb, err := serials.next(now)
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	nb, na := now.Add(-Backdate), now.Add(p.TTL(ttl))
	if p.Config.Strict {
		tmpl := p.template(cn, dns, sb, nb, na)
		if s.crlDP != "" {
			tmpl.CRLDistributionPoints = []string{s.crlDP}
		}
		if err := lintWithThrowawayIssuer(tmpl, pub, s.signer.Intermediate()); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLint, err)
		}
	}
	der, cert, err := s.signer.SignLeaf(ca.LeafRequest{Serial: serialInt(sb), CommonName: cn, DNSNames: dns,
		NotBefore: nb, NotAfter: na, PublicKey: pub, CRLDistributionPoint: s.crlDP})
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	rec := &store.Cert{
		Serial: lanyardv1.FormatSerial(cert.SerialNumber), CN: cn, DNSNames: slices.Clone(dns), Profile: p.Name, KeyType: kt,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, IssuedAt: now, DER: der,
	}
	return &Issued{Cert: cert, DER: der, Record: rec}, nil
}
