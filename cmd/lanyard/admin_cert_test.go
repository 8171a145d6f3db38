package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/servetest"
)

// TestAdminRotateCertEndToEnd runs `lanyard serve --dev` (with the Roles
// Anywhere emulator, so the anchors status endpoint is mounted), rotates
// the admin credential with `lanyard admin rotate-cert`, and checks that
// every admin entry point refuses the old credential at once and takes
// the new one: Connect admin calls, online backup, the anchors status and
// the web page's certificate login.
func TestAdminRotateCertEndToEnd(t *testing.T) {
	bin := servetest.Binary(t)
	dir := t.TempDir()
	listen, emu := freeAddr(t), freeAddr(t)
	env := append(realtools.HelperEnv(), "LANYARD_ANCHORS_EMULATOR_LISTEN="+emu, "AWS_CONFIG_FILE="+filepath.Join(dir, "aws", "config"),
		"LANYARD_LISTEN="+listen)
	stdout := startDevServe(t, dir, env)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), " enroll ") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(90 * time.Second):
		t.Fatal("serve --dev was not ready within 90s")
	}
	p := ca.PathsIn(filepath.Join(dir, ".lanyard", "ca"))
	old, err := tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := os.ReadFile(p.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	entryPoints := func(cert *tls.Certificate) map[string]int {
		t.Helper()
		cl, err := caclient.New("https://"+listen, roots, cert)
		if err != nil {
			t.Fatal(err)
		}
		cl.HTTP.Transport.(*http.Transport).DisableKeepAlives = true
		cl.HTTP.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		got := map[string]int{}
		_, err = cl.Admin.ListCertificates(context.Background(), connect.NewRequest(&v1.ListCertificatesRequest{}))
		got["connect"] = int(connect.CodeOf(err))
		if err == nil {
			got["connect"] = 0
		}
		_, err = cl.Admin.GetAnchorStatus(context.Background(), connect.NewRequest(&v1.GetAnchorStatusRequest{}))
		got["anchors status"] = int(connect.CodeOf(err))
		if err == nil {
			got["anchors status"] = 0
		}
		for _, path := range []string{"/_backup", "/admin/"} {
			resp, err := cl.HTTP.Get(cl.URL + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			resp.Body.Close()
			got[path] = resp.StatusCode
		}
		return got
	}
	live := map[string]int{"connect": 0, "anchors status": 0, "/_backup": 200, "/admin/": 200}
	if got := entryPoints(&old); !equalCodes(got, live) {
		t.Fatalf("before the rotation, the admin credential gets %v, want %v", got, live)
	}
	cmd := exec.Command(bin, "admin", "rotate-cert", "--reason", "keyCompromise")
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("admin rotate-cert: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "revoked admin certificate") {
		t.Fatalf("rotate-cert output: %s", out)
	}
	refused := map[string]int{"connect": int(connect.CodePermissionDenied), "anchors status": int(connect.CodePermissionDenied),
		"/_backup": 403, "/admin/": 303}
	if got := entryPoints(&old); !equalCodes(got, refused) {
		t.Errorf("after the rotation, the old admin credential gets %v, want %v", got, refused)
	}
	fresh, err := tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		t.Fatalf("the rotated credential does not load: %v", err)
	}
	if fi, err := os.Stat(p.AdminKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key mode: %v %v", fi.Mode(), err)
	}
	if got := entryPoints(&fresh); !equalCodes(got, live) {
		t.Errorf("the rotated admin credential gets %v, want %v", got, live)
	}
	// The CLI uses the new credential by itself, and renews it over mTLS.
	for _, args := range [][]string{{"certs", "--cn", "lanyard-admin"}, {"admin", "renew-cert"}, {"certs", "--status", "revoked"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "lanyard-admin") && args[0] == "certs" {
			t.Fatalf("lanyard %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func equalCodes(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAdminCommandsWarnBeforeExpiry: with an admin certificate that ends
// within a week, an admin command says so on stderr (and not on stdout).
func TestAdminCommandsWarnBeforeExpiry(t *testing.T) {
	tests := []struct {
		name string
		age  time.Duration // how long ago the CA was made
		warn bool
	}{
		{"fresh", 0, false},
		{"eight days left", ca.AdminValidity - 8*24*time.Hour, false},
		{"six days left", ca.AdminValidity - 6*24*time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			caDir := filepath.Join(dir, "ca")
			if _, err := ca.Init(ca.InitOptions{Dir: caDir, Now: func() time.Time { return time.Now().Add(-tt.age) }}); err != nil {
				t.Fatal(err)
			}
			cfgPath := filepath.Join(dir, "lanyard.yaml")
			yaml := "data_dir: " + dir + "\nca_dir: " + caDir + "\nlisten: 127.0.0.1:8443\nprofiles:\n  covalent:\n    cn: [\"*.covalent.example.net\"]\n"
			if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			root := newRootCmd()
			var stdout, stderr bytes.Buffer
			root.SetOut(&stdout)
			root.SetErr(&stderr)
			root.SetArgs([]string{"admin", "rotate-cert", "--dry-run", "--config", cfgPath})
			if err := root.ExecuteContext(context.Background()); err != nil {
				t.Fatal(err)
			}
			warned := strings.Contains(stderr.String(), "admin certificate") && strings.Contains(stderr.String(), "expires in")
			if warned != tt.warn {
				t.Fatalf("warned %v, want %v; stderr %q", warned, tt.warn, stderr.String())
			}
			if strings.Contains(stdout.String(), "expires in") {
				t.Fatalf("the warning went to stdout: %q", stdout.String())
			}
		})
	}
}
