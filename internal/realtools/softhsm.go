package realtools

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// softHSMModules are where Debian (and other distributions) install the
// SoftHSM v2 PKCS#11 module.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// SoftHSMModule returns the path of the SoftHSM v2 PKCS#11 module, failing
// the test (with the make target that installs it) when it is missing.
func SoftHSMModule(t testing.TB) string {
	t.Helper()
	for _, p := range softHSMModules {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("realtools: the SoftHSM v2 module (libsofthsm2.so) is not installed; run `make deps` (Debian package softhsm2)")
	return ""
}

// SoftHSMToken is a fresh SoftHSM v2 token that a test owns.
type SoftHSMToken struct {
	// Conf is the SOFTHSM2_CONF file (already set in the environment).
	Conf string
	// Label is the token label.
	Label string
	// PinFile holds the user PIN (0600).
	PinFile string
	// Module is the PKCS#11 module path.
	Module string
}

// KMS returns the go.step.sm/crypto pkcs11 KMS URI of the token, with the
// PIN read from PinFile (never in the URI itself).
func (tok *SoftHSMToken) KMS() string {
	return fmt.Sprintf("pkcs11:module-path=%s;token=%s?pin-source=%s",
		tok.Module, url.PathEscape(tok.Label), tok.PinFile)
}

// NewSoftHSMToken creates a SoftHSM v2 token in a t.TempDir() with
// softhsm2-util and points SOFTHSM2_CONF at its own configuration file
// (t.Setenv, so the test cannot be parallel: the PKCS#11 module reads that
// variable once per process, when it is first initialised, and is
// finalised again when the last KMS using it is closed). Child processes
// the test starts inherit the variable.
func NewSoftHSMToken(t testing.TB) *SoftHSMToken {
	t.Helper()
	module := SoftHSMModule(t)
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Fatalf("realtools: softhsm2-util not found; run `make deps` (Debian package softhsm2)")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	confText := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	pin := randomHex(t, 8)
	soPin := randomHex(t, 8)
	label := "lanyard-test"
	// softhsm2-util takes the PINs on its command line only; they protect
	// a throw-away token in a temporary folder.
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("realtools: softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(pin), 0o600); err != nil {
		t.Fatal(err)
	}
	return &SoftHSMToken{Conf: conf, Label: label, PinFile: pinFile, Module: module}
}

// TokenDir returns the folder holding the token's object files.
func (tok *SoftHSMToken) TokenDir() string { return filepath.Join(filepath.Dir(tok.Conf), "tokens") }

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
