package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `data_dir: /tmp/x
profiles:
  covalent:
    cn: ["*.covalent.example.net"]
`

func TestLoadDefaultsAndOverrides(t *testing.T) {
	t.Setenv("LANYARD_CRL_VALIDITY", "12h")
	cfg, err := Load(NewViper(), write(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":8443" || cfg.URL != "https://localhost:8443" || cfg.Store != "/tmp/x/lanyard.db" || cfg.CADir != "/tmp/x/ca" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if cfg.CRL.Validity != 12*time.Hour {
		t.Fatalf("env override: crl.validity = %s", cfg.CRL.Validity)
	}
	if cfg.Limits.MaxBody != 64<<10 {
		t.Fatalf("max_body %d", cfg.Limits.MaxBody)
	}
}

func TestLoadRefusesGarbage(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"not yaml", "{{{", "invalid configuration"},
		{"unknown key", minimal + "lisen: :1\n", "lisen"},
		{"bad duration", minimal + "crl:\n  validity: soon\n", "validity"},
		{"crl too short", minimal + "crl:\n  validity: 1m\n", "crl.validity"},
		{"bad listen", minimal + "listen: nowhere\n", "listen"},
		{"http url", minimal + "url: http://ca\n", "https"},
		{"no profiles", "data_dir: /tmp/x\n", "no profiles"},
		{"bad profile", "data_dir: /tmp/x\nprofiles:\n  p:\n    cn: []\n", "cn"},
		{"bad log level", minimal + "log_level: loud\n", "log_level"},
		{"session too short", minimal + "anchors:\n  profile:\n    duration_seconds: 60\n", "duration_seconds"},
		{"session too long", minimal + "anchors:\n  profile:\n    duration_seconds: 43201\n", "duration_seconds"},
		{"two session policies", minimal + "anchors:\n  profile:\n    source_ips: [10.0.0.0/8]\n    session_policy_file: p.json\n", "session_policy_file"},
		{"unnamed target", minimal + "anchors:\n  targets:\n    - region: eu-west-1\n", "anchors.targets[0].target"},
		{"duplicate target", minimal + "anchors:\n  targets:\n    - target: eu\n    - target: eu\n", "anchors.targets[1].target"},
		{"threshold", minimal + "anchors:\n  ca_expiry_days: 400\n", "notification"},
		{"CRL DP without a URL", minimal + "anchors:\n  crl_dp_revocation: true\n", "crl.distribution_url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, tc.body)
			_, err := Load(NewViper(), path)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q should name %q and the file", err, tc.want)
			}
		})
	}
}

func TestDevYAMLLoads(t *testing.T) {
	cfg, err := Load(NewViper(), write(t, DevYAML))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := cfg.CompileProfiles()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ps.Get("")
	if err != nil || !p.AllowsCN("host1.covalent.example.net") || p.Config.DefaultTTL != 24*time.Hour {
		t.Fatalf("dev profile: %v %+v", err, p)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(minimal)
	f.Add(DevYAML)
	f.Add("")
	f.Add("profiles: 3")
	f.Add("data_dir: [1,2]\nprofiles:\n  a:\n    cn: [\"re:(\"]\n")
	f.Fuzz(func(t *testing.T, body string) {
		cfg, err := Load(NewViper(), write(t, body))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if cfg.DataDir == "" || cfg.Store == "" || !strings.HasPrefix(cfg.URL, "https://") {
			t.Fatalf("accepted an incomplete config: %+v", cfg)
		}
	})
}
