// Package admincred owns the admin credential: the mTLS client
// certificate (ca.IsAdminCertificate's marker) that grants full control of
// the CA through the Connect AdminService (the trust-anchor status
// included), online backup, tidy and the web page's certificate login.
//
// An admin certificate is a certificate like any other: it is recorded in
// the store (profile Profile) and revocable. Check is the one admin check
// every entry point calls: the marker, a store record for exactly that
// certificate, not revoked, not expired, not superseded by its renewal
// (past issuance.RenewalRetryGrace). It reads the store on every call,
// so a revocation takes effect on the next request (nothing is cached).
//
// Service issues the credential's successors: Rotate (a new credential,
// every other live admin certificate revoked, in the audit log) and Renew
// (over mTLS like a host's renewal, under the same revocation rules).
package admincred

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

// Profile is the store profile of admin certificate records. The leading
// underscore keeps it apart from configured profiles, as "_server" does
// for the server's own TLS certificate.
const Profile = "_admin"

// WarnBefore is how long before its end an admin certificate is reported
// as expiring (CLI warning, dashboard): a week, as issue 12 asks, so an
// admin who uses the CLI weekly sees it at least once.
const WarnBefore = 7 * 24 * time.Hour

// Sentinel errors of Check, Rotate and Renew.
var (
	// ErrNotAdmin: no client certificate, or one without the admin marker.
	ErrNotAdmin = errors.New("not the admin credential")
	// ErrNotRecorded: the certificate carries the admin marker but the
	// store has no record of it (issued by another CA instance, or a
	// record that is not this certificate).
	ErrNotRecorded = errors.New("admin certificate is not recorded by this CA")
	// ErrRevoked: the admin certificate has been revoked.
	ErrRevoked = errors.New("admin certificate is revoked")
	// ErrExpired: the admin certificate's validity has ended.
	ErrExpired = errors.New("admin certificate has expired")
	// ErrKeyReuse: a rotation or renewal CSR carries the current key.
	ErrKeyReuse = errors.New("the new admin credential must use a new key")
)

// Records is the part of the store Check reads.
type Records interface {
	GetCert(serial string) (*store.Cert, error)
}

// Check reports why cert, a client certificate already verified against
// the CA's chain, is not a live admin credential at now (nil when it is).
// Every admin entry point calls it on every request.
func Check(db Records, cert *x509.Certificate, now time.Time) error {
	if !ca.IsAdminCertificate(cert) {
		return ErrNotAdmin
	}
	serial := lanyardv1.FormatSerial(cert.SerialNumber)
	rec, err := db.GetCert(serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: serial %s", ErrNotRecorded, serial)
	case err != nil:
		return fmt.Errorf("check admin certificate %s: %w", serial, err)
	case rec.Profile != Profile || !bytes.Equal(rec.DER, cert.Raw):
		return fmt.Errorf("%w: serial %s", ErrNotRecorded, serial)
	case rec.Revocation != nil:
		return fmt.Errorf("%w: serial %s, revoked at %s (%s)", ErrRevoked, serial,
			rec.Revocation.At.UTC().Format(time.RFC3339), revocation.ReasonName(rec.Revocation.Reason))
	case !now.Before(rec.NotAfter):
		return fmt.Errorf("%w: serial %s expired at %s", ErrExpired, serial, rec.NotAfter.UTC().Format(time.RFC3339))
	case !rec.RenewedAt.IsZero() && now.Sub(rec.RenewedAt) > issuance.RenewalRetryGrace:
		// As for hosts, only the newest certificate of a lineage acts once
		// the crash-retry grace is over: a renewed admin certificate stops
		// being an admin credential.
		return fmt.Errorf("%w: admin certificate %s was renewed at %s (by %s)", issuance.ErrSuperseded, serial,
			rec.RenewedAt.UTC().Format(time.RFC3339), rec.NextSerial)
	}
	return nil
}

// Expiring returns the time left before cert ends when that is under
// WarnBefore (ok true), so callers can warn.
func Expiring(cert *x509.Certificate, now time.Time) (left time.Duration, ok bool) {
	left = cert.NotAfter.Sub(now)
	return left, left < WarnBefore
}

// ExpiryWarning is the sentence every admin command prints on stderr, and
// the dashboard shows, when cert ends within WarnBefore ("" otherwise).
func ExpiryWarning(cert *x509.Certificate, now time.Time) string {
	left, ok := Expiring(cert, now)
	if !ok {
		return ""
	}
	when := cert.NotAfter.UTC().Format(time.RFC3339)
	if left <= 0 {
		return fmt.Sprintf("the admin certificate (serial %s) expired at %s: it can no longer renew or rotate over the network",
			lanyardv1.FormatSerial(cert.SerialNumber), when)
	}
	return fmt.Sprintf("the admin certificate (serial %s) expires in %s, at %s: run `lanyard admin renew-cert` (or `lanyard admin rotate-cert`)",
		lanyardv1.FormatSerial(cert.SerialNumber), roundLeft(left), when)
}

// roundLeft renders a duration in days and hours (minutes under an hour).
func roundLeft(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
}

// Lister is the part of the store Newest reads.
type Lister interface {
	Records
	SerialsByCN(cn string) ([]string, error)
}

// Newest returns the live (unrevoked, unexpired at now) admin certificate
// record that ends last, or nil when there is none.
func Newest(db Lister, now time.Time) (*store.Cert, error) {
	serials, err := db.SerialsByCN(ca.AdminCommonName)
	if err != nil {
		return nil, fmt.Errorf("list admin certificates: %w", err)
	}
	var best *store.Cert
	for _, serial := range serials {
		c, err := db.GetCert(serial)
		if err != nil {
			return nil, fmt.Errorf("read admin certificate %s: %w", serial, err)
		}
		if c.Profile == Profile && c.Revocation == nil && now.Before(c.NotAfter) && (best == nil || c.NotAfter.After(best.NotAfter)) {
			best = c
		}
	}
	return best, nil
}

// StoreWarning is the dashboard's doctor-style line about the admin
// credential: none live, or the one that lasts longest ends within
// WarnBefore ("" when all is well).
func StoreWarning(db Lister, now time.Time) (string, error) {
	c, err := Newest(db, now)
	if err != nil {
		return "", err
	}
	if c == nil {
		return "no live admin certificate is recorded: the admin CLI and the certificate login no longer work (only the password login does)", nil
	}
	if left := c.NotAfter.Sub(now); left < WarnBefore {
		return fmt.Sprintf("the admin certificate (serial %s) expires in %s, at %s: run `lanyard admin renew-cert` (or `lanyard admin rotate-cert`)",
			c.Serial, roundLeft(left), c.NotAfter.UTC().Format(time.RFC3339)), nil
	}
	return "", nil
}

// Signer signs admin certificates (package ca's Authority).
type Signer interface {
	AdminCertificate(pub crypto.PublicKey, ttl time.Duration, now time.Time) ([]byte, *x509.Certificate, error)
}

// Revoker revokes certificates and publishes the CRL (package
// revocation's Service).
type Revoker interface {
	Revoke(ctx context.Context, req revocation.Request) (*revocation.Result, error)
}

// Store is the part of the store Service writes.
type Store interface {
	Lister
	InsertCert(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error
	InsertRenewal(ctx context.Context, prev string, c *store.Cert, ev *store.AuditEvent) error
}

// Config builds a Service.
type Config struct {
	Signer     Signer
	Store      Store
	Revocation Revoker
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Service issues, records and revokes admin credentials. Safe for
// concurrent use.
type Service struct {
	cfg Config
}

// New returns a Service.
func New(cfg Config) *Service {
	cfg.Now = clock.Or(cfg.Now)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg}
}

// Check is the package Check at the service's clock.
func (s *Service) Check(cert *x509.Certificate) error {
	return Check(s.cfg.Store, cert, s.cfg.Now())
}

// Adopt records cert, the admin credential found in the CA folder, when
// the store has no record of it: `lanyard init` and `lanyard init
// --import` write admin.crt before any store exists, and CAs made before
// admin certificates were recorded hold one too. Every other unrecorded
// admin certificate stays refused. It reports whether it recorded.
func (s *Service) Adopt(ctx context.Context, cert *x509.Certificate) (bool, error) {
	if !ca.IsAdminCertificate(cert) {
		return false, fmt.Errorf("adopt admin credential: %w", ErrNotAdmin)
	}
	serial := lanyardv1.FormatSerial(cert.SerialNumber)
	if _, err := s.cfg.Store.GetCert(serial); err == nil {
		return false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("adopt admin credential %s: %w", serial, err)
	}
	now := s.cfg.Now()
	rec, err := record(cert, now)
	if err != nil {
		return false, err
	}
	ev := &store.AuditEvent{At: now, Actor: "server", Action: store.ActionAdminAdopt, Subject: serial,
		Detail: "admin credential of the CA folder recorded; not_after=" + cert.NotAfter.UTC().Format(time.RFC3339)}
	if err := s.cfg.Store.InsertCert(ctx, rec, ev); err != nil {
		if errors.Is(err, store.ErrExists) {
			// Replicas starting together on one store: another one
			// recorded it between our look and our insert. The same
			// certificate is adopted; anything else under its serial is
			// not.
			if got, gerr := s.cfg.Store.GetCert(serial); gerr == nil && bytes.Equal(got.DER, cert.Raw) {
				return false, nil
			}
		}
		return false, fmt.Errorf("adopt admin credential %s: %w", serial, err)
	}
	return true, nil
}

// record is the store record of an admin certificate.
func record(cert *x509.Certificate, now time.Time) (*store.Cert, error) {
	kt, err := issuance.KeyType(cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("admin credential: %w", err)
	}
	return &store.Cert{Serial: lanyardv1.FormatSerial(cert.SerialNumber), CN: cert.Subject.CommonName, Profile: Profile,
		KeyType: kt, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, IssuedAt: now, DER: cert.Raw}, nil
}

// sign checks a CSR for a successor of current and signs the admin
// certificate for its key (not yet recorded).
//
// Seam: this is the admin credential's issuance step. When package
// issuance's grant path (Issue(ctx, grant, csr)) is on main, the admin
// certificate becomes a grant for profile Profile and this signing and
// the recording in Rotate/Renew move there.
func (s *Service) sign(current *x509.Certificate, csrDER []byte, now time.Time) (*store.Cert, *x509.Certificate, error) {
	csr, err := issuance.ParseCSR(csrDER)
	if err != nil {
		return nil, nil, err
	}
	if eq, ok := current.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(csr.PublicKey) {
		return nil, nil, ErrKeyReuse
	}
	_, cert, err := s.cfg.Signer.AdminCertificate(csr.PublicKey, ca.AdminValidity, now)
	if err != nil {
		return nil, nil, fmt.Errorf("sign admin certificate: %w", err)
	}
	rec, err := record(cert, now)
	if err != nil {
		return nil, nil, err
	}
	return rec, cert, nil
}

// Rotated is the outcome of Rotate.
type Rotated struct {
	Cert   *x509.Certificate
	Record *store.Cert
	// Revoked are the serials of the admin certificates revoked.
	Revoked []string
	// CRLNumber is the first CRL listing them (0 when none was revoked).
	CRLNumber int64
}

// Rotate issues a new admin credential for the CSR's key (a new key) to
// the holder of current (which the caller has checked with Check), then
// revokes every other live admin certificate — current, its renewals and
// any other one (a thief who rotated a leaked key first loses it too) —
// with reason (superseded when 0; keyCompromise when the key leaked). The
// new record and each revocation are in the audit log, attributed to by.
//
// The new certificate is recorded before anything is revoked, so a failure
// half-way never leaves the CA without a usable admin credential; Rotate
// then returns the error and the caller retries.
func (s *Service) Rotate(ctx context.Context, current *x509.Certificate, csrDER []byte, reason int, by string) (*Rotated, error) {
	if reason == 0 {
		reason = revocation.ReasonSuperseded
	}
	now := s.cfg.Now()
	old := lanyardv1.FormatSerial(current.SerialNumber)
	rec, cert, err := s.sign(current, csrDER, now)
	if err != nil {
		return nil, fmt.Errorf("rotate admin credential %s: %w", old, err)
	}
	ev := &store.AuditEvent{At: now, Actor: by, Action: store.ActionAdminRotate, Subject: rec.Serial,
		Detail: fmt.Sprintf("replaces=%s not_after=%s", old, rec.NotAfter.UTC().Format(time.RFC3339))}
	if err := s.cfg.Store.InsertCert(ctx, rec, ev); err != nil {
		return nil, fmt.Errorf("rotate admin credential %s: record: %w", old, err)
	}
	revoked, crl, err := s.RevokeOthers(ctx, rec.Serial, reason, by)
	if err != nil {
		return nil, fmt.Errorf("rotate admin credential %s: new credential %s recorded, revoking the old ones failed (retry): %w", old, rec.Serial, err)
	}
	s.cfg.Logger.Info("admin credential rotated", "new", rec.Serial, "revoked", revoked)
	return &Rotated{Cert: cert, Record: rec, Revoked: revoked, CRLNumber: crl}, nil
}

// RevokeOthers revokes every live admin certificate except keep, with
// reason, attributed to by, and returns their serials and the first CRL
// that lists them all.
func (s *Service) RevokeOthers(ctx context.Context, keep string, reason int, by string) (revoked []string, crlNumber int64, err error) {
	serials, err := s.cfg.Store.SerialsByCN(ca.AdminCommonName)
	if err != nil {
		return nil, 0, fmt.Errorf("list admin certificates: %w", err)
	}
	now := s.cfg.Now()
	for _, serial := range serials {
		if serial == keep {
			continue
		}
		c, err := s.cfg.Store.GetCert(serial)
		if err != nil {
			return revoked, crlNumber, fmt.Errorf("read admin certificate %s: %w", serial, err)
		}
		if c.Profile != Profile || c.Revocation != nil || !now.Before(c.NotAfter) {
			continue
		}
		res, err := s.cfg.Revocation.Revoke(ctx, revocation.Request{Serial: serial, Reason: reason,
			Comment: "admin credential rotated to " + keep, By: by})
		if err != nil {
			return revoked, crlNumber, fmt.Errorf("revoke admin certificate %s: %w", serial, err)
		}
		crlNumber = max(crlNumber, res.CRLNumber)
		for _, r := range res.Certificates {
			if r.Serial != keep {
				revoked = append(revoked, r.Serial)
			}
		}
	}
	return revoked, crlNumber, nil
}

// Renew issues the successor of current (the admin certificate presented
// over mTLS, which must pass Check) for the CSR's new key, linked to it
// as a host renewal is: revoking either revokes the lineage's renewals,
// and a renewal racing a revocation is refused (store.ErrRevoked).
func (s *Service) Renew(ctx context.Context, current *x509.Certificate, csrDER []byte) (*x509.Certificate, *store.Cert, error) {
	old := lanyardv1.FormatSerial(current.SerialNumber)
	if err := s.Check(current); err != nil {
		return nil, nil, fmt.Errorf("renew admin credential: %w", err)
	}
	now := s.cfg.Now()
	rec, cert, err := s.sign(current, csrDER, now)
	if err != nil {
		return nil, nil, fmt.Errorf("renew admin credential %s: %w", old, err)
	}
	ev := &store.AuditEvent{At: now, Actor: "cert:" + old, Action: store.ActionAdminRenew, Subject: rec.Serial,
		Detail: fmt.Sprintf("previous=%s not_after=%s", old, rec.NotAfter.UTC().Format(time.RFC3339))}
	if err := s.cfg.Store.InsertRenewal(ctx, old, rec, ev); err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return nil, nil, fmt.Errorf("renew admin credential %s: %w", old, ErrRevoked)
		}
		return nil, nil, fmt.Errorf("renew admin credential %s: record: %w", old, err)
	}
	return cert, rec, nil
}

// ReadCertificate reads the first certificate of a PEM file (admin.crt).
func ReadCertificate(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin certificate: %w", err)
	}
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			return nil, fmt.Errorf("read admin certificate %s: no PEM certificate in it", path)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("read admin certificate %s: %w", path, err)
			}
			return c, nil
		}
	}
}
