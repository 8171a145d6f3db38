package revocation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/store"
)

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
	// the rest of their lineages, each with its Revocation (the first one,
	// when it was already revoked).
	Certificates []*store.Cert
	// Changed is false when everything was already revoked.
	Changed bool
	// CRLNumber is the first CRL listing the certificates (every one that
	// has not expired).
	CRLNumber int64
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
		sn, _, err := lanyardv1.ParseSerial(serial)
		if err != nil {
			return "", "", fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		serial = sn
		return serial, "", nil
	}
	if len(cn) > 1024 || strings.ContainsRune(cn, 0) || !utf8.ValidString(cn) {
		return "", "", fmt.Errorf("%w: the CN is longer than 1024 bytes, or not UTF-8 text", ErrBadRequest)
	}
	return "", cn, nil
}

// Revoke revokes one certificate (req.Serial) or every unexpired,
// unrevoked certificate of req.CN, each with its whole lineage (see
// the package documentation), writes one audit event per certificate asked for, and returns
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
	seen := map[string]bool{}
	var revokeErr error
	for _, sn := range targets {
		root, err := s.lineageRoot(sn)
		if err != nil {
			revokeErr = err
			break
		}
		d := detail
		if root != sn {
			d += " lineage=" + root
		}
		ev := &store.AuditEvent{At: now, Actor: req.By, Action: AuditAction, Subject: sn, Detail: d}
		// Revoking the lineage's first certificate revokes it and every
		// renewal descending from it, in one transaction: the whole
		// lineage, up and down, including the side branches crash
		// retries leave. A renewal racing it either commits first (and is
		// revoked with it) or is refused.
		got, changed, err := s.st.Revoke(ctx, root, rev, ev)
		if err == nil && !slices.ContainsFunc(got, func(c *store.Cert) bool { return c.Serial == sn }) {
			// Already revoked: report the certificate asked for as it is.
			if c, gerr := s.st.GetCert(sn); gerr == nil {
				got = append(got, c)
			}
		}
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
		for _, c := range got {
			if !seen[c.Serial] {
				seen[c.Serial] = true
				res.Certificates = append(res.Certificates, c)
			}
		}
		res.Changed = res.Changed || changed
	}
	for _, c := range already {
		if !seen[c.Serial] {
			seen[c.Serial] = true
			res.Certificates = append(res.Certificates, c)
		}
	}
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

// maxLineage bounds the walk to a lineage's first certificate: a host
// renewing every five minutes (the shortest lifetime, issuance.MinTTL,
// renewed at half) for a year makes about 100,000 links. The bound only
// stops a damaged store (a loop of PreviousSerial) from hanging Revoke.
const maxLineage = 200_000

// lineageRoot returns the first certificate of serial's lineage, following
// PreviousSerial up. An ancestor missing from the store (tidied away after
// it expired) ends the walk: the oldest one still recorded is the root.
func (s *Service) lineageRoot(serial string) (root string, err error) {
	c, err := s.st.GetCert(serial)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("revoke %s: %w", serial, ErrNotFound)
		}
		return "", fmt.Errorf("revoke %s: %w", serial, err)
	}
	root = serial
	for i := 0; c.PreviousSerial != "" && i < maxLineage; i++ {
		p, err := s.st.GetCert(c.PreviousSerial)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("revoke %s: read ancestor %s: %w", serial, c.PreviousSerial, err)
		}
		c, root = p, p.Serial
	}
	return root, nil
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
