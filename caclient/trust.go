package caclient

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lanyard/lanyard/internal/pembundle"
)

// Trust rules for a host (issue 9, item 1).
//
// Pinning. A host that enrolls with --fingerprint trusts exactly one
// certificate the user vouched for: the root with that SHA-256. Every other
// certificate a CA (or a machine in the middle) serves beside it is dropped,
// with one exception for root rotations, the rule step-ca's pinned
// bootstrap and the Web PKI's cross-signing follow: a second self-signed
// root R is also trusted when the same bundle carries a cross-certificate
// of R, that is a CA certificate with R's subject and R's public key,
// issued by the pinned root, that verifies under it now. The pinned root
// thereby vouches for R; nothing else does. What is trusted is what is
// stored in DIR/ca.pem, so every later renewal trusts the same set.
//
// Issued certificates. Enroll and every renewal verify the leaf the CA
// returns before anything is written: it must chain (through the returned
// intermediates) to a stored root for client authentication, and carry
// exactly the names that were asked for.

// Errors callers branch on.
var (
	// ErrUntrustedIssue means a certificate the CA returned does not chain
	// to the stored roots for client authentication, or does not carry the
	// names that were asked for. Nothing was written.
	ErrUntrustedIssue = errors.New("the certificate the CA returned is not trusted")
	// ErrUnknownRoot, always with ErrUntrustedIssue, means the certificate
	// does not chain to a stored root (its names were not looked at):
	// during a root rotation, a root the host has not learnt yet.
	ErrUnknownRoot = errors.New("not under a stored root")
	// ErrRootsUnavailable means /roots.pem could not be read for a reason
	// that may pass (the network, a 5xx or 429 answer); a CA that answers
	// otherwise (404, 403) has given its answer.
	ErrRootsUnavailable = errors.New("the CA's roots could not be fetched")
)

// PinnedRoots applies the pinning rule above to a PEM bundle: it returns,
// PEM-encoded, the root whose fingerprint is fingerprint followed by every
// root it cross-signs in the same bundle (valid at now), and nothing else.
// It fails with ErrFingerprint when no certificate matches.
func PinnedRoots(bundle []byte, fingerprint string, now time.Time) ([]byte, error) {
	certs, err := pembundle.ParseNonEmpty(bundle)
	if err != nil {
		return nil, err
	}
	want := normaliseFingerprint(fingerprint)
	var pinned *x509.Certificate
	for _, c := range certs {
		if Fingerprint(c) == want {
			pinned = c
			break
		}
	}
	if pinned == nil {
		return nil, fmt.Errorf("%w %s", ErrFingerprint, want)
	}
	pool := x509.NewCertPool()
	pool.AddCert(pinned)
	trusted := []*x509.Certificate{pinned}
	for _, r := range certs {
		if r == pinned || !selfSigned(r) || slices.ContainsFunc(trusted, r.Equal) {
			continue
		}
		if slices.ContainsFunc(certs, func(x *x509.Certificate) bool { return crossSigns(x, r, pinned, pool, now) }) {
			trusted = append(trusted, r)
		}
	}
	return pembundle.Encode(trusted...), nil
}

// selfSigned reports whether c is a CA certificate signed by its own key.
func selfSigned(c *x509.Certificate) bool {
	return c.IsCA && bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// crossSigns reports whether x is a cross-certificate of root r issued by
// pinned: a CA certificate with r's subject and key, verifying under
// pinned (the only certificate of pool) at now.
func crossSigns(x, r, pinned *x509.Certificate, pool *x509.CertPool, now time.Time) bool {
	if x == r || x == pinned || !x.IsCA || !x.BasicConstraintsValid ||
		!bytes.Equal(x.RawSubject, r.RawSubject) || !bytes.Equal(x.RawSubjectPublicKeyInfo, r.RawSubjectPublicKeyInfo) ||
		!bytes.Equal(x.RawIssuer, pinned.RawSubject) {
		return false
	}
	_, err := x.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// Names is the identity a certificate is asked for: its subject CN and DNS
// SANs (lanyard issues no other kind of SAN).
type Names struct {
	CN       string
	DNSNames []string
}

// NamesOf returns the names c carries.
func NamesOf(c *x509.Certificate) Names {
	return Names{CN: c.Subject.CommonName, DNSNames: slices.Clone(c.DNSNames)}
}

// VerifyIssued checks a certificate the CA returned (certPEM: the leaf
// alone; chainPEM: the intermediates) before the caller writes anything:
// the leaf must verify to one of rootsPEM at now for client authentication
// and, when want is non-nil, carry exactly want's CN and DNS SANs (in any
// order) and no IP, email or URI SAN. It returns the parsed leaf. Every
// failure wraps ErrUntrustedIssue.
func VerifyIssued(rootsPEM, certPEM, chainPEM []byte, want *Names, now time.Time) (*x509.Certificate, error) {
	roots, err := pembundle.ParseNonEmpty(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: stored roots: %w", ErrUntrustedIssue, err)
	}
	leaves, err := pembundle.ParseNonEmpty(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrUntrustedIssue, err)
	}
	if len(leaves) != 1 {
		return nil, fmt.Errorf("%w: want one certificate, the CA returned %d", ErrUntrustedIssue, len(leaves))
	}
	chain, err := pembundle.Parse(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: chain: %w", ErrUntrustedIssue, err)
	}
	opts := x509.VerifyOptions{
		Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, c := range chain {
		opts.Intermediates.AddCert(c)
	}
	leaf := leaves[0]
	if _, err := leaf.Verify(opts); err != nil {
		return nil, fmt.Errorf("%w: serial %x (CN %q) does not chain to the stored roots for client authentication (%w): %w",
			ErrUntrustedIssue, leaf.SerialNumber, leaf.Subject.CommonName, ErrUnknownRoot, err)
	}
	if want == nil {
		return leaf, nil
	}
	if got := leaf.Subject.CommonName; got != want.CN {
		return nil, fmt.Errorf("%w: CN %q, asked for %q", ErrUntrustedIssue, got, want.CN)
	}
	if !sameSet(leaf.DNSNames, want.DNSNames) {
		return nil, fmt.Errorf("%w: DNS SANs %q, asked for %q", ErrUntrustedIssue, leaf.DNSNames, want.DNSNames)
	}
	if n := len(leaf.IPAddresses) + len(leaf.EmailAddresses) + len(leaf.URIs); n > 0 {
		return nil, fmt.Errorf("%w: %d IP, email or URI SANs, none asked for", ErrUntrustedIssue, n)
	}
	return leaf, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b)) && len(a) == len(b)
}

// ErrRootsRefused means a refreshed /roots.pem kept none of the roots a
// host already trusts; the host keeps its stored roots.
var ErrRootsRefused = errors.New("refreshed roots chain to no stored root")

// RefreshRoots applies the pinning rule to a /roots.pem served after
// enrollment (root rotation): every self-signed root in stored acts as a
// pin for [PinnedRoots], and the answer is the union of what they trust,
// in served order. A new root is thus learned only through a
// cross-certificate from a root the host already trusts, and a retired
// root drops out once the CA no longer serves it. It fails with
// ErrRootsRefused when no stored root is served, so the caller writes
// nothing.
func RefreshRoots(stored, served []byte, now time.Time) ([]byte, error) {
	pins, err := pembundle.ParseNonEmpty(stored)
	if err != nil {
		return nil, fmt.Errorf("stored roots: %w", err)
	}
	var trusted []*x509.Certificate
	for _, p := range pins {
		got, err := PinnedRoots(served, Fingerprint(p), now)
		if errors.Is(err, ErrFingerprint) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("served roots: %w", err)
		}
		certs, err := pembundle.ParseNonEmpty(got)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if !slices.ContainsFunc(trusted, c.Equal) {
				trusted = append(trusted, c)
			}
		}
	}
	if len(trusted) == 0 {
		return nil, ErrRootsRefused
	}
	return pembundle.Encode(trusted...), nil
}
