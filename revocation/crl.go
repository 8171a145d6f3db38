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
			return nil, fmt.Sprintf("stored CRL %d does not list revoked certificate %s", crl.Number, lanyardv1.FormatSerial(e.rc.Serial()))
		}
	}
	return crl, ""
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
	if crl.Retired, err = s.signRetired(n, thisUpdate, nextUpdate, live); err != nil {
		return nil, fmt.Errorf("CRL %d: %w", n, err)
	}
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
