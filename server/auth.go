package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/admincred"
)

type ctxKey int

const (
	keyClientCert ctxKey = iota
	keyClientCertErr
)

// describeCertError turns a verification failure into a sentence a host
// operator can act on.
func describeCertError(leaf *x509.Certificate, err error, now time.Time) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		if now.After(leaf.NotAfter) {
			return fmt.Errorf("%w: client certificate %s expired at %s; it cannot renew, enroll again with a new token",
				errBadClientCert, lanyardv1.FormatSerial(leaf.SerialNumber), leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("%w: client certificate is not valid yet (check the host clock)", errBadClientCert)
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("%w: client certificate was not issued by this CA", errBadClientCert)
	}
	return fmt.Errorf("%w: %v", errBadClientCert, err)
}

// clientCertError returns why the presented client certificate was refused
// (nil when none was presented or it verified).
func clientCertError(ctx context.Context) error {
	e, _ := ctx.Value(keyClientCertErr).(error)
	return e
}

// withClientCert verifies the TLS client certificate, if one was sent,
// against the CA's intermediates at the server's clock, and puts the
// verified certificate (or why it failed) in the request context for the
// handlers.
//
// The TLS layer only requests client certificates and never fails a
// handshake over one: a host whose certificate expired then gets a
// Connect error that says so ("expired at …; enroll again") instead of a
// bare TLS alert.
func (s *Server) withClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			leaf := r.TLS.PeerCertificates[0]
			if err := s.verifyClient(leaf); err != nil {
				ctx = context.WithValue(ctx, keyClientCertErr, err)
			} else {
				ctx = context.WithValue(ctx, keyClientCert, leaf)
			}
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ClientCert returns the verified TLS client certificate of the request.
func ClientCert(ctx context.Context) *x509.Certificate {
	c, _ := ctx.Value(keyClientCert).(*x509.Certificate)
	return c
}

// adminOnly refuses every AdminService call that is not authorised by a
// live admin credential (admincred.Check: the marker, recorded in the
// store, not revoked, not expired; read on every call, never cached).
func (s *Server) adminOnly() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if err := s.checkAdmin(ctx); err != nil {
				return nil, toConnect(s.log, req.Spec().Procedure, err)
			}
			return next(ctx, req)
		}
	}
}

// checkAdmin is the one admin check of the server's entry points (Connect
// admin calls, GetAnchorStatus among them, and online backup; the web page
// and tidy call admincred.Check with server.ClientCert themselves). It returns
// errNoClientCert / errBadClientCert when no verified certificate came,
// else admincred's verdict.
func (s *Server) checkAdmin(ctx context.Context) error {
	c := ClientCert(ctx)
	if c == nil {
		if err := clientCertError(ctx); err != nil {
			return err
		}
		return fmt.Errorf("%w: %w", errNoClientCert, admincred.ErrNotAdmin)
	}
	if err := s.admin.Check(c); err != nil {
		return fmt.Errorf("%w: %w", errNotAdmin, err)
	}
	return nil
}

// verifiedCacheSize bounds the cache of verified client certificates: one
// entry per host that called recently, a few MB at most.
const verifiedCacheSize = 16384

// verifiedCache remembers certificates whose signature chain verified, keyed
// by the SHA-256 of their DER, so a keep-alive connection (an admin, the web
// page) does not pay an ECDSA verification per request. Validity dates are
// still checked on every request.
type verifiedCache struct {
	mu sync.Mutex
	m  map[[32]byte]struct{}
}

func (c *verifiedCache) has(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

func (c *verifiedCache) add(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= verifiedCacheSize {
		c.m = make(map[[32]byte]struct{}, 256)
	}
	c.m[k] = struct{}{}
}

// verifyClient checks a client certificate: issued by this CA's
// intermediate, valid now at the server's clock, for client auth.
func (s *Server) verifyClient(leaf *x509.Certificate) error {
	now := s.opts.Now()
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return describeCertError(leaf, x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}, now)
	}
	key := sha256.Sum256(leaf.Raw)
	if s.verified.has(key) {
		return nil
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: s.clientPool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return describeCertError(leaf, err, now)
	}
	s.verified.add(key)
	return nil
}
