// Package realtools finds (or builds) the real external tools that lanyard's
// tests run: the real aws_signing_helper and openssl. Tests use real parts,
// so a missing tool fails the test with a hint instead of skipping it.
package realtools

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ModulePath is the module whose go.mod marks the repository root.
const ModulePath = "github.com/lanyard/lanyard"

// HelperEnvVar names the environment variable that overrides the path of
// aws_signing_helper.
const HelperEnvVar = "LANYARD_SIGNING_HELPER"

// helperModule is the tool package built from tools/signinghelper.
const helperModule = "github.com/aws/rolesanywhere-credential-helper"

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error

	buildMu sync.Mutex
)

// RepoRoot returns the repository root: the nearest directory, from the
// working directory upwards, whose go.mod declares module
// github.com/lanyard/lanyard.
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() { rootDir, rootErr = findRoot() })
	if rootErr != nil {
		t.Fatalf("realtools: %v", rootErr)
	}
	return rootDir
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(data, ModulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte, path string) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" && strings.Trim(f[1], `"`) == path {
			return true
		}
	}
	return false
}

// SigningHelper returns the path of the real aws_signing_helper (v1.5.0):
// $LANYARD_SIGNING_HELPER if set, else <repo>/bin/aws_signing_helper if it
// exists, else it builds that file (cgo) from the pinned tool module in
// <repo>/tools/signinghelper, holding a file lock so that parallel test
// binaries build it only once.
func SigningHelper(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(HelperEnvVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("realtools: %s=%s: %v", HelperEnvVar, p, err)
		}
		return p
	}
	root := RepoRoot(t)
	bin := filepath.Join(root, "bin", "aws_signing_helper")
	if isExecutable(bin) {
		return bin
	}

	buildMu.Lock()
	defer buildMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatalf("realtools: %v", err)
	}
	unlock, err := lockFile(bin + ".lock")
	if err != nil {
		t.Fatalf("realtools: lock %s: %v", bin+".lock", err)
	}
	defer unlock()
	if isExecutable(bin) { // another process built it while we waited
		return bin
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, helperModule)
	cmd.Dir = filepath.Join(root, "tools", "signinghelper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Logf("realtools: building aws_signing_helper into %s", bin)
	if err := cmd.Run(); err != nil {
		_ = os.Remove(tmp)
		t.Fatalf("realtools: building aws_signing_helper (needs cgo and gcc; try `make deps`): %v\n%s", err, out.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		_ = os.Remove(tmp)
		t.Fatalf("realtools: %v", err)
	}
	return bin
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// HelperEnv returns os.Environ() without AWS_CA_BUNDLE: aws_signing_helper
// v1.5.0 exits before sending anything when it is set (helper issue #114).
// Use it as exec.Cmd.Env when running the helper.
func HelperEnv() []string {
	env := os.Environ()
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// OpenSSL returns the path of the openssl binary, failing the test (never
// skipping it) when it is not installed.
func OpenSSL(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("realtools: openssl not found in PATH (install openssl: make deps): %v", err)
	}
	return p
}
