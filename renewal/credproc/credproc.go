// Package credproc is lanyard's built-in AWS credential process: it exchanges
// the certificate of a host folder for temporary AWS credentials through IAM
// Roles Anywhere's CreateSession, the way aws_signing_helper credential-process
// does, and returns them in the credential_process "Version 1" JSON shape.
//
// Unlike a helper pointed at DIR/cert.pem and DIR/privkey.pem, Credentials
// resolves DIR/current once and reads the certificate, chain and key from
// that one immutable version folder, so a renewal that swaps `current`
// between two reads can never pair a new certificate with an old key (see
// the host folder section of DESIGN.md and package hostdir).
//
// The request is what aws_signing_helper v1.5.0 sends (reference
// rolesanywhere.md §1): POST <endpoint>/sessions with the three ARNs in the
// query string, Content-Type application/json, a body of
// {"durationSeconds":N[,"roleSessionName":…]}, the SDK's
// amz-sdk-invocation-id and amz-sdk-request headers, signed with
// x509sigv4.Sign. Like the SDK's standard retryer it makes up to three
// attempts on 5xx, throttling and transport errors, re-signing each one, and
// never retries other 4xx answers.
package credproc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/arn"

	"github.com/lanyard/lanyard/anchors/x509sigv4"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// Defaults for the zero values of Options.
const (
	// DefaultDurationSeconds is the session duration asked for when
	// Options.DurationSeconds is zero (the helper's --session-duration
	// default).
	DefaultDurationSeconds = 3600
	// MaxAttempts is how many times a retryable CreateSession failure is
	// tried in all (the AWS SDK's standard retryer).
	MaxAttempts = 3
	// DefaultTimeout bounds each attempt when Options.HTTPClient is nil.
	DefaultTimeout = 30 * time.Second
)

// Errors callers branch on (with errors.Is).
var (
	// ErrInvalidOptions means Options are incomplete or malformed (a
	// missing ARN, a bad endpoint, a negative duration).
	ErrInvalidOptions = errors.New("invalid options")
	// ErrRegionMismatch means the trust anchor and profile ARNs name
	// different regions; aws_signing_helper refuses this too.
	ErrRegionMismatch = errors.New("trust anchor and profile regions don't match")
	// ErrNotHostFolder means Options.Dir is not an enrolled host folder.
	ErrNotHostFolder = errors.New("not an enrolled host folder")
	// ErrCertificateExpired means the current certificate is past its
	// NotAfter: it can no longer authenticate; renew or re-enroll.
	ErrCertificateExpired = errors.New("certificate has expired")
	// ErrCertificateNotYetValid means the current certificate's NotBefore
	// is in the future (often a slow local clock).
	ErrCertificateNotYetValid = errors.New("certificate is not valid yet")
	// ErrAccessDenied matches an *APIError whose code is
	// AccessDeniedException (untrusted certificate, bad signature, role not
	// in the profile, ...).
	ErrAccessDenied = errors.New("access denied")
	// ErrThrottled matches an *APIError for a throttling answer.
	ErrThrottled = errors.New("throttled")
	// ErrNoCredentials means CreateSession answered 2xx without a usable
	// credential set.
	ErrNoCredentials = errors.New("unable to obtain temporary security credentials from CreateSession")
)

// Options say which host folder to read and which Roles Anywhere session to
// ask for. Dir and the three ARNs are required.
type Options struct {
	// Dir is the host folder (DIR/current -> versions/NNNNNN).
	Dir string
	// TrustAnchorARN, ProfileARN and RoleARN name the session.
	TrustAnchorARN, ProfileARN, RoleARN string
	// Region is the signing region; default: the trust anchor ARN's.
	Region string
	// Endpoint is the Roles Anywhere base URL; default
	// https://rolesanywhere.<region>.amazonaws.com. A path, if any, is kept
	// and /sessions appended to it.
	Endpoint string
	// DurationSeconds is the session duration asked for; 0 means
	// DefaultDurationSeconds. The service bounds it (900–43200).
	DurationSeconds int
	// RoleSessionName is sent only when not empty (the profile must accept
	// it).
	RoleSessionName string
	// HTTPClient sends the request; nil means DefaultHTTPClient().
	HTTPClient *http.Client
	// Now is the clock used for signing and the validity check; nil means
	// time.Now.
	Now func() time.Time
}

// Output is what a credential_process prints, field for field and in the
// order of aws_signing_helper's CredentialProcessOutput. Marshalled with
// encoding/json it is byte-compatible with the helper's output; the AWS
// SDKs' process credential providers read it.
type Output struct {
	// Version is always 1.
	Version int `json:"Version"`
	// AccessKeyId is the temporary access key.
	AccessKeyId string `json:"AccessKeyId"` //nolint:revive // the JSON contract's spelling
	// SecretAccessKey is its secret.
	SecretAccessKey string `json:"SecretAccessKey"`
	// SessionToken is the STS session token.
	SessionToken string `json:"SessionToken"`
	// Expiration is the service's RFC 3339 timestamp, passed through
	// verbatim.
	Expiration string `json:"Expiration"`
}

// Expires parses Expiration.
func (o *Output) Expires() (time.Time, error) {
	t, err := time.Parse(time.RFC3339, o.Expiration)
	if err != nil {
		return time.Time{}, fmt.Errorf("credproc: expiration %q: %w", o.Expiration, err)
	}
	return t, nil
}

// Credentials loads the current version of opts.Dir, calls CreateSession
// with it and returns the temporary credentials.
func Credentials(ctx context.Context, opts Options) (*Output, error) {
	now := opts.Now
	now = clock.Or(now)
	region, endpoint, err := resolve(&opts)
	if err != nil {
		return nil, err
	}
	v, err := loadCurrent(opts.Dir)
	if err != nil {
		return nil, err
	}
	if t := now(); t.After(v.Cert.NotAfter) {
		return nil, fmt.Errorf("%s version %s: %w: serial %x expired at %s; renew it (lanyard renew --dir %s) or re-enroll",
			opts.Dir, v.Name, ErrCertificateExpired, v.Cert.SerialNumber, v.Cert.NotAfter.UTC().Format(time.RFC3339), opts.Dir)
	} else if t.Before(v.Cert.NotBefore) {
		return nil, fmt.Errorf("%s version %s: %w: serial %x starts at %s (check this host's clock)",
			opts.Dir, v.Name, ErrCertificateNotYetValid, v.Cert.SerialNumber, v.Cert.NotBefore.UTC().Format(time.RFC3339))
	}

	body, err := requestBody(opts)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("profileArn", opts.ProfileARN)
	q.Set("roleArn", opts.RoleARN)
	q.Set("trustAnchorArn", opts.TrustAnchorARN)
	target := endpoint + "/sessions?" + strings.ReplaceAll(q.Encode(), "+", "%20")

	client := opts.HTTPClient
	if client == nil {
		if client, err = DefaultHTTPClient(); err != nil {
			return nil, err
		}
	}
	invocation := newInvocationID()
	var lastErr error
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := sleep(ctx, backoff(attempt-1)); err != nil {
				return nil, fmt.Errorf("CreateSession: %w (after %d attempts; last error: %w)", err, attempt-1, lastErr)
			}
		}
		out, retry, err := send(ctx, client, target, body, invocation, attempt, v, region, now())
		if err == nil {
			return out, nil
		}
		lastErr = err
		if !retry {
			break
		}
		if attempt == MaxAttempts {
			return nil, fmt.Errorf("%w (gave up after %d attempts)", err, MaxAttempts)
		}
	}
	return nil, lastErr
}

// resolve validates opts and returns the signing region and the endpoint
// (without a trailing slash).
func resolve(opts *Options) (region, endpoint string, err error) {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"dir", opts.Dir}, {"trust anchor ARN", opts.TrustAnchorARN},
		{"profile ARN", opts.ProfileARN}, {"role ARN", opts.RoleARN},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return "", "", fmt.Errorf("%w: missing %s", ErrInvalidOptions, strings.Join(missing, ", "))
	}
	if opts.DurationSeconds < 0 {
		return "", "", fmt.Errorf("%w: session duration %d is negative", ErrInvalidOptions, opts.DurationSeconds)
	}
	ta, err := arn.Parse(opts.TrustAnchorARN)
	if err != nil {
		return "", "", fmt.Errorf("%w: trust anchor ARN %q: %w", ErrInvalidOptions, opts.TrustAnchorARN, err)
	}
	pa, err := arn.Parse(opts.ProfileARN)
	if err != nil {
		return "", "", fmt.Errorf("%w: profile ARN %q: %w", ErrInvalidOptions, opts.ProfileARN, err)
	}
	if _, err := arn.Parse(opts.RoleARN); err != nil {
		return "", "", fmt.Errorf("%w: role ARN %q: %w", ErrInvalidOptions, opts.RoleARN, err)
	}
	if ta.Region != pa.Region {
		return "", "", fmt.Errorf("%w: trust anchor in %q, profile in %q", ErrRegionMismatch, ta.Region, pa.Region)
	}
	region = opts.Region
	if region == "" {
		region = ta.Region
	}
	if region == "" {
		return "", "", fmt.Errorf("%w: no region (the trust anchor ARN names none; pass a region)", ErrInvalidOptions)
	}
	endpoint = opts.Endpoint
	if endpoint == "" {
		endpoint = "https://rolesanywhere." + region + ".amazonaws.com"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("%w: endpoint %q is not an http(s) base URL", ErrInvalidOptions, endpoint)
	}
	return region, strings.TrimRight(endpoint, "/"), nil
}

// loadCurrent resolves DIR/current once and loads that version. It builds the
// Dir by hand rather than with hostdir.Open: a credential process must not
// create the folder, take its lock or clean it up (it may run as a user who
// can only read DIR).
func loadCurrent(dir string) (*hostdir.Version, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("host folder %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", abs, ErrNotHostFolder, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: %w: not a folder", abs, ErrNotHostFolder)
	}
	d, err := hostdir.OpenReadOnly(abs)
	if err != nil {
		if errors.Is(err, hostdir.ErrNotEnrolled) {
			return nil, fmt.Errorf("%s: %w: %w", abs, ErrNotHostFolder, err)
		}
		return nil, err
	}
	v, err := d.LoadCurrent()
	if err != nil {
		if errors.Is(err, hostdir.ErrNotEnrolled) {
			return nil, fmt.Errorf("%s: %w: %w", abs, ErrNotHostFolder, err)
		}
		return nil, err
	}
	return v, nil
}

// sessionRequest is CreateSession's JSON body, in the helper's field order.
type sessionRequest struct {
	DurationSeconds int    `json:"durationSeconds"`
	RoleSessionName string `json:"roleSessionName,omitempty"`
}

func requestBody(opts Options) ([]byte, error) {
	d := opts.DurationSeconds
	if d == 0 {
		d = DefaultDurationSeconds
	}
	b, err := json.Marshal(sessionRequest{DurationSeconds: d, RoleSessionName: opts.RoleSessionName})
	if err != nil {
		return nil, fmt.Errorf("encode the CreateSession request: %w", err)
	}
	return b, nil
}

// sessionResponse is the part of CreateSession's answer that is used.
type sessionResponse struct {
	CredentialSet []struct {
		Credentials *struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      string `json:"expiration"`
		} `json:"credentials"`
	} `json:"credentialSet"`
}

// maxResponse bounds the bytes read from an answer.
const maxResponse = 1 << 20

// send makes one signed attempt. retry reports whether a failure may be
// retried.
func send(ctx context.Context, client *http.Client, target string, body []byte, invocation string, attempt int,
	v *hostdir.Version, region string, now time.Time) (out *Output, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, false, fmt.Errorf("CreateSession: build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Amz-Sdk-Invocation-Id", invocation)
	req.Header.Set("Amz-Sdk-Request", fmt.Sprintf("attempt=%d; max=%d", attempt, MaxAttempts))
	req.Header.Set("User-Agent", "lanyard-credential-process")
	var chain []*x509.Certificate
	if len(v.Chain) > 0 {
		chain = v.Chain
	}
	if err := x509sigv4.Sign(req, body, v.Key, v.Cert, chain, region, now); err != nil {
		return nil, false, fmt.Errorf("CreateSession: sign with version %s: %w", v.Name, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("CreateSession: %w", ctx.Err())
		}
		return nil, retryableTransport(err), fmt.Errorf("CreateSession: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, true, fmt.Errorf("CreateSession: read answer (%s): %w", resp.Status, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := parseAPIError(resp, raw)
		return nil, ae.retryable(), ae
	}
	var sr sessionResponse
	if err := json.Unmarshal(raw, &sr); err != nil {
		return nil, false, fmt.Errorf("CreateSession: %w: answer %s is not JSON: %w", ErrNoCredentials, resp.Status, err)
	}
	if len(sr.CredentialSet) == 0 || sr.CredentialSet[0].Credentials == nil {
		return nil, false, fmt.Errorf("CreateSession: %w", ErrNoCredentials)
	}
	c := sr.CredentialSet[0].Credentials
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"accessKeyId", c.AccessKeyID}, {"secretAccessKey", c.SecretAccessKey},
		{"sessionToken", c.SessionToken}, {"expiration", c.Expiration},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, false, fmt.Errorf("CreateSession: %w: the answer lacks %s", ErrNoCredentials, strings.Join(missing, ", "))
	}
	o := &Output{Version: 1, AccessKeyId: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expiration: c.Expiration}
	if _, err := o.Expires(); err != nil {
		return nil, false, fmt.Errorf("CreateSession: %w: %w", ErrNoCredentials, err)
	}
	return o, false, nil
}

// retryableTransport reports whether a transport error is worth another
// attempt, as the SDK's standard retryer sees it: connection refusals, resets
// and timeouts are; a TLS certificate the client does not trust is not (it
// will not change between attempts).
func retryableTransport(err error) bool {
	var cvErr *tls.CertificateVerificationError
	var uaErr x509.UnknownAuthorityError
	var hnErr x509.HostnameError
	var ciErr x509.CertificateInvalidError
	return !errors.As(err, &cvErr) && !errors.As(err, &uaErr) && !errors.As(err, &hnErr) && !errors.As(err, &ciErr)
}

// backoff is the delay before retry n (1-based): full jitter over
// 100 ms · 2^n, capped at 2 s.
func backoff(n int) time.Duration {
	ceil := min(100*time.Millisecond<<n, 2*time.Second)
	return time.Duration(mrand.Int64N(int64(ceil))) + 10*time.Millisecond
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newInvocationID returns a random UUID (version 4), as the SDK sends in
// amz-sdk-invocation-id.
func newInvocationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// DefaultHTTPClient is the client used when Options.HTTPClient is nil: Go's
// default transport (proxy from the environment, system roots, which
// SSL_CERT_FILE can replace), a DefaultTimeout per attempt, and, like the AWS
// SDKs, the certificates of the file named by AWS_CA_BUNDLE added to the
// trusted roots.
func DefaultHTTPClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if p := os.Getenv("AWS_CA_BUNDLE"); p != "" {
		pemData, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("AWS_CA_BUNDLE: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("AWS_CA_BUNDLE %s holds no PEM certificate", p)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: DefaultTimeout}, nil
}
