package issuance

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"

	"github.com/lanyard/lanyard/store"
)

// Grant is what one authorization entitles its holder to: one certificate
// for CN and DNSNames under Profile. Only this package makes grants
// (AuthorizeToken, AuthorizeRenewal, AuthorizeOrder); Issue refuses any other. A grant
// says what was authorized when it was authorized; Issue checks it again
// against the profile as it is when the certificate is cut, so a profile
// tightened in between wins (as step-ca's authorize-then-sign and boulder's
// single-use issuance token do, authorization and signing are two steps,
// and the second trusts nothing the first cached).
type Grant struct {
	// CN and DNSNames are the names the certificate will carry.
	CN       string
	DNSNames []string
	// Profile names the profile the certificate is cut from.
	Profile string
	// TTL is the requested lifetime (0: the profile's default); the
	// profile bounds it.
	TTL time.Duration
	// TokenID is the enrollment token that authorized the grant (enroll).
	TokenID string
	// Predecessor is the serial of the certificate being renewed (renew,
	// and an ACME order that replaces a certificate).
	Predecessor string

	// currentKey is the predecessor's public key (renewals: the key-reuse
	// rule needs it).
	currentKey crypto.PublicKey
	// record writes the certificate durably in the transaction that
	// consumes the authorization (redeems the token, links the
	// predecessor); nil for a grant this package did not make.
	record func(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error
	// actor and action name the grant's holder and the kind of issuance
	// for the audit log.
	actor  string
	action store.AuditAction
	// at is when the authorization was checked.
	at time.Time
}

// ErrNoGrant means Issue was given a Grant this package did not make.
var ErrNoGrant = errors.New("issuance: grant was not made by AuthorizeToken, AuthorizeRenewal or AuthorizeOrder")

// AuthorizeToken checks an enrollment token (form, hash in constant time,
// unused, unexpired, unrevoked) and returns the grant it stands for. It
// consumes nothing: Issue redeems the token in the transaction that
// records the certificate, so concurrent redemptions yield exactly one.
func (s *Service) AuthorizeToken(token string) (*Grant, error) {
	id, hash, err := ParseToken(token)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tok, err := s.db.GetToken(id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		// The store could not answer (ErrUnavailable: a database
		// restarting): retryable, and no verdict on the token.
		return nil, fmt.Errorf("read enrollment token: %w", err)
	}
	if err != nil || !tokenUsable(tok, hash, now) {
		return nil, ErrTokenInvalid
	}
	return &Grant{
		CN: tok.CN, DNSNames: slices.Clone(tok.DNSNames), Profile: tok.Profile, TokenID: id,
		actor: "token:" + id, action: store.ActionIssue, at: now,
		record: func(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error {
			c.TokenID = id
			err := s.db.RedeemToken(ctx, id, hash, now, c, ev)
			if errors.Is(err, store.ErrTokenUsed) || errors.Is(err, store.ErrTokenExpired) ||
				errors.Is(err, store.ErrTokenRevoked) || errors.Is(err, store.ErrNotFound) {
				return ErrTokenInvalid
			}
			return err
		},
	}, nil
}

// AuthorizeRenewal checks that current, which the caller has verified as
// the TLS client certificate (chain to our roots, unexpired at the
// handshake), may be renewed: it is in the store, unrevoked and
// unexpired. The grant carries the record's names and profile, whatever a
// CSR will say; Issue links the new certificate to current.
func (s *Service) AuthorizeRenewal(current *x509.Certificate) (*Grant, error) {
	serial := lanyardv1.FormatSerial(current.SerialNumber)
	now := s.now()
	rec, err := s.db.GetCert(serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("renew %s: %w: not in this CA's store", serial, ErrNotRenewable)
	}
	if err != nil {
		// The store could not answer: retryable, not a refusal.
		return nil, fmt.Errorf("renew %s: read the certificate record: %w", serial, err)
	}
	if rec.Revocation != nil {
		return nil, fmt.Errorf("renew %s: %w", serial, ErrRevoked)
	}
	if !now.Before(rec.NotAfter) {
		return nil, fmt.Errorf("renew %s: %w: expired at %s; enroll again with a new token", serial, ErrNotRenewable, rec.NotAfter.UTC().Format(time.RFC3339))
	}
	if first := s.renewedAt(rec); !first.IsZero() && now.Sub(first) > RenewalRetryGrace {
		return nil, fmt.Errorf("renew %s: %w: renewed at %s (newest successor %s); renew with the newest certificate",
			serial, ErrSuperseded, first.UTC().Format(time.RFC3339), rec.NextSerial)
	}
	return &Grant{
		CN: rec.CN, DNSNames: slices.Clone(rec.DNSNames), Profile: rec.Profile, Predecessor: serial,
		currentKey: current.PublicKey, actor: "cert:" + serial, action: store.ActionRenew, at: now,
		record: func(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error {
			err := s.db.InsertRenewal(ctx, serial, c, ev)
			if errors.Is(err, store.ErrRevoked) {
				return fmt.Errorf("%w (revoked while renewing)", ErrRevoked)
			}
			return err
		},
	}, nil
}

// Issue is lanyard's one way to a leaf certificate. It checks the grant's
// names against its profile as it is now (refusing, by name, one the
// profile no longer allows), checks the CSR (well formed, self-signed,
// asking for no more than the grant: a CSR can narrow names, never widen
// them), the key (a type the profile allows now; a new key on renewal
// unless the profile allows reuse), signs through the CA, and records the
// certificate durably — in the same transaction that redeems the token or
// links the predecessor — before returning it. On any error nothing is
// recorded and nothing is returned.
func (s *Service) Issue(ctx context.Context, g *Grant, csrDER []byte) (*Issued, error) {
	if g == nil || g.record == nil {
		return nil, ErrNoGrant
	}
	fail := func(err error) (*Issued, error) {
		if g.Predecessor != "" {
			return nil, fmt.Errorf("renew %s: %w", g.Predecessor, err)
		}
		return nil, err
	}
	p, err := s.Profiles().Get(g.Profile)
	if err != nil {
		return fail(err)
	}
	if err := p.CheckNames(g.CN, g.DNSNames); err != nil {
		return fail(err)
	}
	csr, err := ParseCSR(csrDER)
	if err != nil {
		return fail(err)
	}
	if err := checkCSRNames(csr, g.CN, g.DNSNames); err != nil {
		return fail(err)
	}
	if g.currentKey != nil && !p.Config.AllowKeyReuse {
		if eq, ok := g.currentKey.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(csr.PublicKey) {
			return fail(fmt.Errorf("%w (profile %q)", ErrKeyReuse, p.Name))
		}
	}
	issued, err := s.sign(p, g.CN, g.DNSNames, csr.PublicKey, g.TTL)
	if err != nil {
		return fail(err)
	}
	rec := issued.Record
	detail := fmt.Sprintf("cn=%s profile=%s key=%s not_after=%s", g.CN, p.Name, rec.KeyType, rec.NotAfter.UTC().Format(time.RFC3339))
	if g.Predecessor != "" {
		detail += " previous=" + g.Predecessor
	}
	ev := &store.AuditEvent{At: g.at, Actor: g.actor, Action: g.action, Subject: rec.Serial, Detail: detail}
	if err := g.record(ctx, rec, ev); err != nil {
		if errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrRevoked) {
			return fail(err)
		}
		return fail(fmt.Errorf("record certificate %s: %w", rec.Serial, err))
	}
	return issued, nil
}

// CheckNames refuses, naming it, the first of cn and dns that the profile
// does not allow as it is now.
func (p *Profile) CheckNames(cn string, dns []string) error {
	if !p.AllowsCN(cn) {
		return fmt.Errorf("%w: profile %q does not allow CN %q", ErrNameNotAllowed, p.Name, cn)
	}
	return p.CheckDNSNames(dns)
}

// AuthorizeOrder returns the grant for an ACME order whose identifiers
// the ACME server has validated: cn under profile, asked for by actor
// (the ACME account, for the audit log). It checks the names against the
// profile now; Issue checks them again. consume returns the Meta writes
// that mark the order finalized for the serial being recorded (their
// conditions name the order as it was read); Issue applies them in the
// transaction that records the certificate (store.InsertCertSwap), so an
// order pays for exactly one certificate on any replica, and a lost race
// is store.ErrConflict with nothing recorded.
//
// replaces, if not "", is the serial of the certificate the order
// replaces (RFC 9773): the grant is then its renewal, recorded by
// store.InsertRenewalSwap with the same writes, so the lineage is the
// agent's (the successor names it as predecessor, and revoking either
// revokes both). It must be a certificate of cn under profile, not
// revoked (ErrRevoked: its lineage is revoked, so the order is a fresh
// certificate, which the caller asks for with replaces ""). The key-reuse
// rule is not applied: an ACME renewal is authorized by the order's own
// validation, not by the replaced certificate's key.
func (s *Service) AuthorizeOrder(profile, cn string, dnsNames []string, actor, replaces string, consume func(serial string) []store.MetaWrite) (*Grant, error) {
	p, err := s.Profiles().Get(profile)
	if err != nil {
		return nil, err
	}
	if err := p.CheckNames(cn, dnsNames); err != nil {
		return nil, err
	}
	if consume == nil {
		return nil, errors.New("issuance: an ACME order grant needs the writes that consume the order")
	}
	g := &Grant{
		CN: cn, DNSNames: slices.Clone(dnsNames), Profile: profile,
		actor: actor, action: store.ActionACMEIssue, at: s.now(),
		record: func(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error {
			return s.db.InsertCertSwap(ctx, c, ev, consume(c.Serial))
		},
	}
	if replaces == "" {
		return g, nil
	}
	rec, err := s.db.GetCert(replaces)
	if err != nil {
		return nil, fmt.Errorf("replace %s: read the certificate record: %w", replaces, err)
	}
	if rec.CN != cn || rec.Profile != profile {
		return nil, fmt.Errorf("replace %s: %w: it is %q under %q, the order %q under %q",
			replaces, ErrNotRenewable, rec.CN, rec.Profile, cn, profile)
	}
	if rec.Revocation != nil {
		return nil, fmt.Errorf("replace %s: %w", replaces, ErrRevoked)
	}
	g.Predecessor = replaces
	g.record = func(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error {
		err := s.db.InsertRenewalSwap(ctx, replaces, c, ev, consume(c.Serial))
		if errors.Is(err, store.ErrRevoked) {
			return fmt.Errorf("%w (revoked while replacing)", ErrRevoked)
		}
		return err
	}
	return g, nil
}
