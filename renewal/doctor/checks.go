package doctor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/renewal/agent"
	"github.com/lanyard/lanyard/renewal/awsconfig"
	"github.com/lanyard/lanyard/renewal/credproc"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// Renewal reasons GetRenewalInfo gives (see schedule.Window).
const (
	reasonScheduled      = "scheduled"
	reasonRevoked        = "revoked"
	reasonCARotation     = "ca-rotation"
	reasonProfileChanged = "profile-changed"
)

// renewalInfo is the CA's renewal hint for the certificate.
type renewalInfo struct {
	start, end time.Time
	reason     string
}

// renewal asks the CA once for the certificate's renewal window.
func (s *state) renewal(ctx context.Context) (*renewalInfo, error) {
	if s.infoDone {
		return s.info, s.infoErr
	}
	s.infoDone = true
	cl, err := caclient.New(s.caURL, s.roots, nil)
	if err != nil {
		s.infoErr = fmt.Errorf("GetRenewalInfo: %w", err)
		return nil, s.infoErr
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	resp, err := cl.Certificates.GetRenewalInfo(ctx, connect.NewRequest(&v1.GetRenewalInfoRequest{Serial: serialHex(s.cert)}))
	if err != nil {
		s.infoErr = fmt.Errorf("GetRenewalInfo: %w", err)
		return nil, s.infoErr
	}
	ri := resp.Msg.GetRenewalInfo()
	s.info = &renewalInfo{start: ri.GetWindowStart().AsTime(), end: ri.GetWindowEnd().AsTime(), reason: ri.GetReason()}
	return s.info, nil
}

// human formats a duration for people: "2d3h", "23h10m", "4m0s", "12s".
func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	d = d.Round(time.Minute)
	h, m := d/time.Hour, (d%time.Hour)/time.Minute
	if h >= 48 {
		return fmt.Sprintf("%dd%dh", h/24, h%24)
	}
	return fmt.Sprintf("%dh%02dm", h, m)
}

const stamp = "2006-01-02 15:04 MST"

// checkRenewal: time left, and the next renewal window the CA suggests.
func (s *state) checkRenewal(ctx context.Context) Finding {
	if s.cert == nil {
		return skip(CheckRenewal, "time left not checked: no certificate")
	}
	now := s.now()
	left := s.cert.NotAfter.Sub(now)
	until := s.cert.NotAfter.UTC().Format(stamp)
	if left <= 0 {
		return fail(CheckRenewal, "certificate expired %s ago (at %s): it cannot renew over mTLS; re-enroll (lanyard enroll with a new token)", human(left), until)
	}
	if now.Before(s.cert.NotBefore) {
		return fail(CheckRenewal, "certificate is not valid until %s: this host's clock is behind", s.cert.NotBefore.UTC().Format(stamp))
	}
	base := fmt.Sprintf("certificate valid %s more (until %s)", human(left), until)
	if s.caErr != nil {
		return warn(CheckRenewal, "%s; renewal window unknown: the CA was not reached", base)
	}
	info, err := s.renewal(ctx)
	if err != nil {
		if connect.CodeOf(err) == connect.CodeNotFound {
			return fail(CheckRenewal, "%s, but the CA has no record of serial %s: it cannot renew it (re-enroll)", base, serialHex(s.cert))
		}
		return warn(CheckRenewal, "%s; renewal window unknown: %s", base, oneLine(err))
	}
	window := fmt.Sprintf("%s – %s", info.start.UTC().Format(stamp), info.end.UTC().Format(stamp))
	switch {
	case info.reason == reasonRevoked:
		return warn(CheckRenewal, "%s; the CA reports it revoked (GetRenewalInfo reason revoked): it will not renew it; re-enroll", base)
	case info.reason != reasonScheduled && info.reason != "":
		return warn(CheckRenewal, "%s; the CA asks for renewal now (reason %s, window %s)", base, info.reason, window)
	case now.After(info.end):
		return warn(CheckRenewal, "%s; renewal overdue: the window %s ended %s ago (is lanyard agent running?)", base, window, human(now.Sub(info.end)))
	case now.After(info.start):
		return ok(CheckRenewal, "%s; in its renewal window now (%s, %s)", base, window, info.reason)
	}
	return ok(CheckRenewal, "%s; next renewal in %s, window %s (%s)", base, human(info.start.Sub(now)), window, info.reason)
}

// checkProfileCN infers from GetRenewalInfo whether the certificate's profile
// still issues it as is: the CA answers "profile-changed" when the profile is
// gone or no longer matches (CN rules, lifetime).
func (s *state) checkProfileCN(ctx context.Context) Finding {
	if f, ok := s.needCA(CheckProfileCN, "CN against the profile"); !ok {
		return f
	}
	cn := s.cert.Subject.CommonName
	info, err := s.renewal(ctx)
	if err != nil {
		return skip(CheckProfileCN, "CN %s not checked against its profile: %s", cn, oneLine(err))
	}
	if info.reason == reasonProfileChanged {
		return fail(CheckProfileCN, "CN %s: the CA reports profile-changed (GetRenewalInfo): its profile no longer issues this certificate as is; renew now, or re-enroll if the CN is no longer allowed", cn)
	}
	return ok(CheckProfileCN, "CN %s allowed by its profile (inferred: GetRenewalInfo does not report profile-changed)", cn)
}

// reasonNames are RFC 5280's CRLReason names.
var reasonNames = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

func reasonName(code int) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", code)
}

// checkCRL fetches the CA's CRL, checks it is signed by the certificate's
// issuer, and looks the serial up.
func (s *state) checkCRL(ctx context.Context) Finding {
	if f, ok := s.needCA(CheckCRL, "CRL"); !ok {
		return f
	}
	resp, body, err := s.get(ctx, "/crl")
	if err != nil {
		return fail(CheckCRL, "cannot fetch the CA's CRL: %s", oneLine(err))
	}
	if resp.StatusCode != http.StatusOK {
		return fail(CheckCRL, "the CA answers /crl with %s", resp.Status)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		return fail(CheckCRL, "the CA's CRL does not parse: %s", oneLine(err))
	}
	if len(s.chain) > 0 {
		if err := crl.CheckSignatureFrom(s.chain[0]); err != nil {
			return fail(CheckCRL, "the CA's CRL is not signed by this certificate's issuer (%s): %s", s.chain[0].Subject.CommonName, oneLine(err))
		}
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(s.cert.SerialNumber) == 0 {
			return fail(CheckCRL, "certificate is on the CA's CRL (revoked %s, %s): AWS refuses it once the CRL is imported; re-enroll",
				e.RevocationTime.UTC().Format(time.RFC3339), reasonName(e.ReasonCode))
		}
	}
	num := "?"
	if crl.Number != nil {
		num = crl.Number.String()
	}
	if !crl.NextUpdate.IsZero() && s.now().After(crl.NextUpdate) {
		return warn(CheckCRL, "not on the CA's CRL, but that CRL (number %s) is stale: its next update was %s", num, crl.NextUpdate.UTC().Format(stamp))
	}
	return ok(CheckCRL, "not on the CA's CRL (number %s, %d entries)", num, len(crl.RevokedCertificateEntries))
}

// awsSettings returns the enrollment's AWS settings, or empty ones.
func (s *state) awsSettings() hostdir.AWSSettings {
	if s.enr != nil && s.enr.AWS != nil {
		return *s.enr.AWS
	}
	return hostdir.AWSSettings{}
}

// checkAWSProfile: the profile exists, its credential_process is one line
// that parses, names a binary that exists, and reads this folder race-free.
func (s *state) checkAWSProfile() Finding {
	set := s.awsSettings()
	name := s.opts.AWSProfile
	if name == "" {
		name = set.Profile
	}
	if name == "" {
		return skip(CheckAWSProfile, "AWS profile not checked: none recorded in %s and none given (--aws-profile)", hostdir.EnrollmentFile)
	}
	path := s.opts.AWSConfigFile
	if path == "" {
		path = set.ConfigFile
	}
	if path == "" {
		path = awsconfig.Path()
	}
	p, err := awsconfig.ReadProfile(path, name)
	switch {
	case errors.Is(err, awsconfig.ErrProfileNotFound):
		return fail(CheckAWSProfile, "AWS profile %q not found in %s (lanyard enroll --aws-profile %s writes it)", name, path, name)
	case err != nil:
		return fail(CheckAWSProfile, "AWS profile %q: %s", name, oneLine(err))
	}
	line := p.CredentialProcess
	if strings.TrimSpace(line) == "" {
		return fail(CheckAWSProfile, "AWS profile %q in %s has no credential_process", name, path)
	}
	if strings.ContainsAny(line, "\r\n") {
		return fail(CheckAWSProfile, "AWS profile %q: credential_process spans several lines; it must be one line", name)
	}
	args, err := splitCommandLine(line)
	if err != nil {
		return fail(CheckAWSProfile, "AWS profile %q: credential_process does not parse as a command line: %s", name, oneLine(err))
	}
	if len(args) == 0 {
		return fail(CheckAWSProfile, "AWS profile %q in %s has an empty credential_process", name, path)
	}
	bin, err := findExecutable(args[0])
	if err != nil {
		return fail(CheckAWSProfile, "AWS profile %q: credential_process runs %s, which %s", name, args[0], oneLine(err))
	}
	what := bin
	var notes []string
	switch {
	case len(args) > 1 && args[1] == "exec-helper":
		helper, err := agent.FindHelper(flagValue(args[2:], "--helper", true))
		if err != nil {
			return fail(CheckAWSProfile, "AWS profile %q runs lanyard exec-helper, but %s", name, oneLine(err))
		}
		what = fmt.Sprintf("%s exec-helper -> %s", bin, helper)
		notes = append(notes, s.dirNote(flagValue(args[2:], "--dir", true))...)
	case len(args) > 1 && args[1] == "credential-process" && flagValue(args[2:], "--dir", false) != "":
		what = bin + " credential-process"
		notes = append(notes, s.dirNote(flagValue(args[2:], "--dir", false))...)
	case len(args) > 1 && args[1] == "credential-process":
		// aws_signing_helper pointed at files directly.
		for _, f := range []string{"--certificate", "--private-key"} {
			v := flagValue(args[2:], f, false)
			if v != "" && !strings.Contains(filepath.ToSlash(v), "/"+"versions/") {
				notes = append(notes, fmt.Sprintf("it reads %s directly: a renewal between its certificate and key reads can pair a new certificate with an old key (re-run lanyard enroll to write the race-free form)", v))
				break
			}
		}
	}
	if len(notes) > 0 {
		return warn(CheckAWSProfile, "AWS profile %q in %s runs %s, but %s", name, path, what, strings.Join(notes, "; "))
	}
	return ok(CheckAWSProfile, "AWS profile %q in %s is well formed and runs %s", name, path, what)
}

// dirNote warns when a profile's --dir is another folder than the one checked.
func (s *state) dirNote(dir string) []string {
	if dir == "" || s.dir == "" {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err == nil && filepath.Clean(abs) == filepath.Clean(s.dir) {
		return nil
	}
	return []string{fmt.Sprintf("its --dir is %s, not %s", dir, s.dir)}
}

// flagValue finds "--name v" or "--name=v" in args; with stopAtDashes it
// stops at "--" (exec-helper's own flags end there).
func flagValue(args []string, name string, stopAtDashes bool) string {
	for i, a := range args {
		if a == "--" && stopAtDashes {
			return ""
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// findExecutable resolves a command name as sh would: a path if it holds a
// slash, else a PATH lookup.
func findExecutable(name string) (string, error) {
	if strings.Contains(name, "/") {
		fi, err := os.Stat(name)
		if err != nil {
			return "", errors.New("does not exist")
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", errors.New("is not an executable file")
		}
		return name, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("is not on PATH (%s); write an absolute path", os.Getenv("PATH"))
	}
	return p, nil
}

// checkCreateSession calls CreateSession through credproc when an endpoint
// is given.
func (s *state) checkCreateSession(ctx context.Context) Finding {
	if s.opts.Endpoint == "" {
		return skip(CheckCreateSession, "CreateSession not tried: no Roles Anywhere endpoint given (--endpoint)")
	}
	set := s.awsSettings()
	o := credproc.Options{
		Dir:            s.dir,
		TrustAnchorARN: or(s.opts.TrustAnchorARN, set.TrustAnchorARN),
		ProfileARN:     or(s.opts.ProfileARN, set.ProfileARN),
		RoleARN:        or(s.opts.RoleARN, set.RoleARN),
		Region:         or(s.opts.Region, set.Region),
		Endpoint:       s.opts.Endpoint,
		HTTPClient:     s.opts.HTTPClient,
		Now:            s.opts.Now,
	}
	if s.dir == "" {
		return skip(CheckCreateSession, "CreateSession not tried: no host folder")
	}
	out, err := credproc.Credentials(ctx, o)
	if err != nil {
		return fail(CheckCreateSession, "CreateSession at %s failed: %s", s.opts.Endpoint, oneLine(err))
	}
	return ok(CheckCreateSession, "CreateSession at %s returned credentials for %s (expire %s)", s.opts.Endpoint, o.RoleARN, out.Expiration)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
