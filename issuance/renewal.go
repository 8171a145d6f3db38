package issuance

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/store"
)

// Sentinel errors of renewal (the server maps them to Connect codes).
var (
	// ErrNotRenewable: the presented certificate is unknown to the store,
	// expired, or not issued by this CA. Final: retrying will not help; the
	// host must enroll again.
	ErrNotRenewable = errors.New("certificate cannot be renewed")
	// ErrRevoked: the presented certificate is revoked. Final.
	ErrRevoked = errors.New("certificate is revoked")
	// ErrSuperseded: the presented certificate was renewed longer ago than
	// RenewalRetryGrace; only its newest successor may renew. Final.
	ErrSuperseded = errors.New("certificate was already renewed")
	// ErrKeyReuse: the CSR carries the current key and the profile wants a
	// new one. Final for that CSR; a new key fixes it.
	ErrKeyReuse = errors.New("renewal must use a new key")
)

// RenewalRetryGrace is how long after its first renewal a certificate may
// still renew. A host that crashed after the CA recorded its renewal but
// before it wrote the answer retries with the certificate it still holds:
// the agent retries with capped backoff (1 s doubling to 10 minutes,
// agent.DefaultBackoffMax), so 15 minutes covers a restart and the retry
// at the cap. After that the old certificate is superseded: a copy of it
// (the host folder keeps old versions) cannot start a second, unrevoked
// lineage. The grace runs from the first renewal, so renewing an old
// certificate again does not extend it.
const RenewalRetryGrace = 15 * time.Minute

// InUseUntil is when rec stops being a certificate a host may still be
// using: its NotAfter, or, once it was renewed, RenewalRetryGrace after
// its first renewal (AuthorizeRenewal refuses it from then on, and the
// host's agent has swapped to the successor and deletes the old key). A
// revoked certificate is in use by nobody (zero time). A root rotation
// finishes when no certificate of the old root is in use.
func InUseUntil(rec *store.Cert) time.Time {
	if rec.Revocation != nil {
		return time.Time{}
	}
	if !rec.RenewedAt.IsZero() && rec.RenewedAt.Add(RenewalRetryGrace).Before(rec.NotAfter) {
		return rec.RenewedAt.Add(RenewalRetryGrace)
	}
	return rec.NotAfter
}

// ServerProfile is the store profile of the CA server's own TLS
// certificates (recorded by package server). The leading underscore
// keeps it apart from configured profiles.
const ServerProfile = "_server"

// IssuerUse is what a store holds of one issuer's certificates.
type IssuerUse struct {
	// Live counts the valid (unrevoked, unexpired) ones; the last expires
	// at LastLive.
	Live     int
	LastLive time.Time
	// InUse counts those a host may still use (InUseUntil after now),
	// until InUseUntil at the latest.
	InUse      int
	InUseUntil time.Time
	// InUseCNs are the subject CNs of the first few in use (what `lanyard
	// ca status` names).
	InUseCNs []string
}

// inUseSamples is how many CNs IssuerUse.InUseCNs keeps: enough to see
// whether the admin credential or a few stragglers hold a rotation up.
const inUseSamples = 3

// CertLister is the part of the store IssuerUsage reads.
type CertLister interface {
	ListCerts(q store.CertQuery) ([]*store.Cert, string, error)
}

// IssuerUsage counts, per issuer (keyed by its subject key identifier as
// a string), the valid certificates of db each of issuers signed, at
// now. `lanyard ca status` reports it and a root rotation finishes when
// the old root's intermediates have none in use.
func IssuerUsage(db CertLister, issuers []*x509.Certificate, now time.Time) (map[string]*IssuerUse, error) {
	use := map[string]*IssuerUse{}
	for _, c := range issuers {
		use[string(c.SubjectKeyId)] = &IssuerUse{}
	}
	q := store.CertQuery{Status: store.StatusValid, Now: now, Limit: 1000}
	for {
		page, next, err := db.ListCerts(q)
		if err != nil {
			return nil, fmt.Errorf("issuer usage: %w", err)
		}
		for _, r := range page {
			c, err := x509.ParseCertificate(r.DER)
			if err != nil {
				continue // placeholders and test records carry no certificate
			}
			u := use[string(c.AuthorityKeyId)]
			if u == nil {
				continue
			}
			u.Live++
			if c.NotAfter.After(u.LastLive) {
				u.LastLive = c.NotAfter
			}
			// The server issues its TLS certificate afresh from the
			// current intermediate whenever it starts, so one of an older
			// intermediate is used by nobody once it runs again.
			if until := InUseUntil(r); until.After(now) && r.Profile != ServerProfile {
				u.InUse++
				if len(u.InUseCNs) < inUseSamples {
					u.InUseCNs = append(u.InUseCNs, r.CN)
				}
				if until.After(u.InUseUntil) {
					u.InUseUntil = until
				}
			}
		}
		if next == "" {
			return use, nil
		}
		q.After = next
	}
}

// renewedAt returns when rec was first renewed (records written before
// RenewedAt existed fall back on their newest successor's issue time).
func (s *Service) renewedAt(rec *store.Cert) time.Time {
	if !rec.RenewedAt.IsZero() || rec.NextSerial == "" {
		return rec.RenewedAt
	}
	if next, err := s.db.GetCert(rec.NextSerial); err == nil {
		return next.IssuedAt
	}
	return time.Time{}
}

// Renewed is the outcome of a renewal.
type Renewed struct {
	*Issued
	// Previous is the serial renewed.
	Previous string
	// Window is when to renew the new certificate.
	Window schedule.Window
}

// Renew issues the successor of current (AuthorizeRenewal then Issue),
// which the caller has verified as the TLS client certificate. Subject
// and SANs come from the record, the lifetime from the profile; the new
// record links to the old one and is durable before Renew returns.
//
// The key type is the profile's business only: a renewal may move to any
// type the profile allows now. Whether the host can follow a change of
// signing family (aws_signing_helper fixes it when it starts) is the
// host's decision (the agent's allow_key_type_change), not the CA's.
func (s *Service) Renew(ctx context.Context, current *x509.Certificate, csrDER []byte) (*Renewed, error) {
	g, err := s.AuthorizeRenewal(current)
	if err != nil {
		return nil, err
	}
	iss, err := s.Issue(ctx, g, csrDER)
	if err != nil {
		return nil, err
	}
	return &Renewed{Issued: iss, Previous: g.Predecessor, Window: s.window(iss.Record)}, nil
}

// RenewalInfo returns the renewal window for serial: "now" when the server
// wants the certificate replaced (revoked, CA rotating, the profile no
// longer issuing it as it is), else the scheduled window.
func (s *Service) RenewalInfo(serial string) (schedule.Window, error) {
	rec, err := s.db.GetCert(serial)
	if err != nil {
		return schedule.Window{}, fmt.Errorf("renewal info %s: %w", serial, err)
	}
	return s.window(rec), nil
}

func (s *Service) window(rec *store.Cert) schedule.Window {
	now := s.now()
	nowWindow := func(reason string) schedule.Window {
		return schedule.Window{Start: now, End: now.Add(time.Minute), Reason: reason}
	}
	if rec.Revocation != nil {
		return nowWindow(schedule.ReasonRevoked)
	}
	if !s.reissuable(rec) {
		return nowWindow(schedule.ReasonProfileChanged)
	}
	sched := schedule.Scheduled(rec.NotBefore, rec.NotAfter)
	if w, ok := s.rotationWindow(rec); ok && w.Start.Before(sched.Start) {
		return w
	}
	return sched
}

// rotationSpreadMax caps how long after an intermediate rotation the
// renewals of the old intermediate's certificates are spread: a day keeps
// 100,000 hosts at about one renewal (and one Roles Anywhere
// CreateSession, whose quota is 10/s per region) a second.
const rotationSpreadMax = 24 * time.Hour

// rotationWindow is the renewal window of a certificate issued by an
// intermediate other than the current one (after `lanyard ca
// rotate-intermediate`): each certificate gets its own start, spread
// uniformly (by a hash of its serial, so every answer for it agrees) over
// the first quarter of its lifetime, at most rotationSpreadMax, after the
// current intermediate took over (or after the certificate's notBefore,
// if that is later); the window is a tenth of the spread
// wide. ok is false for a certificate of the current intermediate (or a
// record without a parsable certificate).
func (s *Service) rotationWindow(rec *store.Cert) (schedule.Window, bool) {
	cur := s.signer.Intermediate()
	if len(rec.DER) == 0 || cur == nil {
		return schedule.Window{}, false
	}
	c, err := x509.ParseCertificate(rec.DER)
	if err != nil || bytes.Equal(c.AuthorityKeyId, cur.SubjectKeyId) {
		return schedule.Window{}, false
	}
	spread := min(rec.NotAfter.Sub(rec.NotBefore)/4, rotationSpreadMax)
	if spread < time.Minute {
		spread = time.Minute
	}
	h := fnv.New64a()
	h.Write([]byte(rec.Serial))
	// A replica that had not loaded the new intermediate yet may have
	// signed with the old one after the rotation: the spread then starts
	// at the certificate's own notBefore, so the window stays inside its
	// validity.
	from := cur.NotBefore
	if rec.NotBefore.After(from) {
		from = rec.NotBefore
	}
	start := from.Add(time.Duration(h.Sum64() % uint64(spread)))
	return schedule.Window{Start: start, End: start.Add(max(spread/10, time.Minute)), Reason: schedule.ReasonCARotation}, true
}

// reissuable reports whether the profile, as it is now, would issue rec
// as it is: the profile still exists, allows its CN, its SANs and its key
// type, and its lifetime is the profile's (issued lifetimes are the TTL
// plus the backdate; a minute of slack absorbs rounding). A certificate
// the profile would no longer issue should be replaced now, so the host
// finds out at its next check rather than at its next renewal.
func (s *Service) reissuable(rec *store.Cert) bool {
	p, err := s.Profiles().Get(rec.Profile)
	if err != nil || p.CheckNames(rec.CN, rec.DNSNames) != nil || !p.keys[rec.KeyType] {
		return false
	}
	return absDuration(rec.NotAfter.Sub(rec.NotBefore)-Backdate-p.Config.DefaultTTL) <= time.Minute
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
