package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/store"
)

// Sentinel errors callers branch on (with errors.Is).
var (
	// ErrUnknownReason: the reason code is not an RFC 5280 code allowed
	// for leaf certificates (see AllowedReasons).
	ErrUnknownReason = errors.New("unknown or disallowed revocation reason")
	// ErrNotFound: no such certificate. It wraps store.ErrNotFound.
	ErrNotFound = fmt.Errorf("certificate not found: %w", store.ErrNotFound)
	// ErrBadRequest: the request is malformed (no serial nor CN, both,
	// a serial that is not hex, no actor, an oversize comment, ...).
	ErrBadRequest = errors.New("bad revocation request")
	// ErrClosed: the Service has been closed.
	ErrClosed = errors.New("revocation service closed")
)

// Defaults and limits of Config and Request.
const (
	// DefaultValidity is the default time between a CRL's thisUpdate and
	// nextUpdate.
	DefaultValidity = 24 * time.Hour
	// DefaultCoalesce is the default time revocations are gathered into
	// one CRL.
	DefaultCoalesce = 50 * time.Millisecond
	// MinValidity is the shortest Validity New accepts.
	MinValidity = time.Minute
	// MaxCommentBytes caps Request.Comment.
	MaxCommentBytes = 1024
	// RolesAnywhereCRLLimit is the largest PEM CRL IAM Roles Anywhere
	// imports, in bytes (ImportCrl's crlData is 1 to 300000 bytes; see
	// shared/reference). It is lanyard's one definition of that limit: a
	// bigger CRL is still built, with a warning; package anchors refuses to
	// push it and the emulator refuses to import it.
	RolesAnywhereCRLLimit = 300000
	// AuditAction is the audit log action of a revocation.
	AuditAction = store.ActionRevoke
)

// CRLSigner is the CA (ca.Authority satisfies it): the intermediate key
// never leaves package ca, which encodes and signs the CRL.
type CRLSigner interface {
	// SignCRL signs a CRL with the intermediate, checks the signature and
	// returns its DER.
	SignCRL(ca.CRLRequest) ([]byte, error)
	// Intermediate is the issuing CA certificate.
	Intermediate() *x509.Certificate
}

// CRL is one signed CRL. Its fields must not be modified.
type CRL struct {
	// DER is the CRL as served at /crl; PEM the same as served at /crl.pem.
	DER, PEM []byte
	// Number is the CRL number extension's value.
	Number int64
	// ThisUpdate and NextUpdate are the CRL's validity (whole seconds, UTC).
	ThisUpdate, NextUpdate time.Time
	// Entries counts the revoked certificates listed.
	Entries int
	// Retired are the same CRL signed by each retired intermediate that
	// still has its key (after `lanyard ca rotate-intermediate`), so the
	// certificates they issued keep a CRL from their own issuer.
	Retired []IssuerCRL
	// listed holds the listed serials' bytes of a CRL adopted from the
	// leader (nil for CRLs built here); adopted CRLs are not published
	// (the leader does that).
	listed map[string]bool
}

// IssuerCRL is a CRL of one retired intermediate.
type IssuerCRL struct {
	// Issuer is the retired intermediate; DER and PEM its CRL.
	Issuer   *x509.Certificate
	DER, PEM []byte
}

// RetiredCRLSigner is implemented by a CRLSigner that also holds the
// keys of retired intermediates (package ca's Authority).
type RetiredCRLSigner interface {
	SignRetiredCRLs(ca.CRLRequest) ([]ca.IssuerCRL, error)
}

// RefreshAt is when a CRL is due to be replaced: 40% into its validity,
// comfortably before half, so a failed refresh has time to be retried.
func (c *CRL) RefreshAt() time.Time {
	return c.ThisUpdate.Add(c.NextUpdate.Sub(c.ThisUpdate) * 2 / 5)
}

// Config configures New.
type Config struct {
	// Store holds the certificates, the CRL number and the latest CRL.
	Store store.Store
	// Signer signs CRLs with the intermediate.
	Signer CRLSigner
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Validity is nextUpdate - thisUpdate (default 24h, at least MinValidity).
	Validity time.Duration
	// Coalesce is how long revocations are gathered into one CRL, from the
	// first of them (default 50ms; negative means no wait: revocations
	// that arrive while a CRL is being built still share the next one).
	// It is a latency bound measured with a real timer, not the clock.
	Coalesce time.Duration
	// DistributionPointURL is where the CRL is served (optional); it is
	// only reported (logs, DistributionPointURL).
	DistributionPointURL string
	// Logger (default slog.Default).
	Logger *slog.Logger
	// Leader, when set, says whether this replica builds CRLs (it holds
	// the store's leader lease). A replica that does not lead never takes
	// a CRL number: it serves the newest CRL the leader published in the
	// store (see Follow). Nil: always the leader (one process).
	Leader func() bool
}

// Service revokes certificates and keeps the CRL. Its methods are safe for
// concurrent use.
type Service struct {
	st       store.Store
	leader   func() bool
	signer   CRLSigner
	now      func() time.Time
	validity time.Duration
	coalesce time.Duration
	dpURL    string
	log      *slog.Logger

	cur atomic.Pointer[CRL]

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	entries  []*entry // append-only but for pruning, which copies
	bySerial map[string]*entry
	pending  *build // the next build, gathering requests
	urgent   bool   // pending was asked for without coalescing
	building bool   // a buildLoop goroutine runs
	kick     chan struct{}

	pubMu   sync.Mutex // serialises the hand-offs to pub (publish.go)
	pub     Publisher
	pubLast int64 // the newest CRL number pub was handed

	// onBuild, when set (tests), sees every CRL built, from the builder.
	onBuild func(*CRL)
}

// New loads the revoked certificates and the latest CRL from the store, or
// builds a CRL when there is none, it is not signed by Signer's
// intermediate, it is due for refresh, or it misses a revoked certificate
// (a crash between a revocation and its CRL). Current is never nil after
// New returns.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("revocation: no store")
	case cfg.Signer == nil:
		return nil, errors.New("revocation: no CRL signer")
	case cfg.Signer.Intermediate() == nil:
		return nil, errors.New("revocation: the signer has no intermediate certificate")
	}
	cfg.Now = clock.Or(cfg.Now)
	if cfg.Validity == 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Validity < MinValidity {
		return nil, fmt.Errorf("revocation: CRL validity %v is shorter than %v", cfg.Validity, MinValidity)
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = DefaultCoalesce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		st:       cfg.Store,
		leader:   cfg.Leader,
		signer:   cfg.Signer,
		now:      cfg.Now,
		validity: cfg.Validity,
		coalesce: cfg.Coalesce,
		dpURL:    cfg.DistributionPointURL,
		log:      cfg.Logger.With("component", "revocation"),
		bySerial: map[string]*entry{},
		kick:     make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	now := s.now()
	if _, err := s.reload(now); err != nil {
		s.cancel()
		return nil, fmt.Errorf("revocation: %w", err)
	}
	if crl, why := s.loadStored(now); crl != nil {
		s.cur.Store(crl)
		s.log.Info("CRL loaded", "number", crl.Number, "entries", crl.Entries, "this_update", crl.ThisUpdate, "next_update", crl.NextUpdate, "distribution_point", s.dpURL)
	} else {
		s.log.Info("building a CRL at start", "why", why)
		if _, err := s.buildCRL(context.Background(), s.entries); err != nil {
			s.cancel()
			return nil, fmt.Errorf("revocation: build the first CRL: %w", err)
		}
	}
	return s, nil
}

// Close stops the Service: pending and later revocations fail with
// ErrClosed once their store write is done, and Close waits for the build
// goroutine to return. It does not close the store.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.pubMu.Lock()
	s.cancel() // under pubMu: nothing is handed on after this
	s.pubMu.Unlock()
	s.wg.Wait()
	return nil
}

// Current is the newest CRL; never nil after New.
func (s *Service) Current() *CRL { return s.cur.Load() }

// DistributionPointURL is Config.DistributionPointURL.
func (s *Service) DistributionPointURL() string { return s.dpURL }
