// Package caclient is how hosts and admins reach a lanyard CA: it
// bootstraps trust in the CA from the root's SHA-256 fingerprint, and
// builds Connect clients over TLS 1.2+ (with a client certificate for
// renewal and admin calls).
package caclient

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lanyard/lanyard/api/lanyard/v1/lanyardv1connect"
	"github.com/lanyard/lanyard/internal/pembundle"
)

// ErrFingerprint means the CA presented roots none of which has the
// fingerprint the user gave: the wrong CA, or someone in the middle.
var ErrFingerprint = errors.New("no root served by the CA matches the fingerprint")

// requestTimeout bounds one call; renewals and enrollments take
// milliseconds, so a minute only ever trips on a dead network.
const requestTimeout = time.Minute

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// normaliseFingerprint accepts the forms people paste: hex with or
// without colons or spaces, in either case, optionally prefixed with
// "SHA256:" or "sha256=" (openssl x509 -fingerprint prints the latter).
func normaliseFingerprint(fp string) string {
	fp = strings.ToLower(strings.TrimSpace(fp))
	for _, p := range []string{"sha256:", "sha256="} {
		fp = strings.TrimPrefix(fp, p)
	}
	return strings.NewReplacer(":", "", " ", "").Replace(fp)
}

// ParseCertificates parses a PEM bundle of one or more certificates
// (the policy of package pembundle).
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	return pembundle.ParseNonEmpty(data)
}

// Bootstrap fetches /roots.pem from caURL without trusting the TLS
// connection, keeps of it only what [PinnedRoots] trusts under
// fingerprint, and then checks that the server's TLS chain verifies to
// those roots. now is the time the pinned roots must be valid at. It returns
// the trusted roots, PEM: what a host stores in DIR/ca.pem.
func Bootstrap(ctx context.Context, caURL, fingerprint string, now time.Time) ([]byte, error) {
	insecure := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}, //nolint:gosec // verified below by fingerprint
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(caURL, "/")+"/roots.pem", nil)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", caURL, err)
	}
	resp, err := insecure.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", caURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", caURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bootstrap %s: /roots.pem answered %s", caURL, resp.Status)
	}
	trusted, err := PinnedRoots(body, fingerprint, now)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: roots.pem: %w", caURL, err)
	}
	pool, err := Pool(trusted)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", caURL, err)
	}
	// The TLS chain must verify to the pinned root: fetch again, verified.
	c := HTTPClient(pool, nil)
	req2, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(caURL, "/")+"/healthz", nil)
	resp2, err := c.Do(req2)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: the server's certificate does not verify to the pinned root: %w", caURL, err)
	}
	resp2.Body.Close()
	return trusted, nil
}

// HTTPClient returns an HTTP client that trusts roots and presents cert
// (nil: none).
func HTTPClient(roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if cert != nil {
		c := *cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
		TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
	}}
}

// Pool builds a cert pool from PEM roots.
func Pool(rootsPEM []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(rootsPEM) {
		return nil, errors.New("no root certificate in PEM data")
	}
	return p, nil
}

// Clients bundles the two Connect clients of one CA.
type Clients struct {
	Certificates lanyardv1connect.CertificateServiceClient
	Admin        lanyardv1connect.AdminServiceClient
	HTTP         *http.Client
	URL          string
}

// New returns Connect clients for caURL trusting rootsPEM and presenting
// cert (nil: none).
func New(caURL string, rootsPEM []byte, cert *tls.Certificate) (*Clients, error) {
	pool, err := Pool(rootsPEM)
	if err != nil {
		return nil, err
	}
	return NewWithHTTP(caURL, HTTPClient(pool, cert))
}

// NewWithHTTP returns Connect clients for caURL over an HTTP client the
// caller configured (load generators, tests).
func NewWithHTTP(caURL string, hc *http.Client) (*Clients, error) {
	u := strings.TrimRight(caURL, "/")
	return &Clients{
		Certificates: lanyardv1connect.NewCertificateServiceClient(hc, u),
		Admin:        lanyardv1connect.NewAdminServiceClient(hc, u),
		HTTP:         hc, URL: u,
	}, nil
}

// Roots fetches /roots.pem over c's verified TLS connection. The answer
// is untrusted input: pass it to [RefreshRoots] before keeping any of it.
// A failure that may pass wraps ErrRootsUnavailable.
func (c *Clients) Roots(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/roots.pem", nil)
	if err != nil {
		return nil, fmt.Errorf("roots %s: %w", c.URL, err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("roots %s: %w: %w", c.URL, ErrRootsUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("roots %s: %w: %w", c.URL, ErrRootsUnavailable, err)
	}
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("roots %s: %w: /roots.pem answered %s", c.URL, ErrRootsUnavailable, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("roots %s: /roots.pem answered %s", c.URL, resp.Status)
	}
	return body, nil
}
