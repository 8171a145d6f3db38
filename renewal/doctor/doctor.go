// Package doctor checks an enrolled host end to end and reports one short
// verdict per check, for `lanyard doctor --dir DIR`: the host folder's files
// and their permissions, that the certificate matches its key and chains to
// the root the CA serves, how long it has left and when it will be renewed,
// whether the CA still issues it as is, the CA's CRL, the clock against the
// CA's, the AWS config profile that hands the certificate to AWS, and
// (given a Roles Anywhere endpoint) a real CreateSession.
//
// Check never panics and never changes anything: it reads the folder without
// taking its lock (a running agent is not disturbed) and only sends GET
// requests and GetRenewalInfo to the CA. Every check yields exactly one
// Finding; a check that cannot run (the CA is unreachable, no certificate to
// look at) says so with SeveritySkip instead of failing twice.
package doctor

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// Severity grades a Finding.
type Severity int

// Severities, from good to bad.
const (
	// SeverityOK: the check passed.
	SeverityOK Severity = iota
	// SeveritySkip: the check could not run or does not apply (the
	// message says why); it is not a failure.
	SeveritySkip
	// SeverityWarn: works now, but needs attention.
	SeverityWarn
	// SeverityFail: broken; the host will not get (or keep getting) AWS
	// credentials until it is fixed.
	SeverityFail
)

// String returns the label the CLI prints: "ok", "skip", "WARN" or "FAIL".
func (s Severity) String() string {
	switch s {
	case SeverityOK:
		return "ok"
	case SeveritySkip:
		return "skip"
	case SeverityWarn:
		return "WARN"
	case SeverityFail:
		return "FAIL"
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// Names of the checks, in the order Check runs them (Finding.Name).
const (
	CheckFiles         = "files"
	CheckKeyMatch      = "key-match"
	CheckPermissions   = "permissions"
	CheckCA            = "ca"
	CheckChain         = "chain"
	CheckRenewal       = "renewal"
	CheckProfileCN     = "profile-cn"
	CheckCRL           = "crl"
	CheckClock         = "clock-skew"
	CheckAWSProfile    = "aws-profile"
	CheckCreateSession = "create-session"
)

// Clock-skew thresholds against the CA's Date header. Roles Anywhere, like
// SigV4, refuses signatures more than five minutes off.
const (
	SkewWarn = 30 * time.Second
	SkewFail = 5 * time.Minute
)

// DefaultTimeout bounds each request to the CA when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Finding is the verdict of one check.
type Finding struct {
	// Name identifies the check (one of the Check* constants).
	Name string
	// OK is false exactly when Severity is SeverityFail.
	OK bool
	// Severity grades the finding.
	Severity Severity
	// Message is the one-line verdict, e.g. "chain verifies to the CA root
	// (CN=lanyard Root CA)".
	Message string
}

// String formats the finding as the CLI prints it: the severity label padded
// to six columns, then the message, e.g. "ok    chain verifies to the CA root".
func (f Finding) String() string {
	return fmt.Sprintf("%-6s%s", f.Severity, f.Message)
}

// Failed reports whether any finding failed.
func Failed(findings []Finding) bool {
	for _, f := range findings {
		if f.Severity == SeverityFail {
			return true
		}
	}
	return false
}

// Options say what to check. Only Dir is required; the rest defaults from
// DIR/enrollment.json.
type Options struct {
	// Dir is the host folder.
	Dir string
	// CAURL is the CA's base URL; default: enrollment.json's "ca". The CA's
	// TLS certificate is verified against DIR/ca.pem.
	CAURL string
	// Endpoint, when set, makes Check call CreateSession there through
	// credproc. The ARNs and Region default to enrollment.json's aws
	// settings.
	Endpoint                            string
	TrustAnchorARN, ProfileARN, RoleARN string
	Region                              string
	// AWSConfigFile and AWSProfile name the AWS config profile to check;
	// defaults: enrollment.json's aws settings, then awsconfig.Path(). With
	// no profile name at all the check is skipped.
	AWSConfigFile, AWSProfile string
	// HTTPClient is used for CreateSession (nil: credproc's default).
	HTTPClient *http.Client
	// Timeout bounds each request to the CA; default DefaultTimeout.
	Timeout time.Duration
	// Now is the local clock; default time.Now.
	Now func() time.Time
}

// state is what the checks learn and share.
type state struct {
	opts    Options
	now     func() time.Time
	dir     string       // absolute
	hd      *hostdir.Dir // the host folder, opened read-only
	enr     *hostdir.Enrollment
	enrErr  error
	roots   []byte // DIR/ca.pem
	version string // resolved current
	vpath   string
	cert    *x509.Certificate
	chain   []*x509.Certificate
	keyOK   bool

	caURL    string
	client   *http.Client
	caErr    error     // non-nil: the CA could not be reached
	caDate   time.Time // the CA's Date header
	caLocal  time.Time // local time when the answer came (midpoint)
	info     *renewalInfo
	infoErr  error
	infoDone bool
}

// Check runs every check and returns one Finding each, in the order of the
// Check* constants.
func Check(ctx context.Context, opts Options) []Finding {
	s := &state{opts: opts, now: opts.Now}
	s.now = clock.Or(s.now)
	if opts.Timeout <= 0 {
		s.opts.Timeout = DefaultTimeout
	}
	out := []Finding{s.checkFiles()}
	out = append(out, s.checkKeyMatch(), s.checkPermissions())
	out = append(out, s.checkCA(ctx))
	out = append(out, s.checkChain(ctx), s.checkRenewal(ctx), s.checkProfileCN(ctx), s.checkCRL(ctx), s.checkClock())
	out = append(out, s.checkAWSProfile(), s.checkCreateSession(ctx))
	return out
}

func ok(name, format string, args ...any) Finding {
	return Finding{Name: name, OK: true, Severity: SeverityOK, Message: fmt.Sprintf(format, args...)}
}

func warn(name, format string, args ...any) Finding {
	return Finding{Name: name, OK: true, Severity: SeverityWarn, Message: fmt.Sprintf(format, args...)}
}

func skip(name, format string, args ...any) Finding {
	return Finding{Name: name, OK: true, Severity: SeveritySkip, Message: fmt.Sprintf(format, args...)}
}

func fail(name, format string, args ...any) Finding {
	return Finding{Name: name, OK: false, Severity: SeverityFail, Message: fmt.Sprintf(format, args...)}
}

// oneLine keeps an error message to one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// checkFiles: the folder exists, `current` resolves, the version folder holds
// its four files, the Certbot-style links and the enrollment record exist.
func (s *state) checkFiles() Finding {
	if s.opts.Dir == "" {
		return fail(CheckFiles, "no host folder given (--dir)")
	}
	abs, err := filepath.Abs(s.opts.Dir)
	if err != nil {
		return fail(CheckFiles, "host folder %s: %s", s.opts.Dir, oneLine(err))
	}
	s.dir = abs
	fi, err := os.Stat(abs)
	if err != nil {
		return fail(CheckFiles, "host folder %s: %s", abs, oneLine(err))
	}
	if !fi.IsDir() {
		return fail(CheckFiles, "host folder %s is not a folder", abs)
	}
	s.readEnrollment()
	d, err := hostdir.OpenReadOnly(abs)
	if err != nil {
		return fail(CheckFiles, "host folder %s: %s", abs, oneLine(err))
	}
	s.hd = d
	v, err := d.Current()
	if err != nil {
		if errors.Is(err, hostdir.ErrNotEnrolled) {
			return fail(CheckFiles, "%s has no current version (%s missing): not enrolled (run lanyard enroll)", abs, hostdir.CurrentLink)
		}
		return fail(CheckFiles, "%s/%s does not resolve: %s", abs, hostdir.CurrentLink, oneLine(err))
	}
	s.version, s.vpath = v, d.VersionPath(v)
	var missing []string
	for _, name := range []string{hostdir.CertFile, hostdir.ChainFile, hostdir.FullchainFile, hostdir.KeyFile} {
		if _, err := os.Stat(filepath.Join(s.vpath, name)); err != nil {
			missing = append(missing, filepath.Join(hostdir.VersionsDir, v, name))
		}
	}
	if len(missing) > 0 {
		return fail(CheckFiles, "current -> %s/%s is incomplete: %s missing", hostdir.VersionsDir, v, strings.Join(missing, ", "))
	}
	s.loadCertificates()
	var notes []string
	for _, name := range []string{hostdir.CertFile, hostdir.ChainFile, hostdir.FullchainFile, hostdir.KeyFile} {
		if _, err := os.Stat(filepath.Join(abs, name)); err != nil {
			notes = append(notes, name)
		}
	}
	if s.enrErr != nil {
		return warn(CheckFiles, "current -> %s/%s is complete, but %s", hostdir.VersionsDir, v, oneLine(s.enrErr))
	}
	if len(notes) > 0 {
		return warn(CheckFiles, "current -> %s/%s is complete, but the Certbot-style links %s are missing (lanyard renew or the agent re-creates them)",
			hostdir.VersionsDir, v, strings.Join(notes, ", "))
	}
	return ok(CheckFiles, "files present: current -> %s/%s (cert, chain, fullchain, privkey), %s, %s",
		hostdir.VersionsDir, v, hostdir.EnrollmentFile, hostdir.RootsFile)
}

// readEnrollment reads DIR/enrollment.json and DIR/ca.pem, each on its own so
// that one missing file does not hide the other.
func (s *state) readEnrollment() {
	var errs []string
	if e, err := hostdir.ReadEnrollmentFile(s.dir); errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, hostdir.EnrollmentFile+" is missing")
	} else if err != nil {
		errs = append(errs, oneLine(err))
	} else {
		s.enr = e
	}
	if roots, err := hostdir.ReadRoots(s.dir); err != nil {
		errs = append(errs, hostdir.RootsFile+" (the CA roots) is missing")
	} else {
		s.roots = roots
	}
	if len(errs) > 0 {
		s.enrErr = errors.New(strings.Join(errs, "; "))
	}
}

// loadCertificates parses cert.pem and chain.pem of the current version for
// the later checks, whatever the key says.
func (s *state) loadCertificates() {
	raw, err := os.ReadFile(filepath.Join(s.vpath, hostdir.CertFile))
	if err != nil {
		return
	}
	certs, err := caclient.ParseCertificates(raw)
	if err != nil || len(certs) == 0 {
		return
	}
	s.cert = certs[0]
	if raw, err := os.ReadFile(filepath.Join(s.vpath, hostdir.ChainFile)); err == nil {
		if chain, err := caclient.ParseCertificates(raw); err == nil {
			s.chain = chain
		}
	}
}

// checkKeyMatch loads the version as the credential process does, which
// checks that the certificate is the key's.
func (s *state) checkKeyMatch() Finding {
	if s.version == "" {
		return skip(CheckKeyMatch, "certificate and key not checked: no current version")
	}
	v, err := s.hd.Load(s.version)
	switch {
	case errors.Is(err, hostdir.ErrMismatch):
		return fail(CheckKeyMatch, "certificate does not match the private key in %s/%s: the pair is unusable (renew with --force or re-enroll)",
			hostdir.VersionsDir, s.version)
	case err != nil:
		return fail(CheckKeyMatch, "version %s does not load: %s", s.version, oneLine(err))
	}
	s.keyOK = true
	s.cert, s.chain = v.Cert, v.Chain
	return ok(CheckKeyMatch, "certificate matches the private key (%s, serial %s)", keyDescription(v.Cert), serialHex(v.Cert))
}

func keyDescription(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", c.PublicKey)
}

// serialHex formats a serial as the CA's store keys it: 32 lower-case hex
// digits, left-padded.
func serialHex(c *x509.Certificate) string {
	return lanyardv1.FormatSerial(c.SerialNumber)
}

// checkPermissions: the private key readable by its owner only, and the
// folders a planted link or file could redirect privkey.pem through (DIR,
// DIR/versions, the current version) real folders of this user that nobody
// else can write (hostdir.CheckSafe, the rule hostdir.Open enforces).
func (s *state) checkPermissions() Finding {
	if s.dir == "" {
		return skip(CheckPermissions, "permissions not checked: no host folder")
	}
	var problems []string
	if err := hostdir.CheckSafe(s.dir); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			problems = append(problems, strings.TrimPrefix(line, hostdir.ErrUnsafe.Error()+": "))
		}
	}
	keyMode := ""
	if s.vpath != "" {
		kp := filepath.Join(s.vpath, hostdir.KeyFile)
		if fi, err := os.Stat(kp); err == nil {
			keyMode = fmt.Sprintf("%04o", fi.Mode().Perm())
			if fi.Mode().Perm()&0o077 != 0 {
				problems = append(problems, fmt.Sprintf("%s is %s, want 0600", kp, keyMode))
			}
		}
	}
	if len(problems) > 0 {
		return fail(CheckPermissions, "permissions: %s", strings.Join(problems, "; "))
	}
	if keyMode == "" {
		return ok(CheckPermissions, "permissions: folders are this user's and nobody else can write them (no private key to check)")
	}
	return ok(CheckPermissions, "permissions: privkey.pem %s, folders are this user's and nobody else can write them", keyMode)
}

// checkCA reaches the CA's /healthz over TLS verified against DIR/ca.pem, and
// keeps its Date header for the clock check.
func (s *state) checkCA(ctx context.Context) Finding {
	s.caURL = strings.TrimRight(s.opts.CAURL, "/")
	if s.caURL == "" && s.enr != nil {
		s.caURL = strings.TrimRight(s.enr.CA, "/")
	}
	if s.caURL == "" {
		s.caErr = errors.New("no CA URL")
		return fail(CheckCA, "no CA URL: %s has none and --ca was not given", hostdir.EnrollmentFile)
	}
	if s.roots == nil {
		s.caErr = errors.New("no CA roots")
		return fail(CheckCA, "cannot reach the CA safely: %s (the roots to verify %s with) is missing", filepath.Join(s.dir, hostdir.RootsFile), s.caURL)
	}
	pool, err := caclient.Pool(s.roots)
	if err != nil {
		s.caErr = err
		return fail(CheckCA, "%s: %s", filepath.Join(s.dir, hostdir.RootsFile), oneLine(err))
	}
	s.client = caclient.HTTPClient(pool, nil)
	s.client.Timeout = s.opts.Timeout
	before := s.now()
	resp, _, err := s.get(ctx, "/healthz")
	after := s.now()
	if err != nil {
		s.caErr = err
		return fail(CheckCA, "CA unreachable at %s: %s", s.caURL, oneLine(err))
	}
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		s.caDate = d
		s.caLocal = before.Add(after.Sub(before) / 2)
	}
	if resp.StatusCode != http.StatusOK {
		return warn(CheckCA, "CA at %s answers /healthz with %s", s.caURL, resp.Status)
	}
	return ok(CheckCA, "CA reachable at %s (TLS verified against %s)", s.caURL, hostdir.RootsFile)
}

// maxBody bounds what is read from the CA.
const maxBody = 8 << 20

// get fetches path from the CA.
func (s *state) get(ctx context.Context, path string) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.caURL+path, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp, body, nil
}

// needCA returns a skip finding when a CA check cannot run.
func (s *state) needCA(name, what string) (Finding, bool) {
	if s.caErr != nil {
		return skip(name, "%s not checked: the CA was not reached", what), false
	}
	if s.cert == nil {
		return skip(name, "%s not checked: no certificate", what), false
	}
	return Finding{}, true
}

// checkChain verifies the leaf and DIR's chain to the roots the CA serves now.
func (s *state) checkChain(ctx context.Context) Finding {
	if f, ok := s.needCA(CheckChain, "chain"); !ok {
		return f
	}
	resp, body, err := s.get(ctx, "/roots.pem")
	if err != nil {
		return fail(CheckChain, "cannot fetch the CA's roots: %s", oneLine(err))
	}
	if resp.StatusCode != http.StatusOK {
		return fail(CheckChain, "the CA answers /roots.pem with %s", resp.Status)
	}
	served, err := caclient.ParseCertificates(body)
	if err != nil {
		return fail(CheckChain, "the CA's /roots.pem does not parse: %s", oneLine(err))
	}
	at, note := s.now(), ""
	switch {
	case at.After(s.cert.NotAfter):
		at, note = s.cert.NotAfter.Add(-time.Second), " (checked at its expiry: the certificate is not valid now)"
	case at.Before(s.cert.NotBefore):
		at, note = s.cert.NotBefore.Add(time.Second), " (checked at its start: the certificate is not valid yet)"
	}
	root, err := verify(s.cert, s.chain, served, at)
	if err != nil {
		local, lerr := caclient.ParseCertificates(s.roots)
		if lerr == nil {
			if _, lerr = verify(s.cert, s.chain, local, at); lerr == nil {
				return fail(CheckChain, "chain verifies to %s but not to the roots the CA serves now (CA rotated? renew or re-enroll): %s", hostdir.RootsFile, oneLine(err))
			}
		}
		return fail(CheckChain, "chain does not verify to the CA root: %s", oneLine(err))
	}
	return ok(CheckChain, "chain verifies to the CA root (%s)%s", root.Subject.CommonName, note)
}

func verify(leaf *x509.Certificate, chain, roots []*x509.Certificate, at time.Time) (*x509.Certificate, error) {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range chain {
		ip.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, err
	}
	c := chains[0]
	return c[len(c)-1], nil
}

// checkClock compares the local clock with the CA's Date header (one-second
// resolution, so half a second is added to it).
func (s *state) checkClock() Finding {
	if s.caErr != nil {
		return skip(CheckClock, "clock not checked: the CA was not reached")
	}
	if s.caDate.IsZero() {
		return skip(CheckClock, "clock not checked: the CA sent no Date header")
	}
	skew := s.caLocal.Sub(s.caDate.Add(500 * time.Millisecond)) // > 0: local clock ahead
	abs, dir := skew, "ahead of"
	if skew < 0 {
		abs, dir = -skew, "behind"
	}
	abs = abs.Round(time.Second)
	switch {
	case abs > SkewFail:
		return fail(CheckClock, "clock is %s %s the CA's: Roles Anywhere refuses signatures more than 5m off (fix NTP)", abs, dir)
	case abs > SkewWarn:
		return warn(CheckClock, "clock is %s %s the CA's (over %s; Roles Anywhere refuses over 5m): check NTP", abs, dir, SkewWarn)
	}
	return ok(CheckClock, "clock within %s of the CA's", max(abs, time.Second))
}
