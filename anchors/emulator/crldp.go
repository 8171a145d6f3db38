package emulator

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lanyard/lanyard/anchors/trust"
)

// CRL distribution points (crlDpRevocationEnabled on a trust anchor).
//
// What AWS documents: the field exists on CreateTrustAnchor,
// UpdateTrustAnchor and TrustAnchorDetail since aws-sdk-go-v2
// service/rolesanywhere v1.33.0 (2026-11-04): "Specifies whether the trust
// anchor checks certificate revocation status against CRL distribution
// points", "enable automatic revocation checking using CRL distribution
// points in X.509 certificates". Nothing else: not the schemes fetched,
// the timeouts, the caching, whether a failed fetch refuses or lets the
// certificate through, whether intermediates' points are checked, nor how
// it combines with imported CRLs (the older User Guide still says CDP
// callbacks are not supported).
//
// What the emulator does, and only that: when the anchor's flag is set,
// each certificate of the path below the anchor that names http(s)
// distribution points has its first reachable CRL fetched (Options.FetchCRL)
// and, when that CRL is signed by the certificate's issuer and lists the
// serial, the session is refused like an imported CRL would refuse it.
// Where AWS is silent the emulator picks the strict side and says so in
// the refusal: a point that cannot be fetched or parsed refuses
// (ReasonCRLDPUnavailable), so that nothing tested against the emulator
// depends on a leniency AWS may not have. Imported CRLs are checked as
// before, flag or not.

// ReasonCRLDPUnavailable is the refusal reason when no distribution point
// of a certificate gave a usable CRL (the emulator's choice; see above).
const ReasonCRLDPUnavailable = "CRL distribution point unavailable (emulator: fail closed; AWS's behaviour is not documented)"

// crlDPTimeout bounds one distribution-point fetch.
const crlDPTimeout = 5 * time.Second

// defaultFetchCRL GETs url (http or https) and returns its body, at most
// MaxCRLBytes (the limit of an imported CRL, the only CRL size AWS states).
func defaultFetchCRL(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, crlDPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxCRLBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCRLBytes {
		return nil, fmt.Errorf("GET %s: CRL over %d bytes", url, MaxCRLBytes)
	}
	return b, nil
}

// dpCRL is a CRL fetched from a distribution point, or why it is missing.
type dpCRL struct {
	url  string
	list *x509.RevocationList
	err  error
}

// fetchDistributionPoints fetches the CRLs the certificates name (DER or
// PEM), before the emulator's lock is taken.
func (e *Emulator) fetchDistributionPoints(ctx context.Context, certs []*x509.Certificate) map[string]dpCRL {
	out := map[string]dpCRL{}
	for _, c := range certs {
		for _, u := range c.CRLDistributionPoints {
			if _, done := out[u]; done || !(strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) {
				continue
			}
			data, err := e.fetchCRL(ctx, u)
			if err != nil {
				out[u] = dpCRL{url: u, err: err}
				continue
			}
			if blk, _ := pem.Decode(data); blk != nil && blk.Type == "X509 CRL" {
				data = blk.Bytes
			}
			l, err := x509.ParseRevocationList(data)
			out[u] = dpCRL{url: u, list: l, err: err}
		}
	}
	return out
}

// checkDistributionPoints refuses the path when a certificate's
// distribution-point CRL lists it, or none of its points gave a CRL its
// issuer signed.
func checkDistributionPoints(path []*x509.Certificate, fetched map[string]dpCRL) error {
	for i := 0; i < len(path)-1; i++ {
		cert, issuer := path[i], path[i+1]
		var urls []string
		for _, u := range cert.CRLDistributionPoints {
			if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
				urls = append(urls, u)
			}
		}
		if len(urls) == 0 {
			continue
		}
		var errs []error
		checked := false
		for _, u := range urls {
			f := fetched[u]
			switch {
			case f.err != nil:
				errs = append(errs, fmt.Errorf("%s: %v", u, f.err))
				continue
			case f.list == nil:
				errs = append(errs, fmt.Errorf("%s: not fetched", u))
				continue
			case !bytes.Equal(f.list.RawIssuer, cert.RawIssuer) || f.list.CheckSignatureFrom(issuer) != nil:
				errs = append(errs, fmt.Errorf("%s: not signed by %s", u, issuer.Subject))
				continue
			}
			checked = true
			for _, rc := range f.list.RevokedCertificateEntries {
				if rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					return untrusted(trust.RevokedReason(cert.SerialNumber, cert.Subject.String(), "at distribution point "+u))
				}
			}
			break
		}
		if !checked {
			return untrusted(ReasonCRLDPUnavailable + ": " + errors.Join(errs...).Error())
		}
	}
	return nil
}
