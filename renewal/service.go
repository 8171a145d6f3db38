// Package renewal owns keeping certificates fresh. Server side (this
// file): renew a certificate over mTLS with the current one, and answer
// ARI-style (RFC 9773) renewal windows. Client side (sub-packages and
// agent.go): the agent that schedules renewals, swaps version folders
// atomically, runs hooks and hands files to aws_signing_helper.
package renewal

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/store"
)

// Sentinel errors callers branch on (the server maps them to Connect codes).
var (
	// ErrNotRenewable: the presented certificate is unknown to the store,
	// expired, or not issued by this CA. Final: retrying will not help; the
	// host must enroll again.
	ErrNotRenewable = errors.New("certificate cannot be renewed")
	// ErrRevoked: the presented certificate is revoked. Final.
	ErrRevoked = errors.New("certificate is revoked")
	// ErrKeyReuse: the CSR carries the current key and the profile wants a
	// new one. Final for that CSR; a new key fixes it.
	ErrKeyReuse = errors.New("renewal must use a new key")
	// ErrKeyTypeChange: the CSR's key type differs from the current one
	// (aws_signing_helper fixes its algorithm at start-up). Final for that CSR.
	ErrKeyTypeChange = errors.New("renewal must keep the key type")
)

// Service renews certificates. Safe for concurrent use.
type Service struct {
	iss *issuance.Service
	db  *store.DB
	log *slog.Logger
	// rotating, when set, makes every window "now" (issuing CA rotation).
	rotating func() bool
}

// NewService returns a renewal service issuing through iss.
func NewService(iss *issuance.Service, db *store.DB, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{iss: iss, db: db, log: log, rotating: func() bool { return false }}
}

// SetRotating installs the predicate that says the issuing CA is being
// rotated (every host should renew now).
func (s *Service) SetRotating(f func() bool) { s.rotating = f }

// Renewed is the outcome of a renewal.
type Renewed struct {
	*issuance.Issued
	Previous string
	Window   schedule.Window
}

// Renew issues the successor of current, which the caller has verified
// as the TLS client certificate (chain to our roots, unexpired at the
// handshake). Subject and SANs are copied from the record, whatever the
// CSR says; the lifetime comes from the profile. The new record links to
// the old one and is durable before Renew returns.
func (s *Service) Renew(ctx context.Context, current *x509.Certificate, csrDER []byte) (*Renewed, error) {
	serial := issuance.SerialHex(current.SerialNumber)
	now := s.iss.Now()
	rec, err := s.db.GetCert(serial)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w: not in this CA's store", serial, ErrNotRenewable)
	}
	if rec.Revocation != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, ErrRevoked)
	}
	if !now.Before(rec.NotAfter) {
		return nil, fmt.Errorf("renew %s: %w: expired at %s; enroll again with a new token", serial, ErrNotRenewable, rec.NotAfter.UTC().Format(time.RFC3339))
	}
	p, err := s.iss.Profiles().Get(rec.Profile)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, err)
	}
	if !p.AllowsCN(rec.CN) {
		return nil, fmt.Errorf("renew %s: %w: profile %q no longer allows CN %q", serial, issuance.ErrNameNotAllowed, p.Name, rec.CN)
	}
	csr, err := issuance.ParseCSR(csrDER)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, err)
	}
	if csr.Subject.CommonName != "" && csr.Subject.CommonName != rec.CN {
		return nil, fmt.Errorf("renew %s: %w: CSR asks for CN %q, the certificate is for %q", serial, issuance.ErrNameNotAllowed, csr.Subject.CommonName, rec.CN)
	}
	for _, n := range csr.DNSNames {
		if !contains(rec.DNSNames, n) {
			return nil, fmt.Errorf("renew %s: %w: CSR asks for SAN %q", serial, issuance.ErrNameNotAllowed, n)
		}
	}
	if len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return nil, fmt.Errorf("renew %s: %w: CSR asks for IP, email or URI SANs", serial, issuance.ErrNameNotAllowed)
	}
	newType, err := issuance.KeyType(csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, err)
	}
	if newType != rec.KeyType {
		return nil, fmt.Errorf("renew %s: %w: %s to %s", serial, ErrKeyTypeChange, rec.KeyType, newType)
	}
	if !p.Config.AllowKeyReuse {
		if eq, ok := current.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(csr.PublicKey) {
			return nil, fmt.Errorf("renew %s: %w (profile %q)", serial, ErrKeyReuse, p.Name)
		}
	}
	issued, err := s.iss.Sign(p, rec.CN, rec.DNSNames, csr.PublicKey, 0)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, err)
	}
	ev := &store.AuditEvent{At: now, Actor: "cert:" + serial, Action: "renew", Subject: issued.Record.Serial,
		Detail: fmt.Sprintf("cn=%s profile=%s previous=%s", rec.CN, p.Name, serial)}
	if err := s.db.InsertRenewal(ctx, serial, issued.Record, ev); err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return nil, fmt.Errorf("renew %s: %w", serial, ErrRevoked)
		}
		return nil, fmt.Errorf("renew %s: record: %w", serial, err)
	}
	return &Renewed{Issued: issued, Previous: serial, Window: s.window(issued.Record)}, nil
}

// Info returns the renewal window for serial: "now" when the server wants
// the certificate replaced (revoked, CA rotating, profile no longer
// allowing its CN), else the scheduled window.
func (s *Service) Info(serial string) (schedule.Window, error) {
	rec, err := s.db.GetCert(serial)
	if err != nil {
		return schedule.Window{}, fmt.Errorf("renewal info %s: %w", serial, err)
	}
	return s.window(rec), nil
}

func (s *Service) window(rec *store.Cert) schedule.Window {
	now := s.iss.Now()
	nowWindow := func(reason string) schedule.Window {
		return schedule.Window{Start: now, End: now.Add(time.Minute), Reason: reason}
	}
	if rec.Revocation != nil {
		return nowWindow(schedule.ReasonRevoked)
	}
	if s.rotating() {
		return nowWindow(schedule.ReasonCARotation)
	}
	// A profile whose lifetime changed wants its certificates re-cut.
	// Issued lifetimes are the profile's TTL plus the backdate.
	if p, err := s.iss.Profiles().Get(rec.Profile); err != nil ||
		absDuration(rec.NotAfter.Sub(rec.NotBefore)-issuance.Backdate-p.Config.DefaultTTL) > time.Minute {
		return nowWindow(schedule.ReasonProfileChanged)
	}
	return schedule.Scheduled(rec.NotBefore, rec.NotAfter)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
