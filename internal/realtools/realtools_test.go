package realtools

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !declaresModule(data, ModulePath) {
		t.Fatalf("%s/go.mod does not declare %s", root, ModulePath)
	}
}

func TestDeclaresModule(t *testing.T) {
	tests := []struct {
		gomod string
		want  bool
	}{
		{"module github.com/lanyard/lanyard\n\ngo 1.26\n", true},
		{"// x\nmodule \"github.com/lanyard/lanyard\"\n", true},
		{"module github.com/lanyard/lanyard/tools/signinghelper\n", false},
		{"go 1.26\n", false},
	}
	for _, tt := range tests {
		if got := declaresModule([]byte(tt.gomod), ModulePath); got != tt.want {
			t.Errorf("declaresModule(%q) = %v, want %v", tt.gomod, got, tt.want)
		}
	}
}

func TestHelperEnvDropsCABundle(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "/nonexistent/ca.pem")
	for _, kv := range HelperEnv() {
		if strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			t.Fatalf("HelperEnv kept %s", kv)
		}
	}
}

func TestSigningHelperRuns(t *testing.T) {
	p := SigningHelper(t)
	cmd := exec.Command(p, "--help")
	cmd.Env = HelperEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", p, err, out)
	}
	if !strings.Contains(string(out), "credential-process") {
		t.Fatalf("unexpected help output:\n%s", out)
	}
}

func TestOpenSSL(t *testing.T) {
	p := OpenSSL(t)
	out, err := exec.Command(p, "version").CombinedOutput()
	if err != nil || !strings.Contains(strings.ToLower(string(out)), "ssl") {
		t.Fatalf("openssl version: %v\n%s", err, out)
	}
}
