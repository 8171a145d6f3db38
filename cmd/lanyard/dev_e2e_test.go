package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"gopkg.in/ini.v1"

	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/store"
)

// startDevServe starts `lanyard serve --dev` in dir with env, stopped
// with SIGINT when the test ends, and returns its standard output.
func startDevServe(t *testing.T, dir string, env []string) io.Reader {
	t.Helper()
	serve := exec.Command(servetest.Binary(t), "serve", "--dev")
	serve.Dir, serve.Env = dir, env
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	serve.Stderr = os.Stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		_ = serve.Wait()
	})
	return stdout
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t))
}

// TestDevModeWholeLoop is the newcomer's walk-through, run for real:
// `lanyard serve --dev` in an empty folder, the printed `lanyard enroll`
// line on a "host", the AWS profile it writes driving the real
// aws_signing_helper against the in-process Roles Anywhere emulator, then
// `lanyard revoke` cutting the host off.
func TestDevModeWholeLoop(t *testing.T) {
	bin := servetest.Binary(t)
	helper := realtools.SigningHelper(t)
	dir := t.TempDir()
	listen, emu := freeAddr(t), freeAddr(t)
	env := append(realtools.HelperEnv(), "LANYARD_ANCHORS_EMULATOR_LISTEN="+emu, "AWS_CONFIG_FILE="+filepath.Join(dir, "aws", "config"),
		"LANYARD_SIGNING_HELPER="+helper, "LANYARD_LISTEN="+listen)
	stdout := startDevServe(t, dir, env)
	var enrollLine string
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(60 * time.Second)
	for enrollLine == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("serve --dev exited before printing an enroll command")
			}
			t.Log(l)
			if f := strings.Fields(l); len(f) > 2 && strings.HasSuffix(f[0], "lanyard") && f[1] == "enroll" {
				enrollLine = strings.TrimSpace(l)
			}
		case <-timeout:
			t.Fatal("serve --dev printed no enroll command within 60s")
		}
	}
	// The banner's next lines: the seeds' own check.
	var stsLine string
	for stsLine == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("serve --dev exited before printing the STS check")
			}
			t.Log(l)
			if strings.Contains(l, "aws sts get-caller-identity") {
				stsLine = strings.TrimSpace(l)
			}
		case <-timeout:
			t.Fatal("serve --dev printed no aws sts get-caller-identity line within 60s")
		}
	}
	if want := "aws sts get-caller-identity --profile covalent --endpoint-url http://" + emu; stsLine != want {
		t.Fatalf("banner prints %q, want %q", stsLine, want)
	}
	go func() {
		for range lines {
		}
	}()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("lanyard %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, want := range []string{"--fingerprint", "--cn host1.covalent.example.net", "--token-file .lanyard/host1.token", "--aws-profile covalent", "--trust-anchor-arn", "--endpoint http://" + emu} {
		if !strings.Contains(enrollLine, want) {
			t.Fatalf("enroll line lacks %q: %s", want, enrollLine)
		}
	}
	if strings.Contains(enrollLine, "lyt1_") {
		t.Fatalf("the printed enroll line carries the token: %s", enrollLine)
	}
	if fi, err := os.Stat(filepath.Join(dir, ".lanyard", "host1.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev token file: %v %v", fi, err)
	}
	run(strings.Fields(enrollLine)[1:]...)

	pki := filepath.Join(dir, "host1-pki")
	for _, f := range []string{"cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"} {
		if _, err := os.Stat(filepath.Join(pki, f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(pki, "privkey.pem")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("privkey.pem mode %v", fi.Mode().Perm())
	}
	out, err := exec.Command(realtools.OpenSSL(t), "verify", "-CAfile", filepath.Join(dir, ".lanyard", "ca", "root.crt"),
		"-untrusted", filepath.Join(pki, "chain.pem"), filepath.Join(pki, "cert.pem")).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	cfg, err := ini.Load(filepath.Join(dir, "aws", "config"))
	if err != nil {
		t.Fatal(err)
	}
	line := cfg.Section("profile covalent").Key("credential_process").String()
	if line == "" || strings.Contains(line, "\n") {
		t.Fatalf("credential_process %q", line)
	}
	credentials := func() (map[string]any, error) {
		cmd := exec.Command("/bin/sh", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%v: %s", err, out)
		}
		var v map[string]any
		return v, json.Unmarshal(out, &v)
	}
	creds, err := credentials()
	if err != nil {
		t.Fatalf("credential_process: %v", err)
	}
	if creds["Version"] != float64(1) || creds["AccessKeyId"] == "" || creds["SessionToken"] == "" {
		t.Fatalf("credentials %v", creds)
	}
	checkCallerIdentity(t, dir, env, helper, emu, stsLine)

	// Roles Anywhere from the CLI while serve runs: the settings are in
	// sync, explain agrees with what just happened, and the kill switch
	// stops the host at once and lets it go again.
	runFail := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("lanyard %s succeeded:\n%s", strings.Join(args, " "), out)
		}
		return string(out)
	}
	if out := run("anchors", "sync", "--dry-run"); !strings.Contains(out, "in sync") || strings.Contains(out, "~ ") {
		t.Fatalf("anchors sync --dry-run right after serve's sync:\n%s", out)
	}
	if out := run("anchors", "explain", "--cert", filepath.Join(pki, "fullchain.pem")); !strings.Contains(out, "verdict: ALLOWED") ||
		!strings.Contains(out, "aws:PrincipalTag/x509Subject/CN = host1.covalent.example.net") {
		t.Fatalf("explain host1:\n%s", out)
	}
	if out := runFail("anchors", "explain", "--cn", "db.other.example.net"); !strings.Contains(out, "verdict: DENIED: trust policy") {
		t.Fatalf("explain another CN:\n%s", out)
	}
	run("anchors", "disable", "--reason", "drill")
	if _, err := credentials(); err == nil {
		t.Fatal("the kill switch is engaged and the host still gets credentials")
	}
	if out := runFail("anchors", "explain", "--cert", filepath.Join(pki, "fullchain.pem")); !strings.Contains(out, "trust anchor is disabled") {
		t.Fatalf("explain with the kill switch:\n%s", out)
	}
	if out := run("anchors", "sync"); !strings.Contains(out, "KILL SWITCH ENGAGED") {
		t.Fatalf("sync with the kill switch engaged:\n%s", out)
	}
	run("anchors", "enable")
	if _, err := credentials(); err != nil {
		t.Fatalf("kill switch released, credentials still refused: %v", err)
	}

	// Admin commands find the dev config in this folder by themselves.
	tok := strings.TrimSpace(run("token", "--cn", "host2.covalent.example.net", "-q"))
	if !strings.HasPrefix(tok, "lyt1_") {
		t.Fatalf("token: %q", tok)
	}
	// A second host enrolls (trusting the root file) and revokes its own
	// certificate with itself.
	run("enroll", "--ca", "https://"+listen, "--roots", filepath.Join(dir, ".lanyard", "ca", "root.crt"), "--token", tok, "--out", "host2-pki")
	if out := run("revoke", "--dir", "host2-pki"); !strings.Contains(out, "keyCompromise") {
		t.Fatalf("revoke --dir: %s", out)
	}
	if out := run("certs", "--status", "revoked"); !strings.Contains(out, "host2.covalent.example.net") {
		t.Fatalf("host2 not revoked: %s", out)
	}
	if certs := run("certs", "--cn", "host1."); !strings.Contains(certs, "host1.covalent.example.net") {
		t.Fatalf("certs: %s", certs)
	}
	// Online backup while serve holds the store.
	backup := filepath.Join(dir, "backup.db")
	if out := run("backup", backup); !strings.Contains(out, "online") {
		t.Fatalf("backup: %s", out)
	}
	bdb, err := store.Open(backup, store.Options{})
	if err != nil {
		t.Fatalf("backup does not open: %v", err)
	}
	if serials, _ := bdb.SerialsByCN("host1.covalent.example.net"); len(serials) != 1 {
		t.Fatalf("backup holds %d certificates of host1", len(serials))
	}
	bdb.Close()
	start := time.Now()
	run("revoke", "--cn", "host1.covalent.example.net", "--reason", "keyCompromise")
	var refusedErr error
	for time.Since(start) < 10*time.Second {
		if _, refusedErr = credentials(); refusedErr != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if refusedErr == nil {
		t.Fatal("a revoked host still gets AWS credentials")
	}
	if !strings.Contains(refusedErr.Error(), "AccessDenied") && !strings.Contains(refusedErr.Error(), "exit status") {
		t.Fatalf("refusal: %v", refusedErr)
	}
	t.Logf("revoke → credentials refused in %s (lanyard revoke CLI to aws_signing_helper failure)", time.Since(start).Round(time.Millisecond))
}

// checkCallerIdentity is the seeds' validation step on one machine: the
// SDK's STS client, with credentials from the written AWS profile's
// credential_process (the SDK runs it), sent to the emulator's endpoint,
// answers the assumed role; and so does the AWS CLI, when installed,
// running the line the banner printed.
func checkCallerIdentity(t *testing.T, dir string, env []string, helper, emu, stsLine string) {
	t.Helper()
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && (strings.HasPrefix(k, "LANYARD_") || strings.HasPrefix(k, "AWS_")) {
			t.Setenv(k, v)
		}
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CA_BUNDLE", "")
	os.Unsetenv("AWS_CA_BUNDLE") // aws_signing_helper v1.5 exits when it is set
	creds := filepath.Join(dir, "aws", "credentials")
	if err := os.WriteFile(creds, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedConfigFiles([]string{filepath.Join(dir, "aws", "config")}),
		config.WithSharedCredentialsFiles([]string{creds}), config.WithSharedConfigProfile("covalent"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String("http://" + emu) }).
		GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("SDK GetCallerIdentity through the covalent profile: %v", err)
	}
	arn := aws.ToString(out.Arn)
	if !strings.HasPrefix(arn, "arn:aws:sts::123456789012:assumed-role/covalent-dev/") || aws.ToString(out.Account) != "123456789012" {
		t.Fatalf("GetCallerIdentity: arn %q account %q", arn, aws.ToString(out.Account))
	}
	t.Logf("SDK STS: %s", arn)

	awsCLI, err := exec.LookPath("aws")
	if err != nil {
		t.Logf("the aws CLI is not installed: checked with the SDK's STS client only")
		return
	}
	f := strings.Fields(stsLine)
	cmd := exec.Command(awsCLI, append(f[1:], "--output", "json")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AWS_SHARED_CREDENTIALS_FILE="+creds)
	raw, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", stsLine, err, raw)
	}
	var cli struct{ Arn, Account, UserId string }
	if err := json.Unmarshal(raw, &cli); err != nil || !strings.HasPrefix(cli.Arn, "arn:aws:sts::123456789012:assumed-role/covalent-dev/") {
		t.Fatalf("%s printed %s (%v)", stsLine, raw, err)
	}
	t.Logf("aws CLI: %s", cli.Arn)
}
