package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/store"
)

// TestDiskFullIsRetryable runs a real `lanyard serve` whose disk "fills
// up": its RLIMIT_FSIZE is lowered to one page while it runs, so every
// write of the store's data pages fails with EFBIG exactly as a full
// filesystem fails with ENOSPC (the store treats both alike). The limit is
// used rather than a tiny filesystem because lowering and raising it needs
// no privileges (a tmpfs or loop mount needs CAP_SYS_ADMIN, which CI
// containers often lack) and it hits every write at once, so the test is
// deterministic. Go ignores SIGXFSZ (the runtime's default), so the writes
// fail instead of killing the process.
//
// While the disk is full an enrollment is answered Unavailable (retryable)
// and leaves no certificate and no used token behind; once space returns
// the same token works without restarting the server, and afterwards the
// store opens, its indexes agree, and every certificate a host holds is
// recorded.
func TestDiskFullIsRetryable(t *testing.T) {
	s := newCASite(t, siteOptions{Extra: "tidy:\n  interval: 0s\n"})
	serve := s.serve(nil)
	if _, err := s.enroll("before.covalent.example.net"); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(s.run("token", "--cn", "during.covalent.example.net", "-q"))
	pid := serve.Process.Pid
	setFSize := func(limit uint64) {
		t.Helper()
		if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}, nil); err != nil {
			t.Fatalf("prlimit: %v", err)
		}
	}
	enroll := func() (string, error) {
		out, err := s.command("enroll", "--ca", "https://"+s.listen, "--roots", filepath.Join(s.caDir(), "root.crt"),
			"--token", tok, "--out", filepath.Join(s.dir, "hosts", "during")).CombinedOutput()
		return string(out), err
	}

	setFSize(4096) // the disk is full
	for i := range 3 {
		out, err := enroll()
		if err == nil {
			t.Fatalf("enrollment %d on a full disk succeeded:\n%s", i, out)
		}
		if !strings.Contains(strings.ToLower(out), "unavailable") {
			t.Fatalf("enrollment on a full disk: want a retryable Unavailable answer, got:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(s.dir, "hosts", "during", "cert.pem")); err == nil {
			t.Fatal("a certificate reached the host while its record could not be written")
		}
	}
	if err := s.healthy(); err != nil {
		t.Fatalf("the server stopped answering on a full disk: %v", err)
	}

	setFSize(unix.RLIM_INFINITY) // space returns
	if out, err := enroll(); err != nil {
		t.Fatalf("enrollment after space returned (same token, no restart): %v\n%s", err, out)
	}
	stopServe(t, s, serve)

	db, err := store.Open(filepath.Join(s.dir, "data", "lanyard.db"), store.Options{NoBackup: true})
	if err != nil {
		t.Fatalf("the store does not open after the disk was full: %v", err)
	}
	defer db.Close()
	if err := db.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"before.covalent.example.net", "during"} {
		c := hostCert(t, filepath.Join(s.dir, "hosts", h))
		if _, err := db.GetCert(lanyardv1.FormatSerial(c.SerialNumber)); err != nil {
			t.Errorf("host %s holds certificate %x that the store has no record of: %v", h, c.SerialNumber, err)
		}
	}
}
