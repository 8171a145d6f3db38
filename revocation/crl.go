package revocation

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/store"
)

// metaKey is where the latest CRL's DER is kept in the store.
const metaKey = "revocation.crl"

// entry is one revoked certificate as the CRL lists it.
type entry struct {
	key      string // string(serial.Bytes()): compares with parsed CRLs
	notAfter time.Time
	rc       *ca.RevokedCert // the entry, encoded once
	// build is the first build listing this entry; nil when the CRL loaded
	// or built by New lists it. Guarded by Service.mu.
	build *build
}

// storedCRL is the meta record of the latest CRL.
type storedCRL struct {
	DER []byte `json:"der"`
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
	_, n, err := lanyardv1.ParseSerial(c.Serial)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", c.Serial, err)
	}
	rc, err := ca.NewRevokedCert(n, c.Revocation.At, c.Revocation.Reason)
	if err != nil {
		return nil, err
	}
	return &entry{key: string(n.Bytes()), notAfter: c.NotAfter, rc: rc}, nil
}

// loadStored returns the persisted CRL if it can keep serving, or nil and
// why not.
func (s *Service) loadStored(now time.Time) (*CRL, string) {
	if r, ok := s.signer.(interface{ Retired() []*x509.Certificate }); ok && len(r.Retired()) > 0 {
		// Only the current intermediate's CRL is stored: rebuild, so that
		// the retired intermediates' CRLs exist from the start.
		return nil, "retired intermediates sign their own CRLs"
	}
	var m storedCRL
	if _, der, err := s.st.LatestCRL(0); err == nil {
		m.DER = der
	} else if err := s.st.GetMeta(metaKey, &m); err != nil { // a store from before PublishCRL
		if errors.Is(err, store.ErrNotFound) {
			return nil, "no CRL stored"
		}
		return nil, fmt.Sprintf("read stored CRL: %v", err)
	}
	crl, rl, why := s.parseCRL(m.DER)
	if crl == nil {
		return nil, why
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
			return nil, fmt.Sprintf("stored CRL %d does not list revoked certificate %s", crl.Number, lanyardv1.FormatSerial(e.rc.Serial()))
		}
	}
	return crl, ""
}

// parseCRL checks that der is a CRL with a usable number signed by the
// current intermediate or by one this CA retired. The retired case is a
// rolling rotation: replicas share the CA folder and restart one at a
// time, so the first one back (on the new intermediate) follows a leader
// still signing with the old one until that leader restarts too; refusing
// its CRL left the restarted replica with no current CRL, never healthy.
func (s *Service) parseCRL(der []byte) (*CRL, *x509.RevocationList, string) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, nil, fmt.Sprintf("parse stored CRL: %v", err)
	}
	if !s.signedByOurs(rl) {
		return nil, nil, "stored CRL is not signed by the current intermediate nor a retired one"
	}
	if rl.Number == nil || !rl.Number.IsInt64() {
		return nil, nil, "stored CRL has no usable number"
	}
	return &CRL{
		DER:        der,
		PEM:        pemCRL(der),
		Number:     rl.Number.Int64(),
		ThisUpdate: rl.ThisUpdate.UTC(),
		NextUpdate: rl.NextUpdate.UTC(),
		Entries:    len(rl.RevokedCertificateEntries),
	}, rl, ""
}

// signedByOurs reports whether rl is signed by the current intermediate
// or a retired one.
func (s *Service) signedByOurs(rl *x509.RevocationList) bool {
	if rl.CheckSignatureFrom(s.signer.Intermediate()) == nil {
		return true
	}
	if r, ok := s.signer.(interface{ Retired() []*x509.Certificate }); ok {
		for _, c := range r.Retired() {
			if rl.CheckSignatureFrom(c) == nil {
				return true
			}
		}
	}
	return false
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
	if s.leader != nil && !s.leader() {
		return s.followCRL(ctx, thisUpdate, live)
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
	if crl.Retired, err = s.signRetired(n, thisUpdate, nextUpdate, live); err != nil {
		return nil, fmt.Errorf("CRL %d: %w", n, err)
	}
	if err := s.st.PublishCRL(ctx, n, der); err != nil {
		if errors.Is(err, store.ErrStaleCRL) || errors.Is(err, store.ErrNotLeader) {
			// Another replica leads now (or published a newer CRL): this
			// one must not serve it.
			return nil, fmt.Errorf("CRL %d: %w", n, err)
		}
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

// followPoll is how often a replica that does not lead looks for the
// leader's newest CRL: a revocation on any replica is in every replica's
// CRL within about two polls plus the leader's build.
const followPoll = 100 * time.Millisecond

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// followCRL, on a replica that does not lead, waits until the current
// CRL lists every entry of live (the leader learns of a revocation through
// the store's Revocations counter and publishes; this replica adopts it)
// and is either newer than the one current when it was called or not yet
// due for refresh, and returns it. It builds itself if it becomes leader.
//
// A CRL adopted by Follow between the revocation and this call already
// answers it: waiting for a number after it would wait for a revocation
// that never comes (the hang CI met in internal/replicas). Likewise a
// certificate of live that expired before the leader built its CRL: the
// leader rightly left it out (the chaos soak's hang, with 5-minute
// certificates expiring all the time).
func (s *Service) followCRL(ctx context.Context, thisUpdate time.Time, live []*entry) (*CRL, error) {
	start := int64(0)
	if cur := s.Current(); cur != nil {
		start = cur.Number
	}
	for {
		if s.leader() {
			return s.buildCRL(ctx, live)
		}
		s.adoptLatest() // Follow may have adopted it already
		// An entry that had expired when the leader built its CRL is
		// rightly left out of it (a CRL lists unexpired certificates
		// only), so the check is at the later of the two moments.
		if crl := s.Current(); crl != nil && crl.lists(live, later(thisUpdate, crl.ThisUpdate)) &&
			(crl.Number > start || s.now().Before(crl.RefreshAt())) {
			return crl, nil
		}
		t := time.NewTimer(followPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// adoptLatest makes the store's newest CRL current if it is newer and
// right; it returns the current CRL when it changed, else nil.
func (s *Service) adoptLatest() *CRL {
	cur := s.Current()
	after := int64(0)
	if cur != nil {
		after = cur.Number
	}
	_, der, err := s.st.LatestCRL(after)
	if err != nil {
		return nil
	}
	crl, rl, why := s.parseCRL(der)
	if crl == nil {
		s.log.Warn("published CRL refused", "why", why)
		return nil
	}
	crl.listed = make(map[string]bool, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		crl.listed[string(e.SerialNumber.Bytes())] = true
	}
	if !s.cur.CompareAndSwap(cur, crl) {
		return nil
	}
	return crl
}

// lists reports whether the CRL lists every entry of live unexpired at t.
func (c *CRL) lists(live []*entry, t time.Time) bool {
	if c.listed == nil {
		return false
	}
	for _, e := range live {
		if e.notAfter.After(t) && !c.listed[e.key] {
			return false
		}
	}
	return true
}

// Follow keeps a replica's CRL in step with the other replicas until ctx
// ends, by bounded polling of the store (every followPoll; chosen over
// LISTEN/NOTIFY because it needs no dedicated connection and survives a
// database restart without re-registering): a replica that does not lead
// adopts the newest published CRL; the leader rebuilds when the store's
// revocation counter moved (a revocation on another replica).
func (s *Service) Follow(ctx context.Context) {
	seen, _ := s.st.Revocations()
	for {
		t := time.NewTimer(followPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if s.leader == nil || s.leader() {
			n, err := s.st.Revocations()
			if err != nil || n == seen {
				continue
			}
			if _, err := s.Rebuild(ctx); err != nil {
				if ctx.Err() == nil {
					s.log.Error("CRL rebuild after a revocation elsewhere failed", "err", err)
				}
				continue
			}
			seen = n
			continue
		}
		s.adoptLatest()
	}
}

// sign has the CA sign a CRL listing live.
func (s *Service) sign(n int64, thisUpdate, nextUpdate time.Time, live []*entry) ([]byte, error) {
	req := ca.CRLRequest{Number: n, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Entries: make([]*ca.RevokedCert, len(live))}
	for i, e := range live {
		req.Entries[i] = e.rc
	}
	return s.signer.SignCRL(req)
}

// signRetired has every retired intermediate with a key sign the same CRL.
func (s *Service) signRetired(n int64, thisUpdate, nextUpdate time.Time, live []*entry) ([]IssuerCRL, error) {
	rs, ok := s.signer.(RetiredCRLSigner)
	if !ok {
		return nil, nil
	}
	req := ca.CRLRequest{Number: n, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Entries: make([]*ca.RevokedCert, len(live))}
	for i, e := range live {
		req.Entries[i] = e.rc
	}
	signed, err := rs.SignRetiredCRLs(req)
	if err != nil {
		return nil, err
	}
	out := make([]IssuerCRL, len(signed))
	for i, c := range signed {
		out[i] = IssuerCRL{Issuer: c.Issuer, DER: c.DER, PEM: pemCRL(c.DER)}
	}
	return out, nil
}

func pemCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
