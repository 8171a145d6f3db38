package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/store"
)

// caSite is a non-dev CA folder for the lifecycle tests: a config file, a
// CA initialised with `lanyard init`, and helpers to run the binary in it.
type caSite struct {
	t      *testing.T
	bin    string
	dir    string
	cfg    string
	listen string
	env    []string
}

// siteOptions are what a test changes about a caSite; the zero value is a
// plain bbolt CA with the covalent profile.
type siteOptions struct {
	// KMS is the kms key of the configuration and init's --kms.
	KMS string
	// Extra is appended to the configuration YAML.
	Extra string
}

// newCASite writes a configuration and runs `lanyard init` with it.
func newCASite(t *testing.T, o siteOptions) *caSite {
	t.Helper()
	s := &caSite{t: t, bin: servetest.Binary(t), dir: t.TempDir(), listen: freeAddr(t)}
	s.cfg = filepath.Join(s.dir, "lanyard.yaml")
	yaml := fmt.Sprintf(`listen: %s
data_dir: %s
server_names: [127.0.0.1]
default_profile: covalent
profiles:
  covalent:
    cn: ["*.covalent.example.net"]
    dns: ["*.covalent.example.net"]
    default_ttl: 24h
    max_ttl: 24h
crl:
  validity: 24h
`, s.listen, filepath.Join(s.dir, "data"))
	if o.KMS != "" {
		yaml += fmt.Sprintf("kms: %q\n", o.KMS)
	}
	yaml += o.Extra
	if err := os.WriteFile(s.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s.env = append(realtools.HelperEnv(), "LANYARD_CONFIG="+s.cfg)
	args := []string{"init", "--root-key-out", filepath.Join(s.dir, "offline", "root.key")}
	if o.KMS != "" {
		args = append(args, "--kms", o.KMS)
	}
	s.run(args...)
	return s
}

// caDir is the CA folder of the site.
func (s *caSite) caDir() string { return filepath.Join(s.dir, "data", "ca") }

// command returns an exec.Cmd for the binary in the site.
func (s *caSite) command(args ...string) *exec.Cmd {
	cmd := exec.Command(s.bin, args...)
	cmd.Dir, cmd.Env = s.dir, s.env
	return cmd
}

// run runs the binary and fails the test when it fails.
func (s *caSite) run(args ...string) string {
	s.t.Helper()
	out, err := s.command(args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("lanyard %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// serve starts `lanyard serve` (cmd lets the caller change the process
// first, e.g. its limits), waits until /healthz answers and stops it at
// the end of the test.
func (s *caSite) serve(prepare func(*exec.Cmd)) *exec.Cmd {
	s.t.Helper()
	cmd := s.command("serve")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if prepare != nil {
		prepare(cmd)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := s.healthy(); err == nil {
			return cmd
		}
		select {
		case err := <-exited:
			s.t.Fatalf("lanyard serve exited before it was healthy: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatal("lanyard serve not healthy within 60s")
		}
	}
}

// healthy asks /healthz, trusting the site's root.
func (s *caSite) healthy() error {
	resp, err := s.httpClient().Get("https://" + s.listen + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return nil
}

// httpClient trusts the roots of the site's CA folder.
func (s *caSite) httpClient() *http.Client {
	pool := x509.NewCertPool()
	for _, f := range []string{"root.crt", "roots.pem"} {
		if b, err := os.ReadFile(filepath.Join(s.caDir(), f)); err == nil {
			pool.AppendCertsFromPEM(b)
		}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// enroll mints a token for cn and enrolls a host folder with it.
func (s *caSite) enroll(cn string) (string, error) {
	s.t.Helper()
	tok := strings.TrimSpace(s.run("token", "--cn", cn, "-q"))
	tokFile := filepath.Join(s.t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		s.t.Fatal(err)
	}
	out := filepath.Join(s.dir, "hosts", cn)
	b, err := s.command("enroll", "--ca", "https://"+s.listen, "--roots", filepath.Join(s.caDir(), "root.crt"),
		"--token", tok, "--out", out).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("enroll %s: %v\n%s", cn, err, b)
	}
	return out, nil
}

// hostCert reads a host folder's current certificate.
func hostCert(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	c, err := readCertFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPKCS11ServeEndToEnd runs the CA with its intermediate key in a real
// SoftHSM v2 token: init creates the key in the token, serve loads it
// from there, a host enrolls, a revocation puts it on a CRL signed in the
// token, and no private key of the CA is ever a file.
func TestPKCS11ServeEndToEnd(t *testing.T) {
	tok := realtools.NewSoftHSMToken(t)
	s := newCASite(t, siteOptions{KMS: tok.KMS()})
	s.env = append(s.env, "SOFTHSM2_CONF="+tok.Conf)
	if _, err := os.Stat(filepath.Join(s.caDir(), "intermediate.key")); !os.IsNotExist(err) {
		t.Fatalf("intermediate.key exists (%v): the key must stay in the token", err)
	}
	s.serve(nil)
	host, err := s.enroll("hsm1.covalent.example.net")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(realtools.OpenSSL(t), "verify", "-CAfile", filepath.Join(s.caDir(), "root.crt"),
		"-untrusted", filepath.Join(host, "chain.pem"), filepath.Join(host, "cert.pem")).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl verify of a certificate signed in the token: %v\n%s", err, out)
	}
	leaf := hostCert(t, host)
	s.run("revoke", "--cn", "hsm1.covalent.example.net", "--reason", "keyCompromise")
	intermediate, err := readCertFile(filepath.Join(s.caDir(), "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	var crl *x509.RevocationList
	for deadline := time.Now().Add(10 * time.Second); ; {
		crl = fetchCRL(t, s)
		if crlLists(crl, leaf) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !crlLists(crl, leaf) {
		t.Fatal("the revoked certificate is not on the CRL")
	}
	if err := crl.CheckSignatureFrom(intermediate); err != nil {
		t.Fatalf("CRL signed in the token: %v", err)
	}
}

// fetchCRL downloads /crl.
func fetchCRL(t *testing.T, s *caSite) *x509.RevocationList {
	t.Helper()
	crl, err := servetest.FetchCRL(s.httpClient(), "https://"+s.listen)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func crlLists(crl *x509.RevocationList, c *x509.Certificate) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// readCertFile reads the first certificate of a PEM file.
func readCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New(path + ": no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// TestTidyAndCompactCommands: `lanyard tidy` in the running server (dry
// run, then for real, audited), then offline, and `lanyard store compact`
// on the stopped store.
func TestTidyAndCompactCommands(t *testing.T) {
	s := newCASite(t, siteOptions{Extra: "tidy:\n  tokens: 1ms\n  interval: 0s\n"})
	serve := s.serve(nil)
	if _, err := s.enroll("tidy1.covalent.example.net"); err != nil {
		t.Fatal(err)
	}
	if out := s.run("tidy", "--dry-run"); !strings.Contains(out, "in the server, would remove (dry run)") || !strings.Contains(out, "      1 tokens") {
		t.Fatalf("tidy --dry-run:\n%s", out)
	}
	if out := s.run("tidy"); !strings.Contains(out, "in the server, removed") || !strings.Contains(out, "      1 tokens") {
		t.Fatalf("tidy:\n%s", out)
	}
	if out := s.run("tidy"); !strings.Contains(out, "      0 tokens") {
		t.Fatalf("second tidy:\n%s", out)
	}
	_ = serve.Process.Signal(os.Interrupt)
	for deadline := time.Now().Add(20 * time.Second); s.healthy() == nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the store's lock goes with the process
	if out := s.run("tidy", "--dry-run"); !strings.Contains(out, "tidy offline") {
		t.Fatalf("offline tidy:\n%s", out)
	}
	if out := s.run("store", "compact", "--dry-run"); !strings.Contains(out, "dry run:") {
		t.Fatalf("store compact --dry-run:\n%s", out)
	}
	if out := s.run("store", "compact"); !strings.Contains(out, "compacted") {
		t.Fatalf("store compact:\n%s", out)
	}
	db, err := store.Open(filepath.Join(s.dir, "data", "lanyard.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for action, want := range map[store.AuditAction]int{store.ActionTidy: 2, store.ActionStoreCompact: 1} {
		if evs, _, _ := db.ListAudit(store.AuditQuery{Action: action}); len(evs) != want {
			t.Errorf("%d %s audit events, want %d", len(evs), action, want)
		}
	}
}

// TestRestoreNeverUnrevokes is issue 12's restore test: backup, revoke,
// restore → the certificate is still revoked and the next CRL is numbered
// above every CRL published; a token minted after the backup, and an
// unused one of the backup, are refused.
func TestRestoreNeverUnrevokes(t *testing.T) {
	s := newCASite(t, siteOptions{})
	serve := s.serve(nil)
	hostA, err := s.enroll("restore-a.covalent.example.net")
	if err != nil {
		t.Fatal(err)
	}
	certA := hostCert(t, hostA)
	unusedBefore := strings.TrimSpace(s.run("token", "--cn", "restore-b.covalent.example.net", "-q"))
	backup := filepath.Join(s.dir, "backup.db")
	s.run("backup", backup)
	s.run("revoke", "--cn", "restore-a.covalent.example.net", "--reason", "keyCompromise")
	mintedAfter := strings.TrimSpace(s.run("token", "--cn", "restore-c.covalent.example.net", "-q"))
	published := fetchCRL(t, s)
	if !crlLists(published, certA) {
		t.Fatal("the revocation is not on the published CRL")
	}
	crlFile := filepath.Join(s.dir, "published.crl")
	if err := os.WriteFile(crlFile, published.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	stopServe(t, s, serve)

	// Without any CRL, restore refuses (it would un-revoke).
	cmd := s.command("restore", backup, "--crl", filepath.Join(s.dir, "missing.crl"))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("restore with a missing CRL file succeeded:\n%s", out)
	}
	dry := s.run("restore", backup, "--dry-run")
	if !strings.Contains(dry, "dry run:") || !strings.Contains(dry, "1 revocations re-applied") {
		t.Fatalf("restore --dry-run:\n%s", dry)
	}
	out := s.run("restore", backup, "--crl", crlFile)
	t.Log(out)
	for _, want := range []string{"1 revocations re-applied", certA.SerialNumber.Text(16), "unused enrollment tokens of the backup withdrawn", "before-restore-"} {
		if !strings.Contains(out, want) {
			t.Errorf("restore output lacks %q", want)
		}
	}

	s.serve(nil)
	var crl *x509.RevocationList
	for deadline := time.Now().Add(10 * time.Second); ; {
		crl = fetchCRL(t, s)
		if crl.Number.Cmp(published.Number) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if crl.Number.Cmp(published.Number) <= 0 {
		t.Fatalf("CRL number after restore %v, want above the published %v", crl.Number, published.Number)
	}
	if !crlLists(crl, certA) {
		t.Fatal("restore un-revoked the certificate: it is not on the CRL")
	}
	if out := s.run("certs", "--status", "revoked"); !strings.Contains(out, "restore-a.covalent.example.net") {
		t.Fatalf("certs --status revoked after restore:\n%s", out)
	}
	for name, tok := range map[string]string{"minted after the backup": mintedAfter, "unused in the backup": unusedBefore} {
		out, err := s.command("enroll", "--ca", "https://"+s.listen, "--roots", filepath.Join(s.caDir(), "root.crt"),
			"--token", tok, "--out", filepath.Join(s.dir, "hosts", "after-restore")).CombinedOutput()
		if err == nil {
			t.Errorf("a token %s was redeemed after the restore:\n%s", name, out)
		}
	}
}

// stopServe interrupts serve and waits until it no longer answers (and so
// no longer holds the store's lock).
func stopServe(t *testing.T, s *caSite, serve *exec.Cmd) {
	t.Helper()
	_ = serve.Process.Signal(os.Interrupt)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		// Not serve.ProcessState: the Wait goroutine in caSite.serve
		// writes it (a data race); a server that stopped answering is
		// enough, and the store lock below tells when it exited.
		if s.healthy() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The lock goes when the process exits; wait for the store to open.
	for time.Now().Before(deadline) {
		db, err := store.Open(filepath.Join(s.dir, "data", "lanyard.db"), store.Options{Timeout: 100 * time.Millisecond, NoBackup: true})
		if err == nil {
			db.Close()
			return
		}
	}
	t.Fatal("the store is still locked 20s after serve was interrupted")
}

// TestRotateIntermediateEndToEnd: a host enrolled under the first
// intermediate keeps working through `lanyard ca rotate-intermediate`:
// after the restart new enrollments come from the new intermediate, the
// old host renews onto it, and `lanyard ca status` counts what is left.
func TestRotateIntermediateEndToEnd(t *testing.T) {
	s := newCASite(t, siteOptions{Extra: "tidy:\n  interval: 0s\n"})
	serve := s.serve(nil)
	oldHost, err := s.enroll("rot1.covalent.example.net")
	if err != nil {
		t.Fatal(err)
	}
	oldCert := hostCert(t, oldHost)
	stopServe(t, s, serve)
	rootKey := filepath.Join(s.dir, "offline", "root.key")
	if out := s.run("ca", "rotate-intermediate", "--root-key", rootKey, "--dry-run"); !strings.Contains(out, "dry run: would retire") {
		t.Fatalf("dry run:\n%s", out)
	}
	out := s.run("ca", "rotate-intermediate", "--root-key", rootKey)
	if !strings.Contains(out, "new intermediate") || !strings.Contains(out, "retired") {
		t.Fatalf("rotate-intermediate:\n%s", out)
	}
	status := s.run("ca", "status")
	if !strings.Contains(status, "retired intermediate") || !strings.Contains(status, "keep its key until then") {
		t.Fatalf("ca status after rotation:\n%s", status)
	}
	// The old host's certificate is live: its CRL needs the retired key.
	retired, err := filepath.Glob(filepath.Join(s.caDir(), "retired", "*.crt"))
	if err != nil || len(retired) != 1 {
		t.Fatalf("retired intermediates: %v %v", retired, err)
	}
	oldSerial := strings.TrimSuffix(filepath.Base(retired[0]), ".crt")
	if out, err := s.command("ca", "destroy-retired-key", oldSerial).CombinedOutput(); err == nil || !strings.Contains(string(out), "live certificate") {
		t.Fatalf("destroy-retired-key with a live certificate under it: %v\n%s", err, out)
	}
	newInter, err := readCertFile(filepath.Join(s.caDir(), "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	s.serve(nil)
	newHost, err := s.enroll("rot2.covalent.example.net")
	if err != nil {
		t.Fatal(err)
	}
	if err := hostCert(t, newHost).CheckSignatureFrom(newInter); err != nil {
		t.Fatalf("new enrollment after the rotation: %v", err)
	}
	s.run("renew", "--dir", oldHost, "--force")
	renewed := hostCert(t, oldHost)
	if renewed.SerialNumber.Cmp(oldCert.SerialNumber) == 0 {
		t.Fatal("the old host did not renew")
	}
	if err := renewed.CheckSignatureFrom(newInter); err != nil {
		t.Fatalf("the old host's renewal is not from the new intermediate: %v", err)
	}
	db, err := store.Open(filepath.Join(s.dir, "data", "lanyard.db"), store.Options{Timeout: 10 * time.Millisecond, NoBackup: true})
	if err == nil {
		db.Close()
		t.Fatal("the store opened while serve runs")
	}
}
