package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrConfig means the agent configuration is invalid.
var ErrConfig = errors.New("invalid agent configuration")

// Config is the agent's configuration file (YAML), e.g.
//
//	dirs:
//	  - path: /etc/lanyard/host
//	    keep: 5
//	    reenroll_token_file: /etc/lanyard/reenroll.token
//	    hooks:
//	      - command: [systemctl, reload, nginx]
//	        timeout: 30s
//	      - signal: HUP
//	        pid_file: /run/nginx.pid
//	    supervise_helper:
//	      port: 9911
//	metrics_listen: 127.0.0.1:9465
type Config struct {
	// Dirs are the host folders to keep fresh (at least one).
	Dirs []DirConfig `yaml:"dirs"`
	// MetricsListen is an optional loopback address (127.0.0.1:PORT,
	// [::1]:PORT or localhost:PORT) serving Prometheus metrics at /metrics.
	MetricsListen string `yaml:"metrics_listen"`
	// SuspendCheck is how often a sleeping agent compares the wall clock
	// with its next renewal moment (default DefaultSuspendCheck).
	SuspendCheck time.Duration `yaml:"suspend_check"`
	// BackoffInitial and BackoffMax shape retries (defaults 1s and 10m).
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	// LogLevel is debug, info, warn or error (default info); the command
	// line uses it.
	LogLevel string `yaml:"log_level"`
}

// DirConfig is one host folder the agent keeps fresh.
type DirConfig struct {
	// Path of the folder, as `lanyard enroll --out` wrote it.
	Path string `yaml:"path"`
	// Keep is how many versions to keep (default hostdir.DefaultKeep).
	Keep int `yaml:"keep"`
	// KeyType of new keys; "" keeps the current type.
	KeyType string `yaml:"key_type"`
	// AllowKeyTypeChange allows KeyType to differ from the current type.
	AllowKeyTypeChange bool `yaml:"allow_key_type_change"`
	// ReenrollTokenFile holds a single-use enrollment token used when the
	// certificate has expired (it cannot renew itself then).
	ReenrollTokenFile string `yaml:"reenroll_token_file"`
	// Hooks run after every renewal, in order.
	Hooks []HookConfig `yaml:"hooks"`
	// SuperviseHelper, when set, runs `aws_signing_helper serve` on the
	// current version's files and restarts it on the new version after
	// every renewal.
	SuperviseHelper *HelperConfig `yaml:"supervise_helper"`
}

// HookConfig is one post-renewal hook: a command, a signal to the process
// named in a pid file, or both (the command first).
type HookConfig struct {
	// Command is the argv of a command to run (no shell). It gets
	// LANYARD_DIR, LANYARD_VERSION, LANYARD_SERIAL and LANYARD_NOT_AFTER in
	// its environment.
	Command []string `yaml:"command"`
	// Timeout bounds the command (default DefaultHookTimeout).
	Timeout time.Duration `yaml:"timeout"`
	// Signal is sent to the pid in PIDFile: HUP, USR1, USR2, TERM, INT.
	Signal string `yaml:"signal"`
	// PIDFile holds the pid to signal.
	PIDFile string `yaml:"pid_file"`
}

// DefaultHookTimeout bounds a hook command without a timeout.
const DefaultHookTimeout = 30 * time.Second

// HelperConfig is a supervised `aws_signing_helper serve`.
type HelperConfig struct {
	// Path of aws_signing_helper; default $LANYARD_SIGNING_HELPER, else
	// aws_signing_helper on PATH.
	Path string `yaml:"path"`
	// Port the helper listens on (127.0.0.1; default 9911).
	Port int `yaml:"port"`
	// Args are the helper's Roles Anywhere flags (--trust-anchor-arn,
	// --profile-arn, --role-arn, --region, --endpoint, ...); default: the
	// ones recorded in DIR/enrollment.json.
	Args []string `yaml:"args"`
}

// DefaultHelperPort is aws_signing_helper serve's default port.
const DefaultHelperPort = 9911

// LoadConfig reads and validates an agent configuration file. Unknown keys
// are errors (a typo must not silently disable a hook).
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("agent config %s: %w", path, err)
	}
	// Relative paths are relative to the configuration file.
	base := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	for i := range cfg.Dirs {
		d := &cfg.Dirs[i]
		d.Path = abs(d.Path)
		d.ReenrollTokenFile = abs(d.ReenrollTokenFile)
		for j := range d.Hooks {
			d.Hooks[j].PIDFile = abs(d.Hooks[j].PIDFile)
		}
	}
	return cfg, nil
}

// ParseConfig parses and validates a YAML agent configuration.
func ParseConfig(raw []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Dirs) == 0 {
		bad("dirs: at least one folder is needed")
	}
	seen := map[string]bool{}
	ports := map[int]string{}
	for i, d := range c.Dirs {
		where := fmt.Sprintf("dirs[%d]", i)
		if d.Path == "" {
			bad("%s: path is required", where)
		} else if seen[filepath.Clean(d.Path)] {
			bad("%s: %s is listed twice", where, d.Path)
		}
		seen[filepath.Clean(d.Path)] = true
		if d.Keep < 0 {
			bad("%s: keep must not be negative", where)
		}
		if d.KeyType != "" {
			if _, ok := keyTypes[normaliseKeyType(d.KeyType)]; !ok {
				bad("%s: key_type %q: want P-256, P-384, RSA-2048, RSA-3072 or RSA-4096", where, d.KeyType)
			}
		}
		for j, h := range d.Hooks {
			hw := fmt.Sprintf("%s.hooks[%d]", where, j)
			if len(h.Command) == 0 && h.Signal == "" {
				bad("%s: needs a command or a signal", hw)
			}
			if h.Signal != "" {
				if _, err := ParseSignal(h.Signal); err != nil {
					bad("%s: %v", hw, err)
				}
				if h.PIDFile == "" {
					bad("%s: signal needs pid_file", hw)
				}
			}
			if h.Timeout < 0 {
				bad("%s: timeout must not be negative", hw)
			}
		}
		if h := d.SuperviseHelper; h != nil {
			port := h.Port
			if port == 0 {
				port = DefaultHelperPort
			}
			if port < 0 || port > 65535 {
				bad("%s.supervise_helper: port %d out of range", where, h.Port)
			} else if other, dup := ports[port]; dup {
				bad("%s.supervise_helper: port %d is already used by %s", where, port, other)
			}
			ports[port] = where
		}
	}
	if c.MetricsListen != "" {
		if err := checkLoopback(c.MetricsListen); err != nil {
			bad("metrics_listen: %v", err)
		}
	}
	if c.SuspendCheck < 0 || c.BackoffInitial < 0 || c.BackoffMax < 0 {
		bad("suspend_check, backoff_initial and backoff_max must not be negative")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

var keyTypes = map[string]struct{}{"P-256": {}, "P-384": {}, "RSA-2048": {}, "RSA-3072": {}, "RSA-4096": {}}

// checkLoopback accepts only loopback listen addresses: metrics say when
// this host renews, which is nobody else's business.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)", addr)
	}
	return nil
}

// ParseSignal parses a signal name with or without the SIG prefix.
func ParseSignal(name string) (syscall.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG") {
	case "HUP":
		return syscall.SIGHUP, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	case "TERM":
		return syscall.SIGTERM, nil
	case "INT":
		return syscall.SIGINT, nil
	}
	return 0, fmt.Errorf("signal %q: want HUP, USR1, USR2, TERM or INT", name)
}
