package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/revocation"
)

const testRole = "arn:aws:iam::123456789012:role/lanyard-test"

func TestRenewDirEndToEnd(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	dir := enroll(t, ca, ca.URL, "host1.covalent.example.net", "P-256")
	before := currentVersion(t, dir)

	res, err := RenewDir(context.Background(), dir, RenewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := currentVersion(t, dir)
	oldSerial := lanyardv1.FormatSerial(before.Cert.SerialNumber)
	switch {
	case res.Serial == oldSerial || res.PreviousSerial != oldSerial:
		t.Errorf("serials: new %s previous %s, enrolled %s", res.Serial, res.PreviousSerial, oldSerial)
	case after.Name != res.Version || res.PreviousVersion != before.Name || after.Name == before.Name:
		t.Errorf("current is %s; result says %s (was %s)", after.Name, res.Version, res.PreviousVersion)
	case lanyardv1.FormatSerial(after.Cert.SerialNumber) != res.Serial:
		t.Errorf("current certificate %x is not the renewed one %s", after.Cert.SerialNumber, res.Serial)
	case after.Cert.Subject.CommonName != before.Cert.Subject.CommonName:
		t.Errorf("CN changed: %q", after.Cert.Subject.CommonName)
	case KeyTypeOf(after.Key) != "P-256" || after.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(before.Key.Public()):
		t.Errorf("want a new P-256 key, got %s (same key: %v)", KeyTypeOf(after.Key), after.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(before.Key.Public()))
	case res.Window.End.IsZero() || res.Window.Reason != schedule.ReasonScheduled:
		t.Errorf("window %+v", res.Window)
	}
	// The old version is kept, untouched.
	old, err := (&hostdir.Dir{Path: dir}).Load(before.Name)
	if err != nil {
		t.Fatalf("previous version gone: %v", err)
	}
	if string(old.CertPEM) != string(before.CertPEM) || string(old.KeyPEM) != string(before.KeyPEM) {
		t.Error("previous version changed")
	}
	// The Certbot-style names follow current.
	if b, _ := os.ReadFile(filepath.Join(dir, "cert.pem")); string(b) != string(after.CertPEM) {
		t.Error("DIR/cert.pem is not the new certificate")
	}
	rec, err := ca.Store.GetCert(res.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if rec.PreviousSerial != oldSerial {
		t.Errorf("store: %s renews %q, want %s", res.Serial, rec.PreviousSerial, oldSerial)
	}
	// The window of the new certificate, as renew and the agent see it.
	st, err := CheckDir(context.Background(), dir)
	if err != nil || st.WindowErr != nil || st.Serial != res.Serial {
		t.Fatalf("CheckDir: %+v %v", st, err)
	}
}

// TestRenewDirRealHelper: after each renewal, the real aws_signing_helper
// credential-process, given the paths ResolveHelperArgs resolves, sends the
// new certificate and gets credentials from the emulator.
func TestRenewDirRealHelper(t *testing.T) {
	helper := realtools.SigningHelper(t)
	ca := testca.Start(t, testca.Options{})
	emu, anchorArn, profileArn := ca.SeededEmulator(t, testRole)
	dir := enroll(t, ca, ca.URL, "host2.covalent.example.net", "P-256")
	flags := []string{"--trust-anchor-arn", anchorArn, "--profile-arn", profileArn, "--role-arn", testRole, "--endpoint", emu.URL, "--region", "us-east-1"}
	for i := range 4 {
		serial := lanyardv1.FormatSerial(currentVersion(t, dir).Cert.SerialNumber)
		if i > 0 {
			res, err := RenewDir(context.Background(), dir, RenewOptions{})
			if err != nil {
				t.Fatal(err)
			}
			serial = res.Serial
		}
		args, err := ResolveHelperArgs(dir, flags)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(args, " "), filepath.Join(dir, "versions")) {
			t.Fatalf("helper args do not name a version folder: %v", args)
		}
		cmd := exec.Command(helper, args...)
		cmd.Env = realtools.HelperEnv()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("renewal %d: aws_signing_helper: %v\n%s", i, err, stderr.String())
		}
		var cred struct {
			Version                                                int
			AccessKeyId, SecretAccessKey, SessionToken, Expiration string
		}
		if err := json.Unmarshal(out, &cred); err != nil || cred.Version != 1 || cred.AccessKeyId == "" || cred.SessionToken == "" {
			t.Fatalf("renewal %d: credential output %q (%v)", i, out, err)
		}
		s := emu.Sessions()
		if got := lanyardv1.FormatSerial(s[len(s)-1].Serial); got != serial {
			t.Fatalf("renewal %d: the helper sent serial %s, want the new %s", i, got, serial)
		}
		t.Logf("renewal %d: helper sent serial %s, got %s", i, serial, cred.AccessKeyId)
	}
}

func TestResolveHelperArgs(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	dir := enroll(t, ca, ca.URL, "host3.covalent.example.net", "P-256")
	v := currentVersion(t, dir)
	tests := []struct {
		name    string
		dir     string
		flags   []string
		want    []string
		wantErr error
	}{
		{name: "resolved version", dir: dir, flags: []string{"--role-arn", "r"}, want: []string{
			"credential-process", "--certificate", filepath.Join(v.Path, "cert.pem"),
			"--private-key", filepath.Join(v.Path, "privkey.pem"),
			"--intermediates", filepath.Join(v.Path, "chain.pem"), "--role-arn", "r"}},
		{name: "files are the resolver's", dir: dir, flags: []string{"--certificate", "/tmp/x.pem"}, wantErr: ErrHelperArgs},
		{name: "files are the resolver's (= form)", dir: dir, flags: []string{"--private-key=/tmp/k.pem"}, wantErr: ErrHelperArgs},
		{name: "not enrolled", dir: t.TempDir(), wantErr: hostdir.ErrNotEnrolled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveHelperArgs(tt.dir, tt.flags)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("got %v, %v\nwant %v", got, err, tt.want)
			}
		})
	}
}

func TestRenewDirFaults(t *testing.T) {
	ctx := context.Background()

	t.Run("CA stopped: retryable, files untouched", func(t *testing.T) {
		ca := testca.Start(t, testca.Options{})
		dir := enroll(t, ca, ca.URL, "f1.covalent.example.net", "P-256")
		before := snapshot(t, dir)
		ca.Stop()
		_, err := RenewDir(ctx, dir, RenewOptions{})
		if !errors.Is(err, ErrUnavailable) || IsFinal(err) {
			t.Fatalf("err = %v, want a retryable ErrUnavailable", err)
		}
		sameSnapshot(t, "after a failed renewal", before, snapshot(t, dir))
		t.Logf("error: %v", err)
	})

	t.Run("revoked: final", func(t *testing.T) {
		ca := testca.Start(t, testca.Options{})
		dir := enroll(t, ca, ca.URL, "f2.covalent.example.net", "P-256")
		serial := lanyardv1.FormatSerial(currentVersion(t, dir).Cert.SerialNumber)
		if _, err := ca.Revocation.Revoke(ctx, revocation.Request{Serial: serial, Reason: 1, By: "admin:test"}); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, dir)
		_, err := RenewDir(ctx, dir, RenewOptions{})
		if !errors.Is(err, ErrRejected) || !IsFinal(err) || connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("err = %v, want a final ErrRejected (PermissionDenied)", err)
		}
		sameSnapshot(t, "after a refused renewal", before, snapshot(t, dir))
		st, err := CheckDir(ctx, dir)
		if err != nil || st.Window.Reason != schedule.ReasonRevoked {
			t.Errorf("window of a revoked certificate: %+v %v", st, err)
		}
	})

	t.Run("expired: ErrExpired, no request sent", func(t *testing.T) {
		ca := testca.Start(t, testca.Options{})
		dir := enroll(t, ca, ca.URL, "f3.covalent.example.net", "P-256")
		v := currentVersion(t, dir)
		before := snapshot(t, dir)
		_, err := RenewDir(ctx, dir, RenewOptions{Now: func() time.Time { return v.Cert.NotAfter.Add(time.Second) }})
		if !errors.Is(err, ErrExpired) || !IsFinal(err) {
			t.Fatalf("err = %v, want a final ErrExpired", err)
		}
		sameSnapshot(t, "after an expired renewal", before, snapshot(t, dir))
		if _, err := ca.Store.GetCert(lanyardv1.FormatSerial(v.Cert.SerialNumber)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("expired with re-enrollment token: enrolls again", func(t *testing.T) {
		// One clock for the CA and the host: the re-enrolled certificate
		// must be valid when the host checks it.
		clk := clock.NewFake(time.Now())
		ca := testca.Start(t, testca.Options{Clock: clk})
		cn := "f4.covalent.example.net"
		dir := enroll(t, ca, ca.URL, cn, "P-256")
		v := currentVersion(t, dir)
		clk.Set(v.Cert.NotAfter.Add(time.Hour))
		tok := filepath.Join(t.TempDir(), "reenroll.token")
		if err := os.WriteFile(tok, []byte(ca.Token(t, cn)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := RenewDir(ctx, dir, RenewOptions{ReenrollTokenFile: tok, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		after := currentVersion(t, dir)
		if !res.Reenrolled || after.Name != res.Version || after.Cert.Subject.CommonName != cn || KeyTypeOf(after.Key) != "P-256" {
			t.Fatalf("re-enrollment: %+v, current %s CN %q", res, after.Name, after.Cert.Subject.CommonName)
		}
		// The token was single use: a second expiry cannot use it again.
		_, err = RenewDir(ctx, dir, RenewOptions{ReenrollTokenFile: tok, Now: func() time.Time { return after.Cert.NotAfter.Add(time.Hour) }})
		if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrRejected) || !IsFinal(err) {
			t.Fatalf("second re-enrollment with a used token: %v", err)
		}
	})

	t.Run("unwritable target: clear error, previous version current", func(t *testing.T) {
		ca := testca.Start(t, testca.Options{})
		dir := enroll(t, ca, ca.URL, "f5.covalent.example.net", "P-256")
		v := currentVersion(t, dir)
		before := snapshot(t, dir)
		// The next version's name is taken by a file: hostdir cannot rename
		// the new folder into place (as on a full or read-only disk, the
		// write fails after the CA answered).
		blocker := filepath.Join(dir, "versions", "000002")
		if err := os.WriteFile(blocker, []byte("in the way"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := RenewDir(ctx, dir, RenewOptions{})
		if !errors.Is(err, ErrWrite) || IsFinal(err) || !strings.Contains(err.Error(), "version "+v.Name+" stays current") {
			t.Fatalf("err = %v, want a retryable ErrWrite naming the version that stays current", err)
		}
		t.Logf("error: %v", err)
		sameSnapshot(t, "after a failed write", before, snapshot(t, dir))
		if entries, _ := os.ReadDir(filepath.Join(dir, "versions")); len(entries) != 2 {
			t.Errorf("versions/ holds %d entries, want the old version and the blocker only", len(entries))
		}
		// versions/ replaced by a file: refused before anything is asked.
		if err := os.RemoveAll(filepath.Join(dir, "versions")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "versions"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := RenewDir(ctx, dir, RenewOptions{}); !errors.Is(err, ErrWrite) || !strings.Contains(err.Error(), "not a folder") {
			t.Fatalf("versions is a file: err = %v", err)
		}
	})

	t.Run("key type change refused unless allowed", func(t *testing.T) {
		ca := testca.Start(t, testca.Options{})
		dir := enroll(t, ca, ca.URL, "f6.covalent.example.net", "RSA-2048")
		before := snapshot(t, dir)
		_, err := RenewDir(ctx, dir, RenewOptions{KeyType: "P-256"})
		if !errors.Is(err, ErrKeyTypeChange) || !IsFinal(err) {
			t.Fatalf("RSA-2048 → P-256: err = %v, want ErrKeyTypeChange", err)
		}
		sameSnapshot(t, "after a refused key type change", before, snapshot(t, dir))
		// RSA-2048 → RSA-3072 keeps the signing family: no permission needed.
		res, err := RenewDir(ctx, dir, RenewOptions{KeyType: "RSA-3072"})
		if err != nil {
			t.Fatal(err)
		}
		if got := KeyTypeOf(currentVersion(t, dir).Key); got != "RSA-3072" || res.Version != currentVersion(t, dir).Name {
			t.Fatalf("key type after a change within the family: %s", got)
		}
		// Allowed locally, and the profile allows P-256: the CA issues it
		// (one rule: the host decides on family changes, the profile on
		// key types).
		res, err = RenewDir(ctx, dir, RenewOptions{KeyType: "P-256", AllowKeyTypeChange: true})
		if err != nil {
			t.Fatalf("RSA → P-256 allowed locally: %v", err)
		}
		if got := KeyTypeOf(currentVersion(t, dir).Key); got != "P-256" || res.Version != currentVersion(t, dir).Name {
			t.Fatalf("key type after an allowed family change: %s", got)
		}
	})

	t.Run("killed between writing and swapping: cleaned up", func(t *testing.T) {
		ca := testca.Start(t, testca.Options{})
		dir := enroll(t, ca, ca.URL, "f7.covalent.example.net", "P-256")
		v := currentVersion(t, dir)
		// What a crash leaves: a half-written temporary folder, and a
		// complete version folder that never became current.
		tmp := filepath.Join(dir, "versions", ".tmp-123456")
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "privkey.pem"), []byte("-----BEGIN PRIV"), 0o600); err != nil {
			t.Fatal(err)
		}
		orphan := filepath.Join(dir, "versions", "000002")
		if err := os.CopyFS(orphan, os.DirFS(v.Path)); err != nil {
			t.Fatal(err)
		}
		res, err := RenewDir(ctx, dir, RenewOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary folder left: %v", err)
		}
		after := currentVersion(t, dir)
		if res.Version != "000002" || after.Name != "000002" || lanyardv1.FormatSerial(after.Cert.SerialNumber) != res.Serial {
			t.Errorf("after clean-up the renewal wrote %s (current %s, serial %x); the orphan must have been removed first",
				res.Version, after.Name, after.Cert.SerialNumber)
		}
	})

	t.Run("not enrolled", func(t *testing.T) {
		_, err := RenewDir(ctx, t.TempDir(), RenewOptions{})
		if !errors.Is(err, ErrNotEnrolled) || !IsFinal(err) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestRenewDirRefusesUntrustedAnswer is issue 9 item 1 for renewals: the
// answer must chain to DIR/ca.pem for client authentication and carry the
// current certificate's names exactly, or nothing is written. The CA
// front here holds a TLS certificate under the folder's root (a leaked
// server key, or a buggy CA) and signs the CSR's key as the test says.
func TestRenewDirRefusesUntrustedAnswer(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	other := testca.Start(t, testca.Options{})
	cn := "front.covalent.example.net"
	tests := []struct {
		name  string
		issue testca.Issue
		ok    bool
	}{
		{"leaf under another root", func(csr *x509.CertificateRequest) (string, string) {
			return other.SignAs(t, csr.PublicKey, cn)
		}, false},
		{"other CN", func(csr *x509.CertificateRequest) (string, string) {
			return ca.SignAs(t, csr.PublicKey, "admin.covalent.example.net")
		}, false},
		{"an added SAN", func(csr *x509.CertificateRequest) (string, string) {
			return ca.SignAs(t, csr.PublicKey, cn, "db.covalent.example.net")
		}, false},
		{"same names, same root: written", func(csr *x509.CertificateRequest) (string, string) {
			return ca.SignAs(t, csr.PublicKey, cn)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := enroll(t, ca, ca.Impostor(t, tt.issue), cn, "P-256")
			before := snapshot(t, dir)
			_, err := RenewDir(context.Background(), dir, RenewOptions{Logger: discardLogger})
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, caclient.ErrUntrustedIssue) || !IsFinal(err) {
				t.Fatalf("err = %v, want a final caclient.ErrUntrustedIssue", err)
			}
			sameSnapshot(t, "after a refused answer", before, snapshot(t, dir))
			if vs, _ := os.ReadDir(filepath.Join(dir, hostdir.VersionsDir)); len(vs) != 1 {
				t.Errorf("%d version folders after a refused answer, want 1", len(vs))
			}
		})
	}
}
