package acme

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/lanyard/lanyard/store"
)

// The challenge types an authorization offers, each at its own URL.
const (
	http01    = "http-01"
	tlsALPN01 = "tls-alpn-01"
)

var challengeTypes = []string{http01, tlsALPN01}

// challengeOp is the URL segment of each challenge type.
var challengeOp = map[string]string{http01: "chall", tlsALPN01: "chall-alpn"}

// acmeTLSProtocol is RFC 8737's ALPN protocol name.
const acmeTLSProtocol = "acme-tls/1"

// idPeACMEIdentifier is RFC 8737's acmeIdentifier extension.
var idPeACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// validationTimeout bounds one tls-alpn-01 handshake (http-01 has the
// Client's timeout).
const validationTimeout = 10 * time.Second

// challengeJSON is the challenge typ of a: the one tried carries the
// authorization's outcome, the others stay pending.
func challengeJSON(a *authz, typ string, req *request) map[string]any {
	tried, st := a.Via, a.Status
	if tried == "" {
		tried = http01
	}
	if (st == "valid" || st == "invalid") && typ != tried {
		st = "pending"
	}
	return map[string]any{"type": typ, "url": req.base + "/" + challengeOp[typ] + "/" + a.ID, "token": a.Token, "status": st}
}

// challenge returns the handler of challenge typ: it validates at once
// (synchronously), so the client then polls an authorization that is
// already final.
func (s *Server) challenge(typ string) func(context.Context, *request) (int, any, *Problem) {
	return func(ctx context.Context, req *request) (int, any, *Problem) {
		a, p := s.loadAuthz(req)
		if p != nil {
			return 0, nil, p
		}
		if a.Status == "pending" {
			var k jose.JSONWebKey
			_ = k.UnmarshalJSON(req.acct.JWK)
			thumb, _ := k.Thumbprint(crypto.SHA256)
			want := a.Token + "." + base64.RawURLEncoding.EncodeToString(thumb)
			old := *a
			a.Status, a.Via = "invalid", typ
			var err error
			if typ == tlsALPN01 {
				err = s.checkTLSALPN01(ctx, a.CN, want)
			} else {
				err = s.fetchHTTP01(ctx, a.CN, a.Token, want)
			}
			if err == nil {
				a.Status = "valid"
			} else {
				s.cfg.Logger.Info("acme validation failed", "type", typ, "cn", a.CN, "err", err)
			}
			// A validation racing another (a retry on another replica): the
			// first outcome stands.
			if err := s.swap(ctx, "authz", a.ID, &old, a, nil); errors.Is(err, store.ErrConflict) {
				if a, p = s.loadAuthz(req); p != nil {
					return 0, nil, p
				}
			} else if err != nil {
				return 0, nil, storeProblem(err)
			}
		}
		req.wHeader("Link", "<"+req.base+"/authz/"+a.ID+">;rel=\"up\"")
		return 200, challengeJSON(a, typ, req), nil
	}
}

// validationHost is where identifier cn is validated.
func (s *Server) validationHost(cn string) string {
	if s.cfg.ResolveTo != "" {
		return s.cfg.ResolveTo
	}
	return cn
}

func (s *Server) fetchHTTP01(ctx context.Context, cn, token, want string) error {
	u := "http://" + net.JoinHostPort(s.validationHost(cn), strconv.Itoa(s.cfg.ValidationPort)) + "/.well-known/acme-challenge/" + token
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	hr.Host = cn
	resp, err := s.cfg.Client.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
		return fmt.Errorf("http-01 at %s: status %d, wrong key authorization", u, resp.StatusCode)
	}
	return nil
}

// checkTLSALPN01 validates RFC 8737: a TLS handshake with SNI cn and ALPN
// acme-tls/1 must show a certificate naming exactly cn with a critical
// acmeIdentifier extension holding SHA-256 of the key authorization want.
// The certificate is self-signed by design: nothing else is verified.
func (s *Server) checkTLSALPN01(ctx context.Context, cn, want string) error {
	addr := net.JoinHostPort(s.validationHost(cn), strconv.Itoa(s.cfg.TLSALPNPort))
	ctx, cancel := context.WithTimeout(ctx, validationTimeout)
	defer cancel()
	// No chain to verify: RFC 8737's certificate is self-signed; what
	// counts is checked below.
	d := &tls.Dialer{Config: &tls.Config{ServerName: cn, NextProtos: []string{acmeTLSProtocol},
		InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tls-alpn-01 at %s: %w", addr, err)
	}
	defer conn.Close()
	cs := conn.(*tls.Conn).ConnectionState()
	if cs.NegotiatedProtocol != acmeTLSProtocol || len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("tls-alpn-01 at %s: protocol %q negotiated, want %s", addr, cs.NegotiatedProtocol, acmeTLSProtocol)
	}
	return checkACMEIdentifier(cs.PeerCertificates[0], cn, want)
}

func checkACMEIdentifier(c *x509.Certificate, cn, want string) error {
	if len(c.DNSNames) != 1 || !strings.EqualFold(c.DNSNames[0], cn) || len(c.IPAddresses)+len(c.EmailAddresses)+len(c.URIs) > 0 {
		return fmt.Errorf("tls-alpn-01: the certificate names %v, want exactly %s", c.DNSNames, cn)
	}
	sum := sha256.Sum256([]byte(want))
	for _, e := range c.Extensions {
		if !e.Id.Equal(idPeACMEIdentifier) {
			continue
		}
		var got []byte
		rest, err := asn1.Unmarshal(e.Value, &got)
		if !e.Critical || err != nil || len(rest) > 0 || !hmac.Equal(got, sum[:]) {
			return errors.New("tls-alpn-01: acmeIdentifier is not critical or not the key authorization's digest")
		}
		return nil
	}
	return errors.New("tls-alpn-01: the certificate has no acmeIdentifier extension")
}
