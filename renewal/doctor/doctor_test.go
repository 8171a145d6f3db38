package doctor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/anchors/emulator"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/renewal/awsconfig"
	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/revocation"
)

const (
	testCN      = "host1.covalent.example.net"
	roleARN     = "arn:aws:iam::123456789012:role/test-role"
	profileName = "lanyard-test"
)

// host is an enrolled folder as `lanyard enroll --aws-profile … --signer
// lanyard` leaves it, with a CA and an emulator that trusts it.
type host struct {
	ca      *testca.CA
	emu     *emulator.Server
	dir     string
	cfg     string // AWS config file
	version *hostdir.Version
	anchor  string
	profile string
}

func newHost(t *testing.T, opts testca.Options) *host {
	t.Helper()
	h := &host{ca: testca.Start(t, opts)}
	h.emu, h.anchor, h.profile = h.ca.SeededEmulator(t, roleARN)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := caclient.New(h.ca.URL, h.ca.Authority.RootsPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Certificates.Enroll(context.Background(), connect.NewRequest(&v1.EnrollRequest{Token: h.ca.Token(t, testCN), Csr: csr}))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	b := resp.Msg.GetBundle()
	h.dir = filepath.Join(t.TempDir(), "host")
	d, err := hostdir.Open(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(hostdir.Material{CertPEM: []byte(b.GetCertificatePem()), ChainPEM: []byte(b.GetChainPem()), KeyPEM: keyPEM(t, key)}); err != nil {
		t.Fatal(err)
	}
	if h.version, err = d.LoadCurrent(); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h.cfg = filepath.Join(t.TempDir(), "aws", "config")
	args := awsconfig.HelperArgs{TrustAnchorARN: h.anchor, ProfileARN: h.profile, RoleARN: roleARN, Region: "us-east-1", Endpoint: h.emu.URL}
	line := awsconfig.CommandLine(awsconfig.BuiltinArgs(exe, h.dir, args))
	if err := awsconfig.WriteProfile(h.cfg, awsconfig.Profile{Name: profileName, CredentialProcess: line, Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	e := &hostdir.Enrollment{CA: h.ca.URL, KeyType: "P-256", AWS: &hostdir.AWSSettings{
		Profile: profileName, ConfigFile: h.cfg, Signer: "lanyard", HelperArgs: args,
	}}
	if err := hostdir.WriteEnrollment(h.dir, e, h.ca.Authority.RootsPEM()); err != nil {
		t.Fatal(err)
	}
	return h
}

func keyPEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func (h *host) opts() Options {
	return Options{Dir: h.dir, Endpoint: h.emu.URL}
}

func byName(fs []Finding) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range fs {
		m[f.Name] = f
	}
	return m
}

func logFindings(t *testing.T, fs []Finding) {
	t.Helper()
	for _, f := range fs {
		t.Logf("%-15s %s", f.Name, f)
	}
}

var allChecks = []string{CheckFiles, CheckKeyMatch, CheckPermissions, CheckCA, CheckChain, CheckRenewal,
	CheckProfileCN, CheckCRL, CheckClock, CheckAWSProfile, CheckCreateSession}

func TestHealthyHost(t *testing.T) {
	h := newHost(t, testca.Options{})
	fs := Check(context.Background(), h.opts())
	logFindings(t, fs)
	if len(fs) != len(allChecks) {
		t.Fatalf("%d findings, want %d", len(fs), len(allChecks))
	}
	for i, f := range fs {
		if f.Name != allChecks[i] {
			t.Errorf("finding %d is %q, want %q", i, f.Name, allChecks[i])
		}
		if f.Severity != SeverityOK || !f.OK {
			t.Errorf("%s: %s, want ok", f.Name, f)
		}
		if strings.Contains(f.Message, "\n") {
			t.Errorf("%s: message spans lines: %q", f.Name, f.Message)
		}
	}
	if Failed(fs) {
		t.Error("Failed() = true for a healthy host")
	}
	m := byName(fs)
	for name, want := range map[string]string{
		CheckChain:         "chain verifies to the CA root",
		CheckCRL:           "not on the CA's CRL",
		CheckRenewal:       "next renewal in",
		CheckProfileCN:     "CN " + testCN + " allowed by its profile (inferred",
		CheckAWSProfile:    "well formed",
		CheckCreateSession: "returned credentials",
	} {
		if !strings.Contains(m[name].Message, want) {
			t.Errorf("%s: %q does not contain %q", name, m[name].Message, want)
		}
	}
	if n := len(h.emu.Sessions()); n != 1 {
		t.Errorf("emulator handed out %d sessions, want 1", n)
	}
}

// closedURL returns an https URL on a loopback port nobody listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "https://" + addr
}

func TestFaults(t *testing.T) {
	type fault struct {
		name string
		// breakIt damages the host and may change the options.
		breakIt func(t *testing.T, h *host, o *Options)
		// want maps check names to the severity and text expected.
		want map[string]struct {
			sev  Severity
			text string
		}
	}
	type w = struct {
		sev  Severity
		text string
	}
	tests := []fault{
		{name: "key mismatch", breakIt: func(t *testing.T, h *host, _ *Options) {
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			p := filepath.Join(h.version.Path, hostdir.KeyFile)
			if err := os.WriteFile(p, keyPEM(t, other), 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{
			CheckKeyMatch:      {SeverityFail, "certificate does not match the private key"},
			CheckChain:         {SeverityOK, "chain verifies"},
			CheckCreateSession: {SeverityFail, "does not match the private key"},
		}},
		{name: "revoked", breakIt: func(t *testing.T, h *host, _ *Options) {
			_, err := h.ca.Revocation.Revoke(context.Background(), revocation.Request{
				Serial: v1.FormatSerial(h.version.Cert.SerialNumber), Reason: revocation.ReasonKeyCompromise, By: "admin:test"})
			if err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{
			CheckCRL:     {SeverityFail, "certificate is on the CA's CRL (revoked "},
			CheckRenewal: {SeverityWarn, "the CA reports it revoked"},
		}},
		{name: "key readable by others", breakIt: func(t *testing.T, h *host, _ *Options) {
			if err := os.Chmod(filepath.Join(h.version.Path, hostdir.KeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{CheckPermissions: {SeverityFail, "privkey.pem is 0644, want 0600"}}},
		{name: "world-writable folder", breakIt: func(t *testing.T, h *host, _ *Options) {
			if err := os.Chmod(h.dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{CheckPermissions: {SeverityFail, "is writable by group or others (0777)"}}},
		{name: "group-writable folder", breakIt: func(t *testing.T, h *host, _ *Options) {
			if err := os.Chmod(h.dir, 0o770); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{CheckPermissions: {SeverityFail, "is writable by group or others (0770)"}}},
		{name: "versions planted as a symlink", breakIt: func(t *testing.T, h *host, _ *Options) {
			vdir := filepath.Join(h.dir, hostdir.VersionsDir)
			elsewhere := filepath.Join(t.TempDir(), "versions")
			if err := os.Rename(vdir, elsewhere); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, vdir); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{CheckPermissions: {SeverityFail, "versions is a symlink (to "}}},
		{name: "missing AWS profile", breakIt: func(_ *testing.T, _ *host, o *Options) {
			o.AWSProfile = "nope"
		}, want: map[string]w{CheckAWSProfile: {SeverityFail, `AWS profile "nope" not found in`}}},
		{name: "missing AWS config file", breakIt: func(t *testing.T, h *host, _ *Options) {
			if err := os.Remove(h.cfg); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{CheckAWSProfile: {SeverityFail, "no such file"}}},
		{name: "profile binary missing", breakIt: func(t *testing.T, h *host, _ *Options) {
			line := awsconfig.CommandLine([]string{"/nonexistent/lanyard", "credential-process", "--dir", h.dir})
			if err := awsconfig.WriteProfile(h.cfg, awsconfig.Profile{Name: profileName, CredentialProcess: line}); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{CheckAWSProfile: {SeverityFail, "/nonexistent/lanyard, which does not exist"}}},
		{name: "profile reads current files directly", breakIt: func(t *testing.T, h *host, _ *Options) {
			exe, _ := os.Executable()
			line := awsconfig.CommandLine([]string{exe, "credential-process", "--certificate", filepath.Join(h.dir, "cert.pem"),
				"--private-key", filepath.Join(h.dir, "privkey.pem")})
			if err := awsconfig.WriteProfile(h.cfg, awsconfig.Profile{Name: profileName, CredentialProcess: line}); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{CheckAWSProfile: {SeverityWarn, "can pair a new certificate with an old key"}}},
		{name: "CA unreachable", breakIt: func(t *testing.T, _ *host, o *Options) {
			o.CAURL = closedURL(t)
		}, want: map[string]w{
			CheckCA:            {SeverityFail, "CA unreachable at https://127.0.0.1:"},
			CheckChain:         {SeveritySkip, "the CA was not reached"},
			CheckCRL:           {SeveritySkip, "the CA was not reached"},
			CheckClock:         {SeveritySkip, "the CA was not reached"},
			CheckRenewal:       {SeverityWarn, "renewal window unknown: the CA was not reached"},
			CheckKeyMatch:      {SeverityOK, "matches"},
			CheckCreateSession: {SeverityOK, "returned credentials"},
		}},
		{name: "CA roots missing", breakIt: func(t *testing.T, h *host, _ *Options) {
			if err := os.Remove(filepath.Join(h.dir, hostdir.RootsFile)); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{
			CheckFiles: {SeverityWarn, "ca.pem (the CA roots) is missing"},
			CheckCA:    {SeverityFail, "ca.pem"},
		}},
		{name: "not enrolled", breakIt: func(t *testing.T, _ *host, o *Options) {
			o.Dir = t.TempDir()
		}, want: map[string]w{
			CheckFiles:    {SeverityFail, "not enrolled"},
			CheckKeyMatch: {SeveritySkip, "no current version"},
			CheckCA:       {SeverityFail, "no CA URL"},
		}},
		{name: "clock 2 minutes ahead", breakIt: func(_ *testing.T, _ *host, o *Options) {
			o.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
		}, want: map[string]w{CheckClock: {SeverityWarn, "ahead of the CA's"}}},
		{name: "clock 10 minutes ahead", breakIt: func(_ *testing.T, _ *host, o *Options) {
			o.Now = func() time.Time { return time.Now().Add(10 * time.Minute) }
		}, want: map[string]w{
			CheckClock:         {SeverityFail, "10m0s ahead of the CA's"},
			CheckCreateSession: {SeverityFail, "403 AccessDeniedException: Invalid signature"},
		}},
		{name: "clock behind the certificate", breakIt: func(_ *testing.T, h *host, o *Options) {
			o.Now = func() time.Time { return h.version.Cert.NotBefore.Add(-time.Hour) }
		}, want: map[string]w{
			CheckClock:         {SeverityFail, "behind the CA's"},
			CheckRenewal:       {SeverityFail, "this host's clock is behind"},
			CheckChain:         {SeverityOK, "checked at its start"},
			CheckCreateSession: {SeverityFail, "certificate is not valid yet"},
		}},
		{name: "expired", breakIt: func(_ *testing.T, _ *host, o *Options) {
			o.Now = func() time.Time { return time.Now().Add(48 * time.Hour) }
		}, want: map[string]w{
			CheckRenewal: {SeverityFail, "certificate expired"},
			CheckChain:   {SeverityOK, "checked at its expiry"},
		}},
		{name: "CA serves other roots", breakIt: func(t *testing.T, h *host, o *Options) {
			other := testca.Start(t, testca.Options{})
			o.CAURL = other.URL
			// Trust both CAs' TLS, as after a root rotation.
			roots := append(h.ca.Authority.RootsPEM(), other.Authority.RootsPEM()...)
			if err := os.WriteFile(filepath.Join(h.dir, hostdir.RootsFile), roots, 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: map[string]w{
			CheckChain:   {SeverityFail, "chain verifies to ca.pem but not to the roots the CA serves now"},
			CheckRenewal: {SeverityFail, "the CA has no record of serial"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHost(t, testca.Options{})
			o := h.opts()
			tt.breakIt(t, h, &o)
			fs := Check(context.Background(), o)
			logFindings(t, fs)
			if len(fs) != len(allChecks) {
				t.Fatalf("%d findings, want %d", len(fs), len(allChecks))
			}
			m := byName(fs)
			for name, want := range tt.want {
				f := m[name]
				if f.Severity != want.sev || !strings.Contains(f.Message, want.text) {
					t.Errorf("%s: got %q, want %s containing %q", name, f, want.sev, want.text)
				}
				if f.OK != (f.Severity != SeverityFail) {
					t.Errorf("%s: OK=%v with severity %s", name, f.OK, f.Severity)
				}
			}
			wantFail := false
			for _, want := range tt.want {
				wantFail = wantFail || want.sev == SeverityFail
			}
			if Failed(fs) != wantFail {
				t.Errorf("Failed() = %v, want %v", Failed(fs), wantFail)
			}
		})
	}
}

// TestProfileChanged restarts the CA with a different lifetime for the
// profile: GetRenewalInfo then says profile-changed.
func TestProfileChanged(t *testing.T) {
	h := newHost(t, testca.Options{})
	h.ca.Stop()
	profiles := testca.DefaultProfiles()
	p := profiles["covalent"]
	p.DefaultTTL = 12 * time.Hour
	profiles["covalent"] = p
	c2 := testca.Start(t, testca.Options{Dir: h.ca.Dir, Profiles: profiles})
	o := h.opts()
	o.CAURL = c2.URL
	m := byName(Check(context.Background(), o))
	if f := m[CheckProfileCN]; f.Severity != SeverityFail || !strings.Contains(f.Message, "profile-changed") {
		t.Errorf("profile-cn: %s", f)
	}
	if f := m[CheckRenewal]; f.Severity != SeverityWarn || !strings.Contains(f.Message, "reason profile-changed") {
		t.Errorf("renewal: %s", f)
	}
}

func TestFindingString(t *testing.T) {
	tests := []struct {
		f    Finding
		want string
	}{
		{ok(CheckChain, "chain verifies to the CA root"), "ok    chain verifies to the CA root"},
		{fail(CheckCRL, "certificate is on the CA's CRL"), "FAIL  certificate is on the CA's CRL"},
		{warn(CheckClock, "clock"), "WARN  clock"},
		{skip(CheckCreateSession, "not tried"), "skip  not tried"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestSplitCommandLine(t *testing.T) {
	tests := []struct {
		line    string
		want    []string
		wantErr bool
	}{
		{line: "/usr/bin/lanyard credential-process --dir /etc/lanyard", want: []string{"/usr/bin/lanyard", "credential-process", "--dir", "/etc/lanyard"}},
		{line: `lanyard  --dir '/a b/c'  x`, want: []string{"lanyard", "--dir", "/a b/c", "x"}},
		{line: `a 'it'\''s' "q\"d" b\ c`, want: []string{"a", "it's", `q"d`, "b c"}},
		{line: `a '' ""`, want: []string{"a", "", ""}},
		{line: "a # comment", want: []string{"a"}},
		{line: "a b#c", want: []string{"a", "b#c"}},
		{line: "a 'open", wantErr: true},
		{line: `a "open`, wantErr: true},
		{line: "a | b", wantErr: true},
		{line: "a $HOME", wantErr: true},
		{line: `a "$(x)"`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := splitCommandLine(tt.line)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: error %v, want error %v", tt.line, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") {
			t.Errorf("%q: %q, want %q", tt.line, got, tt.want)
		}
	}
	// Whatever awsconfig.CommandLine writes splits back into its arguments.
	for _, args := range [][]string{
		{"/opt/my tools/lanyard", "credential-process", "--dir", "/var/lib/it's here", "--role-session-name", "a;b"},
		{"lanyard", "exec-helper", "--dir", "/x", "--", "--endpoint", "https://h:1/p?q=1#f"},
		{"x", "semi ;colon", "hash #tag", `back\slash`, `"dq"`, "'sq'"},
	} {
		got, err := splitCommandLine(awsconfig.CommandLine(args))
		if err != nil || strings.Join(got, "\x00") != strings.Join(args, "\x00") {
			t.Errorf("round trip of %q via %q: %q, %v", args, awsconfig.CommandLine(args), got, err)
		}
	}
}
