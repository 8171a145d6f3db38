package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // "" means valid
		check   func(t *testing.T, c *Config)
	}{
		{name: "full", yaml: `
dirs:
  - path: /etc/lanyard/host
    keep: 7
    reenroll_token_file: /etc/lanyard/token
    hooks:
      - command: [systemctl, reload, nginx]
        timeout: 45s
      - signal: HUP
        pid_file: /run/nginx.pid
    supervise_helper:
      port: 9912
      args: [--region, eu-west-1]
metrics_listen: 127.0.0.1:9465
suspend_check: 30s
backoff_max: 5m
`, check: func(t *testing.T, c *Config) {
			d := c.Dirs[0]
			if d.Keep != 7 || d.Hooks[0].Timeout != 45*time.Second || d.Hooks[1].Signal != "HUP" ||
				d.SuperviseHelper.Port != 9912 || c.SuspendCheck != 30*time.Second || c.BackoffMax != 5*time.Minute {
				t.Errorf("parsed %+v", c)
			}
		}},
		{name: "minimal", yaml: "dirs: [{path: /x}]\n"},
		{name: "ipv6 loopback metrics", yaml: "dirs: [{path: /x}]\nmetrics_listen: '[::1]:9465'\n"},
		{name: "no dirs", yaml: "metrics_listen: 127.0.0.1:1\n", wantErr: "at least one folder"},
		{name: "unknown key", yaml: "dirs: [{path: /x, hook: []}]\n", wantErr: "field hook not found"},
		{name: "metrics not loopback", yaml: "dirs: [{path: /x}]\nmetrics_listen: 0.0.0.0:9465\n", wantErr: "not a loopback"},
		{name: "metrics all interfaces", yaml: "dirs: [{path: /x}]\nmetrics_listen: ':9465'\n", wantErr: "not a loopback"},
		{name: "signal without pid file", yaml: "dirs: [{path: /x, hooks: [{signal: HUP}]}]\n", wantErr: "pid_file"},
		{name: "unknown signal", yaml: "dirs: [{path: /x, hooks: [{signal: KILL, pid_file: /p}]}]\n", wantErr: "want HUP"},
		{name: "empty hook", yaml: "dirs: [{path: /x, hooks: [{timeout: 1s}]}]\n", wantErr: "command or a signal"},
		{name: "duplicate dir", yaml: "dirs: [{path: /x}, {path: /x/}]\n", wantErr: "listed twice"},
		{name: "two helpers on one port", yaml: "dirs: [{path: /x, supervise_helper: {}}, {path: /y, supervise_helper: {port: 9911}}]\n", wantErr: "already used"},
		{name: "bad key type", yaml: "dirs: [{path: /x, key_type: ed25519}]\n", wantErr: "key_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrConfig mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLoadConfigRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte("dirs: [{path: host, reenroll_token_file: tok}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dirs[0].Path != filepath.Join(dir, "host") || c.Dirs[0].ReenrollTokenFile != filepath.Join(dir, "tok") {
		t.Errorf("paths not relative to the config file: %+v", c.Dirs[0])
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestExampleConfigParses(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/agent.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConfig(raw); err != nil {
		t.Fatalf("deploy/agent.example.yaml: %v", err)
	}
}
