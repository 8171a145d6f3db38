package credproc

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/renewal/awsconfig"
)

// buildCredentialProcess returns a binary that runs `… credential-process
// <flags>`: the real lanyard (go build ./cmd/lanyard) when it builds and has
// the command, else testdata/credprocmain, a stand-in with the same flags
// and output (cmd/lanyard is shared with colleagues and may not build at
// every moment).
func buildCredentialProcess(t *testing.T) string {
	t.Helper()
	root := realtools.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "lanyard")
	build := func(pkg string) error {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Logf("go build %s: %v\n%s", pkg, err, out.String())
			return err
		}
		return nil
	}
	if build("./cmd/lanyard") == nil {
		if err := exec.Command(bin, "credential-process", "--help").Run(); err == nil {
			t.Logf("using the real lanyard binary")
			return bin
		}
		t.Logf("lanyard has no credential-process command yet")
	}
	if err := build("./renewal/credproc/testdata/credprocmain"); err != nil {
		t.Fatal("cannot build the credential process stand-in")
	}
	t.Logf("using the stand-in testdata/credprocmain (cmd/lanyard not usable right now)")
	return bin
}

// TestSDKProcessProvider proves the output is accepted by the AWS SDK for Go
// v2's process credential provider: a config file whose profile runs the
// credential process, loaded by config.LoadDefaultConfig, yields the
// emulator's credentials.
func TestSDKProcessProvider(t *testing.T) {
	w := newWorld(t)
	bin := buildCredentialProcess(t)

	// Keep the SDK to the profile under test.
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(k, "")
	}
	tmp := t.TempDir()
	cfgPath := filepath.Join(tmp, "config")
	credsPath := filepath.Join(tmp, "credentials")
	if err := os.WriteFile(credsPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	line := awsconfig.CommandLine(awsconfig.BuiltinArgs(bin, w.dir, awsconfig.HelperArgs{
		TrustAnchorARN: w.anchor, ProfileARN: w.profile, RoleARN: roleARN, Region: "us-east-1", Endpoint: w.emu.URL,
	}))
	if !strings.Contains(line, " credential-process --dir ") {
		t.Fatalf("command line %q", line)
	}
	cfgText := "[profile other]\nregion = eu-west-1\n\n[profile lanyard-test]\nregion = us-east-1\ncredential_process = " + line + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithSharedConfigFiles([]string{cfgPath}),
		config.WithSharedCredentialsFiles([]string{credsPath}),
		config.WithSharedConfigProfile("lanyard-test"))
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	sessions := w.emu.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("emulator handed out %d sessions, want 1", len(sessions))
	}
	s := sessions[0]
	if creds.AccessKeyID != s.AccessKeyID || creds.SecretAccessKey == "" || creds.SessionToken == "" {
		t.Errorf("SDK credentials %+v, want the emulator's key %s", creds, s.AccessKeyID)
	}
	if !creds.CanExpire || !creds.Expires.Equal(s.Expiration) {
		t.Errorf("SDK expiry %v (can expire %v), want %v", creds.Expires, creds.CanExpire, s.Expiration)
	}
	if creds.Source != "ProcessProvider" {
		t.Errorf("credentials came from %q, want the process provider", creds.Source)
	}
	if s.Serial.Cmp(w.version.Cert.SerialNumber) != 0 {
		t.Errorf("serial %s, want %s", s.Serial, w.version.Cert.SerialNumber)
	}

	// The raw output has no trailing newline, like the helper's.
	out, err := exec.Command(bin, "credential-process", "--dir", w.dir, "--trust-anchor-arn", w.anchor,
		"--profile-arn", w.profile, "--role-arn", roleARN, "--endpoint", w.emu.URL).Output()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !bytes.HasPrefix(out, []byte(`{"Version":1,"AccessKeyId":"ASIA`)) || bytes.HasSuffix(out, []byte("\n")) {
		t.Errorf("output %q", out)
	}
}
