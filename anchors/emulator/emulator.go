// Package emulator is a local emulator of AWS IAM Roles Anywhere for
// tests, demos and the dev server. It serves, over plain HTTP or TLS:
//
//   - the control plane that lanyard's sync uses (trust anchors, profiles,
//     CRLs), restjson exactly as aws-sdk-go-v2's service/rolesanywhere client
//     sends it, every request verified with standard SigV4 against one
//     configured access key, with AWS's limits and error shapes;
//   - the data plane, POST /sessions (CreateSession), verified as the service
//     does (../shared/reference/rolesanywhere.md §6): the X.509 SigV4 variant,
//     the leaf rules, a PKIX path to the trust anchor's bundle, revocation
//     against the anchor's enabled CRLs (and, with crlDpRevocationEnabled,
//     the certificates' distribution points, crldp.go), the profile and
//     role checks, the profile's attribute mappings (session tags) and the
//     role's trust policy when one is given (SetRoleTrustPolicy; evaluated
//     by package anchors/trust, as `lanyard anchors explain` does). Sessions
//     handed out are recorded (Sessions), and so are the certificates that
//     tried (ListSubjects, GetSubject);
//   - STS GetCallerIdentity on POST / for the sessions it issued (sts.go);
//   - attribute mappings, notification settings and resource tags.
//
// Use NewServer like httptest.NewServer, or New(...).Handler() to mount the
// emulator in-process (under a prefix with http.StripPrefix if wanted).
//
// Behaviour the emulator chooses where AWS's is not documented is noted on the
// relevant names. Notably: trust anchors, profiles and CRLs created through
// the API are disabled unless the request sets "enabled": true (the Seed*
// helpers enable them by default); CRLs must be PEM (DER is refused, as the
// API reference says); the length limit of x509CertificateData is not
// enforced (its current value is unknown), the 2-certificate limit is; and
// revocation is checked for every certificate of the path below the anchor
// certificate, leaf and intermediates alike.
package emulator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/lanyard/lanyard/anchors/trust"
	"github.com/lanyard/lanyard/internal/clock"
)

// Defaults used when Options leaves a field empty.
const (
	DefaultRegion          = "us-east-1"
	DefaultAccountID       = "123456789012"
	DefaultAccessKeyID     = "AKIAEMULATOR00000000"
	DefaultSecretAccessKey = "emulator/secret/access/key/0000000000000"
)

// Options configures an Emulator. The zero value is usable.
type Options struct {
	// Region is the region the emulator serves (ARNs, SigV4 scopes).
	// Default DefaultRegion.
	Region string
	// AccountID is the account in every ARN. Default DefaultAccountID.
	AccountID string
	// AccessKeyID and SecretAccessKey are the only credentials the control
	// plane accepts (SigV4, service "rolesanywhere"). Defaults
	// DefaultAccessKeyID and DefaultSecretAccessKey.
	AccessKeyID     string
	SecretAccessKey string
	// Now is the emulator's clock (signature skew, certificate validity,
	// credential expiration). Default time.Now.
	Now func() time.Time
	// ThrottleFirstN makes the first N control-plane requests (after
	// authentication) fail with 429 ThrottlingException, to exercise retry
	// and backoff. See also Emulator.ThrottleNext.
	ThrottleFirstN int
	// Logger receives one line per request and the reason of every refusal.
	// Default: discard.
	Logger *slog.Logger
	// FetchCRL fetches a CRL distribution point for anchors with
	// crlDpRevocationEnabled (see crldp.go). Default: HTTP GET, 5 s,
	// at most MaxCRLBytes.
	FetchCRL func(ctx context.Context, url string) ([]byte, error)

	// TLS makes NewServer serve HTTPS with a certificate for 127.0.0.1 and
	// localhost issued by a fresh CA (Server.CACertPEM). Ignored by New.
	TLS bool
	// Addr is the address NewServer listens on. Default "127.0.0.1:0".
	Addr string
}

// Emulator holds the emulated service state and serves it. Create it with
// New; all methods are safe for concurrent use.
type Emulator struct {
	region, account string
	creds           aws.Credentials
	now             func() time.Time
	log             *slog.Logger
	fetchCRL        func(ctx context.Context, url string) ([]byte, error)

	mu       sync.Mutex
	throttle int
	anchors  []*trustAnchor
	profiles []*profile
	crls     []*crl
	sessions []Session
	issued   map[string]*issuedCreds // access key ID -> what STS checks
	// subjects by x509 subject string, and in first-seen order.
	subjects      map[string]*subjectRec
	subjectOrder  []*subjectRec
	trustPolicies map[string]*trust.Policy // role ARN -> its trust policy
	requestID     uint64
}

// issuedCreds are the temporary credentials of one session, as STS checks
// them.
type issuedCreds struct {
	secret, token string
	expiration    time.Time
	arn, userID   string
	account       string
}

// New returns an Emulator with empty state.
func New(opts Options) *Emulator {
	e := &Emulator{
		region:   opts.Region,
		account:  opts.AccountID,
		now:      opts.Now,
		log:      opts.Logger,
		throttle: opts.ThrottleFirstN,
		subjects: map[string]*subjectRec{}, issued: map[string]*issuedCreds{},
		trustPolicies: map[string]*trust.Policy{},
	}
	if e.region == "" {
		e.region = DefaultRegion
	}
	if e.account == "" {
		e.account = DefaultAccountID
	}
	e.now = clock.Or(e.now)
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e.fetchCRL = opts.FetchCRL
	if e.fetchCRL == nil {
		e.fetchCRL = defaultFetchCRL
	}
	e.creds = aws.Credentials{AccessKeyID: opts.AccessKeyID, SecretAccessKey: opts.SecretAccessKey}
	if e.creds.AccessKeyID == "" {
		e.creds.AccessKeyID = DefaultAccessKeyID
	}
	if e.creds.SecretAccessKey == "" {
		e.creds.SecretAccessKey = DefaultSecretAccessKey
	}
	return e
}

// Region returns the region the emulator serves.
func (e *Emulator) Region() string { return e.region }

// AccountID returns the account used in ARNs.
func (e *Emulator) AccountID() string { return e.account }

// AccessKeyID returns the access key the control plane accepts.
func (e *Emulator) AccessKeyID() string { return e.creds.AccessKeyID }

// SecretAccessKey returns the secret of AccessKeyID.
func (e *Emulator) SecretAccessKey() string { return e.creds.SecretAccessKey }

// ThrottleNext makes the next n control-plane requests fail with 429
// ThrottlingException.
func (e *Emulator) ThrottleNext(n int) {
	e.mu.Lock()
	e.throttle = n
	e.mu.Unlock()
}

// Session records one successful CreateSession.
type Session struct {
	// Time is when the credentials were issued (the emulator's clock).
	Time time.Time
	// Serial is the leaf certificate's serial number.
	Serial *big.Int
	// CommonName is the leaf's subject CN.
	CommonName string
	// Subject is the leaf's subject DN (RFC 2253 form).
	Subject string
	// TrustAnchorArn, ProfileArn and RoleArn are the ARNs of the request.
	TrustAnchorArn, ProfileArn, RoleArn string
	// RoleSessionName is the session name (the request's, or the hex serial).
	RoleSessionName string
	// SourceIdentity is as returned to the caller ("CN=…", "ID=…" or "").
	SourceIdentity string
	// DurationSeconds is the granted duration.
	DurationSeconds int
	// AccessKeyID is the issued access key.
	AccessKeyID string
	// Expiration is when the issued credentials expire.
	Expiration time.Time
	// AssumedRoleArn and AssumedRoleID are what STS GetCallerIdentity
	// answers for the session (Arn, UserId).
	AssumedRoleArn, AssumedRoleID string
	// Tags are the session tags the profile's attribute mappings gave
	// (keys without "aws:PrincipalTag/").
	Tags map[string]string
	// SessionPolicy and ManagedPolicyArns are the profile's, passed to the
	// session (recorded; IAM authorization of later calls is not emulated).
	SessionPolicy     string
	ManagedPolicyArns []string
	// SourceIP is the CreateSession client's address.
	SourceIP string
}

// Sessions returns a copy of every session handed out, oldest first.
func (e *Emulator) Sessions() []Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Session(nil), e.sessions...)
}

// Handler returns the emulator's HTTP handler: POST /sessions and the
// control-plane routes. Mounted under a prefix (http.StripPrefix), the
// control-plane SigV4 check still uses the original request URI.
func (e *Emulator) Handler() http.Handler {
	return http.HandlerFunc(e.serveHTTP)
}

// AWSConfig returns an aws.Config for the real SDK clients: the emulator's
// region and static credentials, BaseEndpoint set to endpoint, and
// httpClient (nil for the SDK's default).
func (e *Emulator) AWSConfig(endpoint string, httpClient aws.HTTPClient) aws.Config {
	cfg := aws.Config{
		Region:       e.region,
		Credentials:  credentials.NewStaticCredentialsProvider(e.creds.AccessKeyID, e.creds.SecretAccessKey, ""),
		BaseEndpoint: aws.String(endpoint),
	}
	if httpClient != nil {
		cfg.HTTPClient = httpClient
	}
	return cfg
}

// Server is an Emulator listening on a loopback port, like httptest.Server.
type Server struct {
	*Emulator
	// URL is the base URL, e.g. "http://127.0.0.1:43127" (no trailing slash).
	URL string

	srv       *http.Server
	ln        net.Listener
	caPEM     []byte
	caPool    *x509.CertPool
	closeOnce sync.Once
}

// NewServer starts an emulator on opts.Addr (default 127.0.0.1, random port),
// over HTTPS when opts.TLS is set. It panics if it cannot listen, like
// httptest.NewServer. Call Close when done.
func NewServer(opts Options) *Server {
	s, err := Start(opts)
	if err != nil {
		panic("emulator: " + err.Error())
	}
	return s
}

// Start is NewServer returning an error instead of panicking.
func Start(opts Options) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Emulator: New(opts), ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if opts.TLS {
		cert, caPEM, err := selfSignedTLS()
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.caPEM = caPEM
		s.caPool = x509.NewCertPool()
		s.caPool.AppendCertsFromPEM(caPEM)
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.ln = tls.NewListener(ln, s.srv.TLSConfig)
		scheme = "https"
	}
	s.URL = scheme + "://" + ln.Addr().String()
	go func() { _ = s.srv.Serve(s.ln) }()
	return s, nil
}

// Close stops the server and closes its connections.
func (s *Server) Close() {
	s.closeOnce.Do(func() { _ = s.srv.Close() })
}

// CACertPEM returns the PEM of the CA that issued the TLS certificate (nil
// over plain HTTP). Give it to aws_signing_helper as SSL_CERT_FILE.
func (s *Server) CACertPEM() []byte { return s.caPEM }

// Client returns an *http.Client that trusts the server's TLS certificate.
// Each call makes a new transport with its own idle connections: call it
// once and reuse the client (one per input of a fuzz run leaks a
// connection each).
func (s *Server) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.caPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Config returns an aws.Config pointing the real SDK clients at the server
// (see Emulator.AWSConfig).
func (s *Server) Config() aws.Config {
	return s.AWSConfig(s.URL, s.Client())
}

// selfSignedTLS makes a CA and a server certificate for 127.0.0.1, ::1 and
// localhost, valid for a week.
func selfSignedTLS() (tls.Certificate, []byte, error) {
	// The system clock, not the emulator's: the peers that verify this
	// certificate (the AWS SDK's TLS) run on the system clock.
	now := clock.System{}.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caT := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "emulator CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, caKey.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	t := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, caPEM, nil
}

func (e *Emulator) nextRequestID() string {
	e.mu.Lock()
	e.requestID++
	n := e.requestID
	e.mu.Unlock()
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
}
