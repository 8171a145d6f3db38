package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/pembundle"
	"github.com/lanyard/lanyard/store"
)

// skipUnderRace skips a test that only drives child lanyard binaries.
func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceBuild {
		t.Skip("drives only child lanyard binaries, which are not race-built: the -race pass adds nothing to the plain pass, which runs it")
	}
}

// TestRotateRootCommands drives `lanyard ca rotate-root` and its
// `--finish` through the CLI on a CA without certificates: the dry runs
// change nothing, a second rotation is refused while one is in progress,
// `ca status` says where the rotation stands, and the finish leaves one
// root and lets the next rotation start.
func TestRotateRootCommands(t *testing.T) {
	skipUnderRace(t)
	s := newCASite(t, siteOptions{})
	rootKey := filepath.Join(s.dir, "offline", "root.key")
	rootBefore, _ := os.ReadFile(filepath.Join(s.caDir(), "root.crt"))
	if out := s.run("ca", "rotate-root", "--root-key", rootKey, "--dry-run"); !strings.Contains(out, "dry run: would replace the root") {
		t.Fatalf("dry run:\n%s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(s.caDir(), "root.crt")); string(after) != string(rootBefore) {
		t.Fatal("the dry run changed root.crt")
	}
	if out := s.run("ca", "rotate-root", "--root-key", rootKey); !strings.Contains(out, "new root") || !strings.Contains(out, "cross-signed by the old root") {
		t.Fatalf("rotate-root:\n%s", out)
	}
	out, err := s.command("ca", "rotate-root", "--root-key", rootKey).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "a root rotation is in progress") {
		t.Fatalf("a second rotate-root: %v\n%s", err, out)
	}
	status := s.run("ca", "status")
	for _, want := range []string{"old root (rotating out)", "root rotation", "it can finish now", "under the old root"} {
		if !strings.Contains(status, want) {
			t.Fatalf("ca status during the rotation lacks %q:\n%s", want, status)
		}
	}
	if out := s.run("ca", "rotate-root", "--finish", "--dry-run"); !strings.Contains(out, "dry run: would retire the old root") {
		t.Fatalf("finish dry run:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(s.caDir(), "cross.crt")); err != nil {
		t.Fatalf("the finish dry run removed the cross-certificates: %v", err)
	}
	if out := s.run("ca", "rotate-root", "--finish"); !strings.Contains(out, "alone is trusted now") {
		t.Fatalf("finish:\n%s", out)
	}
	for _, f := range []string{"roots.pem", "cross.crt"} {
		if _, err := os.Stat(filepath.Join(s.caDir(), f)); !os.IsNotExist(err) {
			t.Fatalf("%s is still there after the finish: %v", f, err)
		}
	}
	status = s.run("ca", "status")
	if !strings.Contains(status, "retired root") || strings.Contains(status, "root rotation") {
		t.Fatalf("ca status after the finish:\n%s", status)
	}
	db, err := store.Open(filepath.Join(s.dir, "data", "lanyard.db"), store.Options{Timeout: time.Second, NoBackup: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []store.AuditAction{store.ActionRotateRoot, store.ActionFinishRootRotation} {
		if evs, _, err := db.ListAudit(store.AuditQuery{Action: a}); err != nil || len(evs) != 1 {
			t.Errorf("audit log: %d %s events (%v), want 1", len(evs), a, err)
		}
	}
	db.Close()
	if out := s.run("ca", "rotate-root", "--root-key", rootKey, "--dry-run"); !strings.Contains(out, "dry run") {
		t.Fatalf("the next rotation's dry run:\n%s", out)
	}
}

// TestRotateRootServeEndToEnd: `lanyard serve` after `lanyard ca
// rotate-root` reaches a host that pinned the old root (TLS through the
// new intermediate's cross-certificate), `lanyard renew` moves it onto
// the new root and teaches it the new root; the finish is refused while
// its old certificate is in use.
func TestRotateRootServeEndToEnd(t *testing.T) {
	skipUnderRace(t)
	s := newCASite(t, siteOptions{Extra: "tidy:\n  interval: 0s\n"})
	serve := s.serve(nil)
	host, err := s.enroll("rr1.covalent.example.net")
	if err != nil {
		t.Fatal(err)
	}
	stopServe(t, s, serve)
	rootKey := filepath.Join(s.dir, "offline", "root.key")
	s.run("ca", "rotate-root", "--root-key", rootKey)
	status := s.run("ca", "status")
	for _, want := range []string{"still in use", "rr1.covalent.example.net", "the admin credential is one"} {
		if !strings.Contains(status, want) {
			t.Fatalf("ca status with a live host of the old root lacks %q:\n%s", want, status)
		}
	}
	out, err := s.command("ca", "rotate-root", "--finish").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificates still chain to the old root") {
		t.Fatalf("finish with a host of the old root: %v\n%s", err, out)
	}
	newInter, err := readCertFile(filepath.Join(s.caDir(), "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	s.serve(nil)
	s.run("renew", "--dir", host, "--force")
	if err := hostCert(t, host).CheckSignatureFrom(newInter); err != nil {
		t.Fatalf("the host's renewal is not from the new intermediate: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(host, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if roots, err := pembundle.ParseNonEmpty(b); err != nil || len(roots) != 2 {
		t.Fatalf("the host trusts %d roots after its renewal (%v), want the pinned and the new one", len(roots), err)
	}
}
