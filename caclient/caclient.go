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
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lanyard/lanyard/api/lanyard/v1/lanyardv1connect"
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

func normaliseFingerprint(fp string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "", "SHA256=", "", "sha256:", "").Replace(strings.TrimSpace(fp)))
}

// ParseCertificates parses every CERTIFICATE block of PEM data.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate found")
	}
	return out, nil
}

// Bootstrap fetches /roots.pem from caURL without trusting the TLS
// connection, keeps it only if a root matches fingerprint, and then
// checks that the server's TLS chain verifies to that root. It returns
// the roots PEM.
func Bootstrap(ctx context.Context, caURL, fingerprint string) ([]byte, error) {
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
	roots, err := ParseCertificates(body)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: roots.pem: %w", caURL, err)
	}
	want := normaliseFingerprint(fingerprint)
	var pool *x509.CertPool
	for _, r := range roots {
		if Fingerprint(r) == want {
			pool = x509.NewCertPool()
			pool.AddCert(r)
		}
	}
	if pool == nil {
		return nil, fmt.Errorf("bootstrap %s: %w %s", caURL, ErrFingerprint, want)
	}
	// The TLS chain must verify to the pinned root: fetch again, verified.
	c := HTTPClient(pool, nil)
	req2, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(caURL, "/")+"/healthz", nil)
	resp2, err := c.Do(req2)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: the server's certificate does not verify to the pinned root: %w", caURL, err)
	}
	resp2.Body.Close()
	return body, nil
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
	hc := HTTPClient(pool, cert)
	u := strings.TrimRight(caURL, "/")
	return &Clients{
		Certificates: lanyardv1connect.NewCertificateServiceClient(hc, u),
		Admin:        lanyardv1connect.NewAdminServiceClient(hc, u),
		HTTP:         hc, URL: u,
	}, nil
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
