// Package acmeclient is a small RFC 8555 client on golang.org/x/crypto/acme
// that answers http-01 itself: it registers an account with an external
// account binding, orders one CN, proves it on its own HTTP listener and
// finalizes. The bench's ACME row (bench/report) and tests that need an
// ACME certificate as a plain step (the admin page's) drive lanyard's
// ACME server with it; the protocol tests use lego, a client lanyard does
// not control.
package acmeclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// Responder answers http-01 challenges for every Client registered with
// it, on one listener (the port lanyard's dev-only acme.http01_port
// names).
type Responder struct {
	srv  *http.Server
	ln   net.Listener
	mu   sync.Mutex
	keys map[string]string // token → key authorization
}

// Listen starts a Responder on addr ("127.0.0.1:0": any free port).
func Listen(addr string) (*Responder, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http-01 responder: %w", err)
	}
	r := &Responder{ln: ln, keys: map[string]string{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Port is the port the Responder listens on.
func (r *Responder) Port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// Close stops the Responder.
func (r *Responder) Close() error { return r.srv.Close() }

// ServeHTTP answers /.well-known/acme-challenge/<token>.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	token, ok := strings.CutPrefix(req.URL.Path, "/.well-known/acme-challenge/")
	r.mu.Lock()
	ka, found := r.keys[token]
	r.mu.Unlock()
	if !ok || !found {
		http.NotFound(w, req)
		return
	}
	_, _ = w.Write([]byte(ka))
}

func (r *Responder) set(token, ka string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ka == "" {
		delete(r.keys, token)
	} else {
		r.keys[token] = ka
	}
}

// Client is one registered ACME account. It is safe for concurrent use.
type Client struct {
	c    *acme.Client
	resp *Responder
}

// Register opens an account at directoryURL (https://.../acme/<profile>/directory)
// with the EAB key kid and its base64url HMAC key, through hc (which must
// trust lanyard's TLS certificate); resp answers its http-01 challenges.
func Register(ctx context.Context, directoryURL string, hc *http.Client, kid, hmacKey string, resp *Responder) (*Client, error) {
	mac, err := base64.RawURLEncoding.DecodeString(hmacKey)
	if err != nil {
		return nil, fmt.Errorf("EAB HMAC key is not base64url: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("account key: %w", err)
	}
	c := &acme.Client{Key: key, DirectoryURL: directoryURL, HTTPClient: hc, UserAgent: "lanyard-acmeclient"}
	if _, err := c.Register(ctx, &acme.Account{ExternalAccountBinding: &acme.ExternalAccountBinding{KID: kid, Key: mac}}, acme.AcceptTOS); err != nil {
		return nil, fmt.Errorf("register with EAB %s: %w", kid, err)
	}
	return &Client{c: c, resp: resp}, nil
}

// Obtain orders a certificate for cn, answers its http-01 challenge,
// finalizes with a CSR for a new P-256 key (CN only) and returns the certificate
// (DER, chain included) and its key.
func (c *Client) Obtain(ctx context.Context, cn string) ([][]byte, crypto.Signer, error) {
	o, err := c.c.AuthorizeOrder(ctx, acme.DomainIDs(cn))
	if err != nil {
		return nil, nil, fmt.Errorf("new order for %s: %w", cn, err)
	}
	for _, u := range o.AuthzURLs {
		if err := c.prove(ctx, u); err != nil {
			return nil, nil, err
		}
	}
	if o, err = c.c.WaitOrder(ctx, o.URI); err != nil {
		return nil, nil, fmt.Errorf("order %s: %w", o.URI, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate key: %w", err)
	}
	// The CN only: lanyard's profiles may allow no SANs, and the order's
	// identifier is the certificate's CN.
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR: %w", err)
	}
	der, _, err := c.c.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
	if err != nil {
		return nil, nil, fmt.Errorf("finalize %s: %w", o.URI, err)
	}
	return der, key, nil
}

// prove answers the http-01 challenge of the authorization at u.
func (c *Client) prove(ctx context.Context, u string) error {
	z, err := c.c.GetAuthorization(ctx, u)
	if err != nil {
		return fmt.Errorf("authorization %s: %w", u, err)
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	var ch *acme.Challenge
	for _, x := range z.Challenges {
		if x.Type == "http-01" {
			ch = x
		}
	}
	if ch == nil {
		return errors.New("authorization " + u + " offers no http-01 challenge")
	}
	ka, err := c.c.HTTP01ChallengeResponse(ch.Token)
	if err != nil {
		return fmt.Errorf("http-01 key authorization: %w", err)
	}
	c.resp.set(ch.Token, ka)
	defer c.resp.set(ch.Token, "")
	if _, err := c.c.Accept(ctx, ch); err != nil {
		return fmt.Errorf("accept http-01: %w", err)
	}
	if _, err := c.c.WaitAuthorization(ctx, u); err != nil {
		return fmt.Errorf("authorization %s: %w", u, err)
	}
	return nil
}
