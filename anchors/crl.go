package anchors

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"

	"github.com/lanyard/lanyard/revocation"
)

// MaxCRLBytes is the largest CRL (PEM) Roles Anywhere imports
// (revocation.RolesAnywhereCRLLimit, the one definition).
const MaxCRLBytes = revocation.RolesAnywhereCRLLimit

// pushAttempts bounds the attempts of one background CRL push; after them
// the push is given up (and recorded) until the next CRL or Run's next
// check.
const pushAttempts = 8

var _ revocation.Publisher = (*Syncer)(nil)

// PublishCRL implements revocation.Publisher, the one way CRLs reach the
// Syncer: it queues crl and returns at once; a background goroutine
// pushes it to the trust anchor immediately (ImportCrl, enabled, the first
// time; UpdateCrl after), retrying with backoff on throttling and server
// errors and stopping at final errors.
//
// The queue is latest-wins and never goes backwards: it holds one CRL,
// the newest not yet pushed; a CRL arriving while a push is in flight
// replaces the queued one (a retry in progress gives way to it), and a CRL
// older than the newest the Syncer was handed is dropped. So when pushes
// are slower than CRL production the trust anchor gets the newest CRL,
// skipping the ones in between, and never an older one after a newer.
// Run's periodic check re-queues the newest CRL when AWS's copy is
// missing, older or different. A CRL over MaxCRLBytes is refused:
// logged, and recorded in the status with its entry count.
func (s *Syncer) PublishCRL(_ context.Context, crl *revocation.CRL) {
	if crl == nil {
		return
	}
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	if s.closed || s.latest != nil && crl.Number < s.latest.Number {
		return
	}
	s.latest = crl
	s.queueLocked(crl)
}

// queueLocked makes crl the next CRL to push (crlMu held), starting the
// push goroutine when idle.
func (s *Syncer) queueLocked(crl *revocation.CRL) {
	if s.pending == nil || crl.Number >= s.pending.Number {
		s.pending = crl
	}
	if !s.pushing {
		s.pushing = true
		s.wg.Add(1)
		go s.pushLoop()
	}
}

func (s *Syncer) pushLoop() {
	defer s.wg.Done()
	for {
		s.crlMu.Lock()
		crl := s.pending
		s.pending = nil
		if crl == nil || s.closed {
			s.pushing = false
			s.crlMu.Unlock()
			return
		}
		s.crlMu.Unlock()
		s.pushWithRetry(crl)
		s.crlMu.Lock()
		close(s.pushDone)
		s.pushDone = make(chan struct{})
		s.crlMu.Unlock()
	}
}

// pushWithRetry pushes crl until it succeeds, fails finally, a newer CRL
// is queued (which is pushed instead), or the Syncer closes.
func (s *Syncer) pushWithRetry(crl *revocation.CRL) {
	backoff := s.minBackoff
	for attempt := 1; ; attempt++ {
		err := s.PushCRL(s.base, crl)
		if err == nil {
			return
		}
		if !Retryable(err) || attempt >= pushAttempts {
			s.log.Error("anchors: CRL not pushed to the trust anchor", "number", crl.Number, "entries", crl.Entries,
				"attempts", attempt, "err", err)
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("anchors: CRL push failed, retrying", "number", crl.Number, "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-s.base.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
		s.crlMu.Lock()
		if s.pending != nil && s.pending.Number > crl.Number {
			s.crlMu.Unlock()
			return // a newer CRL supersedes this one; pushLoop takes it
		}
		s.crlMu.Unlock()
	}
}

// WaitCRL waits until the CRL numbered at least n has reached AWS and that
// is recorded in the store (what admin.Service.AnchorStatus reads), or a
// push of such a CRL has failed, or ctx ends. It returns the status then.
func (s *Syncer) WaitCRL(ctx context.Context, n int64) (Status, error) {
	for {
		s.crlMu.Lock()
		done := s.pushDone
		s.crlMu.Unlock()
		st := s.Status()
		if st.CRLNumber >= n {
			return s.persistedStatus(), nil
		}
		if st.CRLErrorNumber >= n && st.CRLError != "" {
			s.crlMu.Lock()
			idle := !s.pushing
			s.crlMu.Unlock()
			if idle {
				return st, errors.New(st.CRLError)
			}
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RemoteCRL is the CRL a trust anchor holds.
type RemoteCRL struct {
	// Arn and ID name it; Name is its name.
	Arn, ID, Name string
	// Enabled: Roles Anywhere checks it.
	Enabled bool
	// Number is its CRL number (0 if it has none or does not parse).
	Number int64
	// ThisUpdate and NextUpdate are its validity.
	ThisUpdate, NextUpdate time.Time
	// Entries counts the certificates it lists.
	Entries int
	// Data is the CRL as imported.
	Data []byte
	// UpdatedAt is when AWS last changed it.
	UpdatedAt time.Time
}

// RemoteCRL returns lanyard's CRL on the trust anchor: the one with the
// configured name (or, failing that, the only CRL of the anchor); nil if
// the anchor has none.
func (s *Syncer) RemoteCRL(ctx context.Context) (*RemoteCRL, error) {
	anchor := s.TrustAnchorARN()
	if anchor == "" {
		return nil, fmt.Errorf("anchors: %w yet: run a sync first", ErrNoTrustAnchor)
	}
	var mine []types.CrlDetail
	var token *string
	for {
		out, err := s.api.ListCrls(ctx, &rolesanywhere.ListCrlsInput{NextToken: token})
		if err != nil {
			return nil, fmt.Errorf("anchors: list CRLs: %w", err)
		}
		for _, c := range out.Crls {
			if aws.ToString(c.TrustAnchorArn) == anchor {
				mine = append(mine, c)
			}
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		token = out.NextToken
	}
	var pick *types.CrlDetail
	for i := range mine {
		if aws.ToString(mine[i].Name) == s.cfg.Name {
			pick = &mine[i]
			break
		}
	}
	if pick == nil && len(mine) == 1 {
		pick = &mine[0]
	}
	if pick == nil {
		return nil, nil
	}
	r := &RemoteCRL{Arn: aws.ToString(pick.CrlArn), ID: aws.ToString(pick.CrlId), Name: aws.ToString(pick.Name),
		Enabled: aws.ToBool(pick.Enabled), Data: pick.CrlData, UpdatedAt: aws.ToTime(pick.UpdatedAt)}
	if l := parseCRL(pick.CrlData); l != nil {
		r.ThisUpdate, r.NextUpdate, r.Entries = l.ThisUpdate, l.NextUpdate, len(l.RevokedCertificateEntries)
		if l.Number != nil && l.Number.IsInt64() {
			r.Number = l.Number.Int64()
		}
	}
	return r, nil
}

func parseCRL(data []byte) *x509.RevocationList {
	der := data
	if b, _ := pem.Decode(data); b != nil {
		der = b.Bytes
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil
	}
	return l
}

// PushCRL pushes crl to the trust anchor now, once (the SDK retryer still
// retries each call on throttling): ImportCrl (enabled) when the anchor
// has no lanyard CRL, else UpdateCrl, and EnableCrl if it was disabled.
// It refuses, with ErrCRLTooLarge, a CRL whose PEM is over MaxCRLBytes.
// The outcome is recorded in the status.
func (s *Syncer) PushCRL(ctx context.Context, crl *revocation.CRL) error {
	err := s.pushCRL(ctx, crl)
	if err == nil {
		err = s.pushRetiredCRLs(ctx, crl)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		s.update(ctx, func(st *Status) {
			st.CRLError, st.CRLErrorNumber, st.CRLErrorAt = err.Error(), crl.Number, s.now().UTC()
		})
		return err
	}
	return nil
}

func (s *Syncer) pushCRL(ctx context.Context, crl *revocation.CRL) error {
	if len(crl.PEM) > MaxCRLBytes {
		err := fmt.Errorf("anchors: %w: CRL number %d lists %d revoked certificates and is %d bytes of PEM, over the %d-byte limit of IAM Roles Anywhere; it was not pushed, so AWS keeps CRL number %d. Shorten certificate lifetimes or let revoked certificates expire",
			ErrCRLTooLarge, crl.Number, crl.Entries, len(crl.PEM), MaxCRLBytes, s.Status().CRLNumber)
		s.log.Error("anchors: CRL too large for IAM Roles Anywhere", "number", crl.Number, "entries", crl.Entries,
			"pem_bytes", len(crl.PEM), "limit", MaxCRLBytes)
		return err
	}
	anchor := s.TrustAnchorARN()
	if anchor == "" {
		return fmt.Errorf("anchors: CRL %d: %w yet (the first sync creates or finds it)", crl.Number, ErrNoTrustAnchor)
	}
	st := s.Status()
	if st.CRLNumber >= crl.Number && st.CRLArn != "" {
		// CRL numbers are never reused (the store hands them out), so an
		// equal number is this very CRL: a replica that just took the
		// lease is handed the CRL its predecessor already pushed.
		s.log.Info("anchors: AWS already holds this CRL or a newer one", "aws", st.CRLNumber, "offered", crl.Number)
		return nil
	}
	id := ""
	enabled := true
	if st.CRLArn != "" {
		id = idOf(st.CRLArn)
	} else {
		r, err := s.RemoteCRL(ctx)
		if err != nil {
			return err
		}
		if r != nil {
			id = r.ID
			if r.Number == crl.Number && bytes.Equal(r.Data, crl.PEM) && r.Enabled {
				s.recordPushed(ctx, r.Arn, crl)
				return nil
			}
		}
	}
	var arn string
	if id == "" {
		out, err := s.api.ImportCrl(ctx, &rolesanywhere.ImportCrlInput{
			Name: aws.String(s.cfg.Name), TrustAnchorArn: aws.String(anchor), CrlData: crl.PEM, Enabled: aws.Bool(true),
		})
		if err != nil {
			return fmt.Errorf("anchors: import CRL %d into %s: %w", crl.Number, anchor, err)
		}
		arn = aws.ToString(out.Crl.CrlArn)
		enabled = aws.ToBool(out.Crl.Enabled)
		s.log.Info("anchors: imported CRL", "crl", arn, "number", crl.Number, "entries", crl.Entries)
	} else {
		out, err := s.api.UpdateCrl(ctx, &rolesanywhere.UpdateCrlInput{CrlId: aws.String(id), CrlData: crl.PEM})
		if err != nil {
			if errorCode(err) == "ResourceNotFoundException" {
				// Deleted out of band: forget it; the next attempt imports.
				s.update(ctx, func(st *Status) { st.CRLArn = "" })
				return fmt.Errorf("anchors: update CRL %s: it no longer exists, will import anew: %w", id, errRetryNow)
			}
			return fmt.Errorf("anchors: update CRL %s to number %d: %w", id, crl.Number, err)
		}
		arn = aws.ToString(out.Crl.CrlArn)
		enabled = aws.ToBool(out.Crl.Enabled)
		s.log.Info("anchors: updated CRL", "crl", arn, "number", crl.Number, "entries", crl.Entries)
	}
	if !enabled {
		if _, err := s.api.EnableCrl(ctx, &rolesanywhere.EnableCrlInput{CrlId: aws.String(idOf(arn))}); err != nil {
			return fmt.Errorf("anchors: enable CRL %s: %w", arn, err)
		}
	}
	s.recordPushed(ctx, arn, crl)
	return nil
}

// RetiredCRLName is the trust-anchor CRL name of a retired intermediate's
// CRL: the sync's name, "-retired-" and the first 8 hex digits of the
// intermediate's subject key identifier.
func (s *Syncer) RetiredCRLName(issuer *x509.Certificate) string {
	ski := hex.EncodeToString(issuer.SubjectKeyId)
	if len(ski) > 8 {
		ski = ski[:8]
	}
	return s.cfg.Name + "-retired-" + ski
}

// pushRetiredCRLs imports or updates, by name, the CRL of every retired
// intermediate (after an intermediate rotation): IAM Roles Anywhere
// checks a certificate against the CRLs its issuer signed, so the
// certificates of the old intermediate need the old intermediate's CRL
// until they expire. A trust anchor holds at most 2 CRLs (not
// adjustable), so one retired intermediate at a time fits beside the
// current one. After a finished root rotation (the Source names retired
// roots) the CRL of a retired intermediate that no longer signs one (it
// went with its root) is deleted, so that the next rotation's fits.
func (s *Syncer) pushRetiredCRLs(ctx context.Context, crl *revocation.CRL) error {
	var retiredRoots int
	if rs, ok := s.src.(RetiredRootsSource); ok {
		retiredRoots = len(rs.RetiredRoots())
	}
	if len(crl.Retired) == 0 && retiredRoots == 0 {
		return nil
	}
	anchor := s.TrustAnchorARN()
	existing := map[string]types.CrlDetail{}
	var token *string
	for {
		out, err := s.api.ListCrls(ctx, &rolesanywhere.ListCrlsInput{NextToken: token})
		if err != nil {
			return fmt.Errorf("anchors: list CRLs: %w", err)
		}
		for _, c := range out.Crls {
			if aws.ToString(c.TrustAnchorArn) == anchor {
				existing[aws.ToString(c.Name)] = c
			}
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		token = out.NextToken
	}
	for name, c := range existing {
		if !strings.HasPrefix(name, s.cfg.Name+"-retired-") || slices.ContainsFunc(crl.Retired, func(r revocation.IssuerCRL) bool { return s.RetiredCRLName(r.Issuer) == name }) {
			continue
		}
		if _, err := s.api.DeleteCrl(ctx, &rolesanywhere.DeleteCrlInput{CrlId: c.CrlId}); err != nil && errorCode(err) != "ResourceNotFoundException" {
			return fmt.Errorf("anchors: delete CRL %s of an intermediate that no longer signs one: %w", name, err)
		}
		s.log.Info("anchors: deleted the CRL of an intermediate that went with its root", "name", name)
	}
	for _, r := range crl.Retired {
		name := s.RetiredCRLName(r.Issuer)
		if c, ok := existing[name]; ok {
			if bytes.Equal(c.CrlData, r.PEM) && aws.ToBool(c.Enabled) {
				continue
			}
			if _, err := s.api.UpdateCrl(ctx, &rolesanywhere.UpdateCrlInput{CrlId: c.CrlId, CrlData: r.PEM}); err != nil {
				return fmt.Errorf("anchors: update CRL %s to number %d: %w", name, crl.Number, err)
			}
			if !aws.ToBool(c.Enabled) {
				if _, err := s.api.EnableCrl(ctx, &rolesanywhere.EnableCrlInput{CrlId: c.CrlId}); err != nil {
					return fmt.Errorf("anchors: enable CRL %s: %w", name, err)
				}
			}
			continue
		}
		if _, err := s.api.ImportCrl(ctx, &rolesanywhere.ImportCrlInput{Name: aws.String(name), TrustAnchorArn: aws.String(anchor),
			CrlData: r.PEM, Enabled: aws.Bool(true)}); err != nil {
			return fmt.Errorf("anchors: import CRL %s of retired intermediate %q: %w", name, r.Issuer.Subject.CommonName, err)
		}
		s.log.Info("anchors: imported a retired intermediate's CRL", "name", name, "number", crl.Number)
	}
	return nil
}

// errRetryNow marks a failure the next attempt repairs.
var errRetryNow = retryNow{}

type retryNow struct{}

func (retryNow) Error() string   { return "retry" }
func (retryNow) Temporary() bool { return true }

func (s *Syncer) recordPushed(ctx context.Context, arn string, crl *revocation.CRL) {
	s.update(ctx, func(st *Status) {
		st.CRLArn, st.CRLNumber, st.CRLEntries = arn, crl.Number, crl.Entries
		st.CRLNextUpdate, st.CRLPushedAt = crl.NextUpdate.UTC(), s.now().UTC()
		st.CRLError, st.CRLErrorNumber, st.CRLErrorAt = "", 0, time.Time{}
	})
}

// Run syncs the trust anchor every Config.Interval until ctx ends, and
// after each sync checks the CRL AWS holds against the newest CRL handed
// to PublishCRL (none yet: no check): when AWS's is missing, older,
// disabled or different, that CRL is queued again (this catches what a
// failed push or an out-of-band change left behind; Run never fetches a
// CRL itself), then reconciles the subjects (SetInventory).
func (s *Syncer) Run(ctx context.Context) {
	wait := time.Duration(0)
	if last := s.Status().LastSync; !last.IsZero() {
		if since := s.now().Sub(last); since >= 0 && since < s.cfg.Interval {
			wait = s.cfg.Interval - since
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Sync(ctx, false); err == nil || errors.Is(err, ErrForeignCertificate) {
			s.checkCRL(ctx)
			s.RefreshSubjects(ctx)
		}
		t.Reset(s.cfg.Interval)
	}
}

// checkCRL queues the newest CRL again when AWS's copy is missing, older,
// disabled or different.
func (s *Syncer) checkCRL(ctx context.Context) {
	s.crlMu.Lock()
	crl := s.latest
	s.crlMu.Unlock()
	if crl == nil {
		return
	}
	r, err := s.RemoteCRL(ctx)
	if err != nil {
		s.log.Warn("anchors: could not read the trust anchor's CRL", "err", err)
		return
	}
	switch {
	case r == nil:
	case r.Number < crl.Number, !r.Enabled:
	case r.Number == crl.Number && !bytes.Equal(r.Data, crl.PEM):
	default:
		s.update(ctx, func(st *Status) {
			st.CRLArn, st.CRLNumber, st.CRLEntries, st.CRLNextUpdate = r.Arn, r.Number, r.Entries, r.NextUpdate.UTC()
		})
		if !r.NextUpdate.IsZero() && s.now().After(r.NextUpdate) {
			s.log.Error("anchors: the CRL AWS holds is past its nextUpdate and the CA has no newer one",
				"number", r.Number, "next_update", r.NextUpdate)
		}
		return
	}
	s.update(ctx, func(st *Status) {
		// What AWS holds, with 0 when it must be pushed whatever its
		// number (disabled, or the same number with other data), so that
		// pushCRL does not take it for this CRL.
		st.CRLArn, st.CRLNumber = r.ArnOrEmpty(), 0
		if r != nil && r.Enabled && r.Number < crl.Number {
			st.CRLNumber = r.Number
		}
	})
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	if !s.closed && s.latest == crl { // else a newer one is queued already
		s.queueLocked(crl)
	}
}

// ArnOrEmpty returns r.Arn, or "" for a nil r.
func (r *RemoteCRL) ArnOrEmpty() string {
	if r == nil {
		return ""
	}
	return r.Arn
}

// Lists reports whether the CRL lists serial.
func (r *RemoteCRL) Lists(serial *big.Int) bool {
	blk, _ := pem.Decode(r.Data)
	if blk == nil {
		return false
	}
	l, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		return false
	}
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}
