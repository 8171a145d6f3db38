package revocation

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	// imports (bytes); a bigger CRL is still built, with a warning.
	RolesAnywhereCRLLimit = 300000
	// AuditAction is the audit log action of a revocation.
	AuditAction = "revoke"
)

const (
	// metaKey is where the latest CRL's DER is kept in the store.
	metaKey = "revocation.crl"
	// directEncodeMin is the entry count from which the CRL is encoded
	// directly when the signer allows it (see KeySigner); smaller CRLs
	// go through SignCRL.
	directEncodeMin = 1000
	// runMaxWait caps how long Run sleeps between looks at the clock, so a
	// clock that jumps (suspend, an injected clock) is noticed.
	runMaxWait = time.Minute
	// runRetry is how long Run waits after a failed refresh.
	runRetry = 30 * time.Second
)

// CRLSigner is the CA (ca.Authority satisfies it).
type CRLSigner interface {
	// SignCRL signs a CRL template with the intermediate and returns its DER.
	SignCRL(*x509.RevocationList) ([]byte, error)
	// Intermediate is the issuing CA certificate.
	Intermediate() *x509.Certificate
}

// Publisher receives every new CRL (the anchors sync pushes it to the
// Roles Anywhere trust anchor at once). It is called from a goroutine of
// the Service, never concurrently with itself; it must not block for long
// (it may queue). When CRLs are built faster than it returns, only the
// newest is handed on.
type Publisher interface {
	// PublishCRL hands on crl; ctx ends when the Service is closed.
	PublishCRL(ctx context.Context, crl *CRL)
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
}

// RefreshAt is when a CRL is due to be replaced: 40% into its validity,
// comfortably before half, so a failed refresh has time to be retried.
func (c *CRL) RefreshAt() time.Time {
	return c.ThisUpdate.Add(c.NextUpdate.Sub(c.ThisUpdate) * 2 / 5)
}

// Config configures New.
type Config struct {
	// Store holds the certificates, the CRL number and the latest CRL.
	Store *store.DB
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
}

// Request asks to revoke one certificate (Serial) or every unexpired,
// unrevoked certificate of a common name (CN); exactly one must be set.
type Request struct {
	// Serial is the certificate serial in hex (upper or lower case, colons
	// allowed; shorter serials are left-padded to lanyard's 32 digits).
	Serial string
	// CN is a subject common name.
	CN string
	// Reason is an RFC 5280 reason code from AllowedReasons (0: unspecified).
	Reason int
	// Comment is a free-text note for the audit log (at most
	// MaxCommentBytes of UTF-8).
	Comment string
	// By names who revokes ("admin:alice", "cert:<serial>"); required.
	By string
}

// Result reports a revocation.
type Result struct {
	// Certificates are the records revoked: the certificates asked for and
	// the renewals descending from them, each with its Revocation (the
	// first one, when it was already revoked).
	Certificates []*store.Cert
	// Changed is false when everything was already revoked.
	Changed bool
	// CRLNumber is the first CRL listing the certificates (every one that
	// has not expired).
	CRLNumber int64
}

// entry is one revoked certificate as the CRL lists it.
type entry struct {
	key      string // string(serial.Bytes()): compares with parsed CRLs
	serial   *big.Int
	notAfter time.Time
	at       time.Time
	reason   int
	der      []byte // the encoded revokedCertificates entry
	// build is the first build listing this entry; nil when the CRL loaded
	// or built by New lists it. Guarded by Service.mu.
	build *build
}

// build is one CRL build that revocations wait for.
type build struct {
	done chan struct{}
	crl  *CRL  // set before done is closed
	err  error // likewise
}

func (b *build) failed() bool {
	select {
	case <-b.done:
		return b.err != nil
	default:
		return false
	}
}

// Service revokes certificates and keeps the CRL. Its methods are safe for
// concurrent use.
type Service struct {
	st        *store.DB
	signer    CRLSigner
	keySigner KeySigner // nil: always SignCRL
	algID     []byte
	directMin int
	now       func() time.Time
	validity  time.Duration
	coalesce  time.Duration
	dpURL     string
	log       *slog.Logger

	cur atomic.Pointer[CRL]
	pub atomic.Pointer[publisherBox]

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

	pubMu      sync.Mutex
	pubNext    *CRL
	publishing bool

	// onBuild, when set (tests), sees every CRL built, from the builder.
	onBuild func(*CRL)
}

type publisherBox struct{ p Publisher }

// storedCRL is the meta record of the latest CRL.
type storedCRL struct {
	DER []byte `json:"der"`
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
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
		st:        cfg.Store,
		signer:    cfg.Signer,
		directMin: directEncodeMin,
		now:       cfg.Now,
		validity:  cfg.Validity,
		coalesce:  cfg.Coalesce,
		dpURL:     cfg.DistributionPointURL,
		log:       cfg.Logger.With("component", "revocation"),
		bySerial:  map[string]*entry{},
		kick:      make(chan struct{}, 1),
	}
	s.keySigner, s.algID = directAlgID(cfg.Signer)
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
// and publish goroutines to return. It does not close the store.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.pubMu.Lock()
	s.pubNext = nil
	s.cancel() // under pubMu: publish starts no goroutine after this
	s.pubMu.Unlock()
	s.wg.Wait()
	return nil
}

// Current is the newest CRL; never nil after New.
func (s *Service) Current() *CRL { return s.cur.Load() }

// DistributionPointURL is Config.DistributionPointURL.
func (s *Service) DistributionPointURL() string { return s.dpURL }

// SetPublisher sets (or, with nil, clears) the Publisher and hands it the
// current CRL, so a trust anchor catches up at start.
func (s *Service) SetPublisher(p Publisher) {
	s.pub.Store(&publisherBox{p: p})
	if p != nil {
		s.publish(s.Current())
	}
}

// reload merges the store's revoked, unexpired certificates into the
// in-memory set and returns those it added. Revocations are never undone,
// so the union is always right, whatever revocations ran meanwhile.
func (s *Service) reload(now time.Time) ([]*entry, error) {
	certs, err := s.st.RevokedUnexpired(now)
	if err != nil {
		return nil, fmt.Errorf("read revoked certificates: %w", err)
	}
	fresh := make([]*entry, 0, len(certs))
	for _, c := range certs {
		e, err := newEntry(c)
		if err != nil {
			return nil, err
		}
		fresh = append(fresh, e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	added := fresh[:0]
	for _, e := range fresh {
		if _, ok := s.bySerial[e.key]; !ok {
			s.bySerial[e.key] = e
			s.entries = append(s.entries, e)
			added = append(added, e)
		}
	}
	return added, nil
}

func newEntry(c *store.Cert) (*entry, error) {
	if c.Revocation == nil {
		return nil, fmt.Errorf("certificate %s is not revoked", c.Serial)
	}
	raw, err := hex.DecodeString(c.Serial)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: bad serial: %w", c.Serial, err)
	}
	n := new(big.Int).SetBytes(raw)
	der, err := encodeEntry(n, c.Revocation.At, c.Revocation.Reason)
	if err != nil {
		return nil, err
	}
	return &entry{
		key:      string(n.Bytes()),
		serial:   n,
		notAfter: c.NotAfter,
		at:       c.Revocation.At,
		reason:   c.Revocation.Reason,
		der:      der,
	}, nil
}

// loadStored returns the persisted CRL if it can keep serving, or nil and
// why not.
func (s *Service) loadStored(now time.Time) (*CRL, string) {
	var m storedCRL
	if err := s.st.GetMeta(metaKey, &m); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, "no CRL stored"
		}
		return nil, fmt.Sprintf("read stored CRL: %v", err)
	}
	rl, err := x509.ParseRevocationList(m.DER)
	if err != nil {
		return nil, fmt.Sprintf("parse stored CRL: %v", err)
	}
	if err := rl.CheckSignatureFrom(s.signer.Intermediate()); err != nil {
		return nil, "stored CRL is not signed by the current intermediate"
	}
	if rl.Number == nil || !rl.Number.IsInt64() {
		return nil, "stored CRL has no usable number"
	}
	crl := &CRL{
		DER:        m.DER,
		PEM:        pemCRL(m.DER),
		Number:     rl.Number.Int64(),
		ThisUpdate: rl.ThisUpdate.UTC(),
		NextUpdate: rl.NextUpdate.UTC(),
		Entries:    len(rl.RevokedCertificateEntries),
	}
	if now.Before(crl.ThisUpdate.Add(-5*time.Minute)) || !now.Before(crl.RefreshAt()) {
		return nil, fmt.Sprintf("stored CRL %d is not current (thisUpdate %v)", crl.Number, crl.ThisUpdate)
	}
	listed := make(map[string]bool, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		listed[string(e.SerialNumber.Bytes())] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if e.notAfter.After(now) && !listed[e.key] {
			return nil, fmt.Sprintf("stored CRL %d does not list revoked certificate %032x", crl.Number, e.serial)
		}
	}
	return crl, ""
}

// validate checks a request and returns the normalised serial or CN.
func validate(req Request) (serial, cn string, err error) {
	serial, cn = strings.TrimSpace(req.Serial), strings.TrimSpace(req.CN)
	switch {
	case serial == "" && cn == "":
		return "", "", fmt.Errorf("%w: give the serial or the CN of the certificate to revoke", ErrBadRequest)
	case serial != "" && cn != "":
		return "", "", fmt.Errorf("%w: give a serial or a CN, not both", ErrBadRequest)
	}
	if err := checkReason(req.Reason); err != nil {
		return "", "", err
	}
	if strings.TrimSpace(req.By) == "" {
		return "", "", fmt.Errorf("%w: say who revokes (By), for the audit log", ErrBadRequest)
	}
	if len(req.Comment) > MaxCommentBytes || !utf8.ValidString(req.Comment) {
		return "", "", fmt.Errorf("%w: the comment must be UTF-8 text of at most %d bytes", ErrBadRequest, MaxCommentBytes)
	}
	if serial != "" {
		serial = strings.ToLower(strings.ReplaceAll(serial, ":", ""))
		if len(serial) > 40 {
			return "", "", fmt.Errorf("%w: serial %q is longer than 20 bytes", ErrBadRequest, req.Serial)
		}
		if len(serial) < 32 {
			serial = strings.Repeat("0", 32-len(serial)) + serial
		} else if len(serial)%2 == 1 {
			serial = "0" + serial
		}
		if _, err := hex.DecodeString(serial); err != nil {
			return "", "", fmt.Errorf("%w: serial %q is not hexadecimal", ErrBadRequest, req.Serial)
		}
		return serial, "", nil
	}
	if len(cn) > 1024 || strings.ContainsRune(cn, 0) || !utf8.ValidString(cn) {
		return "", "", fmt.Errorf("%w: the CN is longer than 1024 bytes, or not UTF-8 text", ErrBadRequest)
	}
	return "", cn, nil
}

// Revoke revokes one certificate (req.Serial), with every renewal
// descending from it, or every unexpired, unrevoked certificate of
// req.CN, writes one audit event per certificate asked for, and returns
// once a CRL listing them is current. Revoking again is idempotent: the
// first reason and time are kept, Changed is false and no CRL is built.
// Bad input fails with ErrBadRequest, ErrUnknownReason or ErrNotFound and
// changes nothing. If the revocation is recorded but its CRL cannot be
// built, the error says so; the next CRL will list it.
func (s *Service) Revoke(ctx context.Context, req Request) (*Result, error) {
	serial, cn, err := validate(req)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var targets []string
	var already []*store.Cert
	if serial != "" {
		targets = []string{serial}
	} else {
		targets, already, err = s.byCN(cn, now)
		if err != nil {
			return nil, err
		}
	}
	rev := store.Revocation{At: now, Reason: req.Reason, Comment: req.Comment, By: req.By}
	detail := fmt.Sprintf("reason=%s", ReasonName(req.Reason))
	if cn != "" {
		detail += fmt.Sprintf(" cn=%q", cn)
	}
	if req.Comment != "" {
		detail += fmt.Sprintf(" comment=%q", req.Comment)
	}
	res := &Result{}
	var revokeErr error
	for _, sn := range targets {
		ev := &store.AuditEvent{At: now, Actor: req.By, Action: AuditAction, Subject: sn, Detail: detail}
		got, changed, err := s.st.Revoke(ctx, sn, rev, ev)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				revokeErr = fmt.Errorf("revoke %s: %w", sn, ErrNotFound)
			} else {
				revokeErr = fmt.Errorf("revoke %s: %w", sn, err)
			}
			break
		}
		if changed {
			s.log.Info("certificate revoked", "serial", sn, "with_renewals", len(got), "reason", ReasonName(req.Reason), "by", req.By)
		}
		res.Certificates = append(res.Certificates, got...)
		res.Changed = res.Changed || changed
	}
	res.Certificates = append(res.Certificates, already...)
	if len(res.Certificates) == 0 {
		return nil, revokeErr
	}
	n, err := s.awaitListed(ctx, res.Certificates, now)
	if revokeErr != nil {
		return nil, fmt.Errorf("%w (%d certificate(s) revoked before it will be in the next CRL)", revokeErr, len(res.Certificates))
	}
	if err != nil {
		return nil, fmt.Errorf("revoked %d certificate(s), but no CRL lists them yet: %w", len(res.Certificates), err)
	}
	res.CRLNumber = n
	return res, nil
}

// byCN returns the unexpired certificates of cn still to revoke, and those
// already revoked.
func (s *Service) byCN(cn string, now time.Time) (todo []string, already []*store.Cert, err error) {
	serials, err := s.st.SerialsByCN(cn)
	if err != nil {
		return nil, nil, fmt.Errorf("revoke CN %q: %w", cn, err)
	}
	for _, sn := range serials {
		c, err := s.st.GetCert(sn)
		if err != nil {
			return nil, nil, fmt.Errorf("revoke CN %q: read %s: %w", cn, sn, err)
		}
		switch {
		case !c.NotAfter.After(now):
		case c.Revocation != nil:
			already = append(already, c)
		default:
			todo = append(todo, sn)
		}
	}
	if len(todo) == 0 && len(already) == 0 {
		return nil, nil, fmt.Errorf("revoke CN %q: no unexpired certificate: %w", cn, ErrNotFound)
	}
	return todo, already, nil
}

// awaitListed adds revoked certificates to the in-memory set, asks for a
// CRL when one of them is not listed yet (or its build failed), and waits
// until every one is listed. It returns the number of the first CRL
// listing them all. Certificates expired at now need no CRL.
func (s *Service) awaitListed(ctx context.Context, certs []*store.Cert, now time.Time) (int64, error) {
	s.mu.Lock()
	var mine, ask []*entry
	for _, c := range certs {
		if c.Revocation == nil || !c.NotAfter.After(now) {
			continue
		}
		e, err := newEntry(c)
		if err != nil {
			s.mu.Unlock()
			return 0, err
		}
		if old, ok := s.bySerial[e.key]; ok {
			mine = append(mine, old)
			if old.build != nil && old.build.failed() {
				ask = append(ask, old)
			}
			continue
		}
		s.bySerial[e.key] = e
		s.entries = append(s.entries, e)
		mine = append(mine, e)
		ask = append(ask, e)
	}
	if len(ask) > 0 {
		b := s.requestLocked(false)
		for _, e := range ask {
			e.build = b
		}
	}
	var waits []*build
	for _, e := range mine {
		if e.build != nil {
			waits = append(waits, e.build)
		}
	}
	s.mu.Unlock()
	if len(waits) == 0 {
		return s.Current().Number, nil
	}
	var n int64
	for _, b := range waits {
		crl, err := b.wait(ctx)
		if err != nil {
			return 0, err
		}
		n = max(n, crl.Number)
	}
	return n, nil
}

func (b *build) wait(ctx context.Context) (*CRL, error) {
	select {
	case <-b.done:
		return b.crl, b.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// requestLocked joins the pending build (starting the builder if idle)
// and returns it. urgent skips the coalescing wait. s.mu must be held.
func (s *Service) requestLocked(urgent bool) *build {
	if s.closed {
		b := &build{done: make(chan struct{}), err: ErrClosed}
		close(b.done)
		return b
	}
	if s.pending == nil {
		s.pending = &build{done: make(chan struct{})}
	}
	b := s.pending
	if urgent {
		s.urgent = true
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	if !s.building {
		s.building = true
		s.wg.Add(1)
		go s.buildLoop()
	}
	return b
}

// buildLoop builds CRLs while requests are pending, one at a time, and
// exits when none is left. Each build lists every entry added before it
// took its snapshot, and is the build all those requests wait for.
func (s *Service) buildLoop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		urgent := s.urgent
		s.mu.Unlock()
		if !urgent && s.coalesce > 0 {
			t := time.NewTimer(s.coalesce)
			select {
			case <-t.C:
			case <-s.kick:
			case <-s.ctx.Done():
			}
			t.Stop()
		}
		s.mu.Lock()
		b := s.pending
		if b == nil {
			s.building = false
			s.mu.Unlock()
			return
		}
		s.pending, s.urgent = nil, false
		select {
		case <-s.kick:
		default:
		}
		snap := s.entries
		s.mu.Unlock()

		if s.ctx.Err() != nil {
			b.err = ErrClosed
		} else {
			b.crl, b.err = s.buildCRL(s.ctx, snap)
		}
		if b.err != nil {
			s.log.Error("CRL build failed", "err", b.err)
		} else if s.onBuild != nil {
			s.onBuild(b.crl)
		}
		close(b.done)
		if b.err == nil {
			s.publish(b.crl)
			s.prune(b.crl.ThisUpdate)
		}
	}
}

// prune drops entries that expired by t: no CRL from t on lists them.
func (s *Service) prune(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	expired := 0
	for _, e := range s.entries {
		if !e.notAfter.After(t) {
			expired++
		}
	}
	if expired == 0 {
		return
	}
	kept := make([]*entry, 0, len(s.entries)-expired)
	for _, e := range s.entries {
		if e.notAfter.After(t) {
			kept = append(kept, e)
		} else {
			delete(s.bySerial, e.key)
		}
	}
	s.entries = kept
}

// buildCRL numbers, encodes, signs and persists a CRL listing the
// unexpired entries of snap, and makes it current. Only one runs at a
// time (New, then buildLoop).
func (s *Service) buildCRL(ctx context.Context, snap []*entry) (*CRL, error) {
	start := time.Now()
	thisUpdate := s.now().UTC().Truncate(time.Second)
	nextUpdate := thisUpdate.Add(s.validity)
	live := make([]*entry, 0, len(snap))
	for _, e := range snap {
		if e.notAfter.After(thisUpdate) {
			live = append(live, e)
		}
	}
	// The number is durable before anything is signed with it, so no two
	// CRLs ever carry one number, even across a crash.
	n, err := s.st.NextCRLNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("next CRL number: %w", err)
	}
	if cur := s.Current(); cur != nil && n <= cur.Number {
		return nil, fmt.Errorf("CRL number %d from the store is not after the current CRL's %d", n, cur.Number)
	}
	der, err := s.sign(n, thisUpdate, nextUpdate, live)
	if err != nil {
		return nil, fmt.Errorf("CRL %d: %w", n, err)
	}
	crl := &CRL{DER: der, PEM: pemCRL(der), Number: n, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Entries: len(live)}
	if err := s.st.PutMeta(ctx, metaKey, storedCRL{DER: der}); err != nil {
		// The CRL is signed and right: serve it. A restart rebuilds.
		s.log.Error("CRL not persisted", "number", n, "err", err)
	}
	s.cur.Store(crl)
	s.log.Info("CRL built", "number", n, "entries", len(live), "der_bytes", len(der), "pem_bytes", len(crl.PEM),
		"next_update", nextUpdate, "took", time.Since(start), "distribution_point", s.dpURL)
	if len(crl.PEM) > RolesAnywhereCRLLimit {
		s.log.Warn("CRL is larger than IAM Roles Anywhere imports", "pem_bytes", len(crl.PEM), "limit", RolesAnywhereCRLLimit)
	}
	return crl, nil
}

// sign encodes and signs the CRL: directly from the encoded entries when
// the signer allows it and the CRL is large, else through SignCRL.
func (s *Service) sign(n int64, thisUpdate, nextUpdate time.Time, live []*entry) ([]byte, error) {
	issuer := s.signer.Intermediate()
	if s.keySigner != nil && len(live) >= s.directMin {
		ders := make([][]byte, len(live))
		size := 0
		for i, e := range live {
			ders[i] = e.der
			size += len(e.der)
		}
		tbs, err := encodeTBS(s.algID, issuer, n, thisUpdate, nextUpdate, ders, size)
		if err != nil {
			return nil, err
		}
		return signTBS(s.keySigner, issuer, tbs)
	}
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(n),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: make([]x509.RevocationListEntry, len(live)),
	}
	for i, e := range live {
		tmpl.RevokedCertificateEntries[i] = x509.RevocationListEntry{SerialNumber: e.serial, RevocationTime: e.at, ReasonCode: e.reason}
	}
	der, err := s.signer.SignCRL(tmpl)
	if err != nil {
		return nil, err
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parse the signed CRL: %w", err)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("the signed CRL does not verify against the intermediate: %w", err)
	}
	return der, nil
}

func pemCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// Rebuild re-reads the revoked certificates from the store (catching any
// revoked behind the Service's back), builds a new CRL at once and returns
// it.
func (s *Service) Rebuild(ctx context.Context) (*CRL, error) {
	added, err := s.reload(s.now())
	if err != nil {
		return nil, fmt.Errorf("rebuild CRL: %w", err)
	}
	s.mu.Lock()
	b := s.requestLocked(true)
	for _, e := range added {
		e.build = b
	}
	s.mu.Unlock()
	crl, err := b.wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild CRL: %w", err)
	}
	return crl, nil
}

// Tick rebuilds the CRL when, at now, it is due (see CRL.RefreshAt) and
// reports whether it did. Run calls it; tests call it with their clock.
func (s *Service) Tick(ctx context.Context, now time.Time) (bool, error) {
	if now.Before(s.Current().RefreshAt()) {
		return false, nil
	}
	if _, err := s.Rebuild(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// Run keeps the CRL fresh until ctx ends: it sleeps until the current
// CRL's refresh time by the Service's clock (looking at the clock at least
// every minute) and then calls Tick, retrying after a failure.
func (s *Service) Run(ctx context.Context) {
	for ctx.Err() == nil {
		wait := s.Current().RefreshAt().Sub(s.now())
		if wait <= 0 {
			if _, err := s.Tick(ctx, s.now()); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("CRL refresh failed", "err", err, "retry_in", runRetry)
				wait = runRetry
			} else {
				wait = max(s.Current().RefreshAt().Sub(s.now()), time.Second)
			}
		}
		t := time.NewTimer(min(wait, runMaxWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// publish hands crl to the Publisher from the publishing goroutine,
// starting it when idle. A newer CRL replaces one not yet handed on.
func (s *Service) publish(crl *CRL) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	if s.pubNext == nil || crl.Number >= s.pubNext.Number {
		s.pubNext = crl
	}
	if !s.publishing {
		s.publishing = true
		s.wg.Add(1)
		go s.publishLoop()
	}
}

func (s *Service) publishLoop() {
	defer s.wg.Done()
	for {
		s.pubMu.Lock()
		crl := s.pubNext
		s.pubNext = nil
		if crl == nil {
			s.publishing = false
			s.pubMu.Unlock()
			return
		}
		s.pubMu.Unlock()
		if box := s.pub.Load(); box != nil && box.p != nil {
			s.callPublisher(box.p, crl)
		}
	}
}

func (s *Service) callPublisher(p Publisher, crl *CRL) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("CRL publisher panicked", "number", crl.Number, "panic", r)
		}
	}()
	p.PublishCRL(s.ctx, crl)
}
