// Package config owns lanyard.yaml: the schema of the server's
// configuration, its defaults, and its validation. Every key can also be
// set as LANYARD_<KEY> (nested keys joined with "_", e.g.
// LANYARD_CRL_VALIDITY; the list is derived from the Config struct, see
// LeafKeys; lists as a,b,c); maps (profiles, anchors.profile.
// attribute_mappings) and anchors.targets are set through the file only.
// The defaults are one list, Defaults, each taken from the constant of the
// package that owns the setting.
// Flags override the environment, which overrides the file, which
// overrides the defaults.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/lanyard/lanyard/issuance"
)

// FileName is the configuration file's conventional name.
const FileName = "lanyard.yaml"

// DevDir is where `lanyard serve --dev` keeps its CA, store and config.
const DevDir = ".lanyard"

// Config is lanyard.yaml.
type Config struct {
	// Listen is the TLS address of the API, web page and downloads.
	Listen string `mapstructure:"listen" yaml:"listen"`
	// URL is how hosts reach this CA (printed in enroll commands); default
	// https://<listen>.
	URL string `mapstructure:"url" yaml:"url"`
	// DataDir holds the store and, unless CADir says otherwise, the CA.
	DataDir string `mapstructure:"data_dir" yaml:"data_dir"`
	// CADir holds root.crt, intermediate.crt/key and the admin credential.
	CADir string `mapstructure:"ca_dir" yaml:"ca_dir"`
	// Store is the bbolt file.
	Store string `mapstructure:"store" yaml:"store"`
	// PassphraseFile holds the passphrase of the encrypted intermediate key.
	PassphraseFile string `mapstructure:"passphrase_file" yaml:"passphrase_file"`
	// KMS is a go.step.sm/crypto/kms URI for the intermediate key.
	KMS string `mapstructure:"kms" yaml:"kms"`
	// ServerNames are the DNS names and IPs of the server's own TLS certificate.
	ServerNames []string `mapstructure:"server_names" yaml:"server_names"`
	// DefaultProfile is used when a token names none.
	DefaultProfile string `mapstructure:"default_profile" yaml:"default_profile"`
	// Profiles decide what may be issued.
	Profiles map[string]issuance.ProfileConfig `mapstructure:"profiles" yaml:"profiles"`
	CRL      CRL                               `mapstructure:"crl" yaml:"crl"`
	Anchors  Anchors                           `mapstructure:"anchors" yaml:"anchors"`
	Limits   Limits                            `mapstructure:"limits" yaml:"limits"`
	Web      Web                               `mapstructure:"web" yaml:"web"`
	Tidy     Tidy                              `mapstructure:"tidy" yaml:"tidy"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level" yaml:"log_level"`
	// Dev is set by `serve --dev`.
	Dev bool `mapstructure:"dev" yaml:"dev"`
	// ACME tunes the ACME server (/acme/<profile>/directory).
	ACME ACME `mapstructure:"acme" yaml:"acme"`
}

// ACME holds the ACME server's settings for development and tests only:
// the composition root refuses them outside dev mode (and tests), because
// pointing validation at a fixed address would let anyone who controls
// that address pass http-01 for every name.
type ACME struct {
	// HTTP01Port is the port http-01 validation connects to (default 80).
	HTTP01Port int `mapstructure:"http01_port" yaml:"http01_port"`
	// TLSALPN01Port is the port tls-alpn-01 validation connects to
	// (default 443).
	TLSALPN01Port int `mapstructure:"tls_alpn01_port" yaml:"tls_alpn01_port"`
	// ResolveTo is the address every identifier resolves to for
	// validation (e.g. 127.0.0.1), like pebble's -dnsserver.
	ResolveTo string `mapstructure:"resolve_to" yaml:"resolve_to"`
}

// CRL configures revocation lists.
type CRL struct {
	// Validity is nextUpdate - thisUpdate; a new CRL is made before half
	// of it has passed.
	Validity time.Duration `mapstructure:"validity" yaml:"validity"`
	// DistributionURL, when set, is put in issued certificates as the CRL
	// distribution point: the full URL of the DER CRL, e.g. a plain-HTTP
	// mirror of https://<ca>/crl (RFC 5280 recommends http:// for CRLs).
	DistributionURL string `mapstructure:"distribution_url" yaml:"distribution_url"`
}

// Anchors configures the IAM Roles Anywhere trust-anchor sync. Its own
// keys describe the default target (one trust anchor and its profile);
// Targets adds more (other accounts, regions), each synced on its own.
type Anchors struct {
	Enabled       bool `mapstructure:"enabled" yaml:"enabled"`
	AnchorsTarget `mapstructure:",squash" yaml:",inline"`
	// Interval between drift checks.
	Interval time.Duration `mapstructure:"interval" yaml:"interval"`
	// Emulator runs the local Roles Anywhere emulator in-process (dev).
	Emulator bool `mapstructure:"emulator" yaml:"emulator"`
	// EmulatorListen is the emulator's plain-HTTP loopback address.
	EmulatorListen string `mapstructure:"emulator_listen" yaml:"emulator_listen"`
	// Targets are further trust anchors, each with its own name (the
	// status key and log label), region, endpoint, ARNs and settings.
	Targets []AnchorsTarget `mapstructure:"targets" yaml:"targets"`
}

// AnchorsTarget is one trust anchor (and its profile) to keep in sync.
type AnchorsTarget struct {
	// Target names it among Anchors.Targets ("" for the default one).
	Target string `mapstructure:"target" yaml:"target,omitempty"`
	Region string `mapstructure:"region" yaml:"region"`
	// Endpoint overrides the Roles Anywhere endpoint (an emulator).
	Endpoint       string `mapstructure:"endpoint" yaml:"endpoint"`
	TrustAnchorARN string `mapstructure:"trust_anchor_arn" yaml:"trust_anchor_arn"`
	ProfileARN     string `mapstructure:"profile_arn" yaml:"profile_arn"`
	RoleARN        string `mapstructure:"role_arn" yaml:"role_arn"`
	// Name of the anchor to create when TrustAnchorARN is empty and Create is set.
	Name   string `mapstructure:"name" yaml:"name"`
	Create bool   `mapstructure:"create" yaml:"create"`
	// Manage makes lanyard own the profile's and the anchor's settings
	// below: sync reports any difference and repairs it. Off, they are
	// left as they are (a profile someone else configures).
	Manage  bool          `mapstructure:"manage" yaml:"manage"`
	Profile AnchorProfile `mapstructure:"profile" yaml:"profile"`
	// CAExpiryDays: the anchor warns this many days before a CA
	// certificate expires (0: 45, AWS's default; -1: off).
	CAExpiryDays int `mapstructure:"ca_expiry_days" yaml:"ca_expiry_days"`
	// EndEntityExpiryDays: end-entity expiry notifications (0: off; see
	// anchors.NotificationSettings for why that is the default).
	EndEntityExpiryDays int `mapstructure:"end_entity_expiry_days" yaml:"end_entity_expiry_days"`
	// CRLDPRevocation sets the anchor's crlDpRevocationEnabled (AWS checks
	// the certificates' CRL distribution points; see docs in anchors).
	CRLDPRevocation bool `mapstructure:"crl_dp_revocation" yaml:"crl_dp_revocation"`
}

// AnchorProfile are the Roles Anywhere profile's settings (with Manage).
type AnchorProfile struct {
	// RoleARNs the profile allows (default: [role_arn]).
	RoleARNs          []string `mapstructure:"role_arns" yaml:"role_arns"`
	ManagedPolicyARNs []string `mapstructure:"managed_policy_arns" yaml:"managed_policy_arns"`
	// SourceIPs generate the session policy that denies calls from other
	// addresses (as `lanyard anchors policy --source-ip`).
	SourceIPs []string `mapstructure:"source_ips" yaml:"source_ips"`
	// SessionPolicyFile is a session policy JSON file (instead of
	// SourceIPs).
	SessionPolicyFile string `mapstructure:"session_policy_file" yaml:"session_policy_file"`
	// DurationSeconds of a session, 900-43200 (0: 3600).
	DurationSeconds       int  `mapstructure:"duration_seconds" yaml:"duration_seconds"`
	AcceptRoleSessionName bool `mapstructure:"accept_role_session_name" yaml:"accept_role_session_name"`
	// AttributeMappings: certificate field (x509Subject, x509Issuer,
	// x509SAN) to specifiers. Empty: the subject and issuer CN, what
	// lanyard's trust policies test.
	AttributeMappings map[string][]string `mapstructure:"attribute_mappings" yaml:"attribute_mappings"`
}

// Limits protect the server from misbehaving clients.
type Limits struct {
	// MaxBody is the largest request body accepted, in bytes.
	MaxBody int64 `mapstructure:"max_body" yaml:"max_body"`
	// RatePerClient is the sustained enroll/renew requests per second one
	// client (IP for enroll, certificate for renew) may make; Burst above it.
	RatePerClient float64 `mapstructure:"rate_per_client" yaml:"rate_per_client"`
	Burst         int     `mapstructure:"burst" yaml:"burst"`
	// MaxHandshakes caps concurrent TLS handshakes.
	MaxHandshakes int           `mapstructure:"max_handshakes" yaml:"max_handshakes"`
	ReadTimeout   time.Duration `mapstructure:"read_timeout" yaml:"read_timeout"`
	WriteTimeout  time.Duration `mapstructure:"write_timeout" yaml:"write_timeout"`
	IdleTimeout   time.Duration `mapstructure:"idle_timeout" yaml:"idle_timeout"`
}

// Web configures the admin page.
type Web struct {
	// SessionTTL is how long an admin session lasts (0: web's
	// DefaultSessionTTL, 8h).
	SessionTTL time.Duration `mapstructure:"session_ttl" yaml:"session_ttl"`
}

// Tidy says how long records are kept once they stop mattering, and how
// often the leader prunes them (`lanyard tidy` runs it by hand). A
// retention of 0 keeps that kind of record forever.
type Tidy struct {
	// Interval between automatic tidies on the leader; 0 turns them off.
	Interval time.Duration `mapstructure:"interval" yaml:"interval"`
	// Certs is how long a certificate record is kept after it expired
	// (revoked or not: it is off the CRL once expired).
	Certs time.Duration `mapstructure:"certs" yaml:"certs"`
	// Tokens is how long an enrollment token is kept after it was used or
	// expired.
	Tokens time.Duration `mapstructure:"tokens" yaml:"tokens"`
	// Sessions is how long a web session is kept after it expired.
	Sessions time.Duration `mapstructure:"sessions" yaml:"sessions"`
	// Audit is how long an audit event is kept.
	Audit time.Duration `mapstructure:"audit" yaml:"audit"`
}

// NewViper returns a viper with lanyard's defaults and environment binding.
func NewViper() *viper.Viper {
	v := viper.New()
	SetDefaults(v)
	v.SetEnvPrefix("LANYARD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	// Every leaf key is bound explicitly (AutomaticEnv alone only sees
	// keys viper already knows: those with a default or in the file).
	for _, k := range LeafKeys() {
		_ = v.BindEnv(k, EnvKey(k))
	}
	return v
}

// ErrInvalid marks a configuration that cannot be used.
var ErrInvalid = errors.New("invalid configuration")

// Load reads path (if non-empty) into v and decodes and validates it.
// Unknown keys are refused: a typo must not silently become a default.
func Load(v *viper.Viper, path string) (*Config, error) {
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config %s: %w: %v", path, ErrInvalid, err)
		}
	}
	return Decode(v, path)
}

// Decode turns v's settings into a validated Config.
func Decode(v *viper.Viper, path string) (*Config, error) {
	var c Config
	err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	where := path
	if where == "" {
		where = "settings"
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w: %v", where, ErrInvalid, err)
	}
	if err := c.finish(); err != nil {
		return nil, fmt.Errorf("config %s: %w: %v", where, ErrInvalid, err)
	}
	return &c, nil
}

func (c *Config) finish() error {
	if c.DataDir == "" {
		return errors.New("data_dir is empty")
	}
	if c.CADir == "" {
		c.CADir = filepath.Join(c.DataDir, "ca")
	}
	if c.Store == "" {
		c.Store = filepath.Join(c.DataDir, "lanyard.db")
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen %q: %v", c.Listen, err)
	}
	if c.URL == "" {
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		c.URL = "https://" + net.JoinHostPort(host, port)
	}
	if !strings.HasPrefix(c.URL, "https://") {
		return fmt.Errorf("url %q must start with https://", c.URL)
	}
	if c.CRL.Validity < time.Hour {
		return fmt.Errorf("crl.validity %s is below one hour", c.CRL.Validity)
	}
	if u := c.CRL.DistributionURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("crl.distribution_url %q must be an http:// URL (RFC 5280 recommends plain HTTP for CRLs)", u)
	}
	if c.Limits.MaxBody < 1024 {
		return fmt.Errorf("limits.max_body %d is below 1024 bytes", c.Limits.MaxBody)
	}
	if _, err := c.CompileProfiles(); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{"tidy.interval": c.Tidy.Interval, "tidy.certs": c.Tidy.Certs,
		"tidy.tokens": c.Tidy.Tokens, "tidy.sessions": c.Tidy.Sessions, "tidy.audit": c.Tidy.Audit} {
		if d < 0 {
			return fmt.Errorf("%s %s is negative (0 turns it off)", name, d)
		}
	}
	if c.Tidy.Interval > 0 && c.Tidy.Interval < time.Minute {
		return fmt.Errorf("tidy.interval %s is below one minute", c.Tidy.Interval)
	}
	if err := c.Anchors.check(); err != nil {
		return err
	}
	for _, t := range append([]AnchorsTarget{c.Anchors.AnchorsTarget}, c.Anchors.Targets...) {
		if t.CRLDPRevocation && c.CRL.DistributionURL == "" {
			return errors.New("anchors crl_dp_revocation is set but crl.distribution_url is empty: lanyard's certificates would name no distribution point for AWS to check")
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// check validates the anchors targets: unique names, durations, one
// session policy source.
func (a *Anchors) check() error {
	seen := map[string]bool{}
	all := append([]AnchorsTarget{a.AnchorsTarget}, a.Targets...)
	for i, t := range all {
		where := "anchors"
		if i > 0 {
			where = fmt.Sprintf("anchors.targets[%d]", i-1)
			if t.Target == "" || seen[t.Target] || !targetNameRE.MatchString(t.Target) {
				return fmt.Errorf("%s.target %q: each target needs its own name (letters, digits, - and _)", where, t.Target)
			}
			seen[t.Target] = true
		}
		if d := t.Profile.DurationSeconds; d != 0 && (d < 900 || d > 43200) {
			return fmt.Errorf("%s.profile.duration_seconds %d is outside 900-43200 (15 minutes to 12 hours, the Roles Anywhere limits)", where, d)
		}
		if len(t.Profile.SourceIPs) > 0 && t.Profile.SessionPolicyFile != "" {
			return fmt.Errorf("%s.profile: source_ips and session_policy_file both give the session policy; keep one", where)
		}
		if t.CAExpiryDays > 360 || t.CAExpiryDays < -1 || t.EndEntityExpiryDays < 0 || t.EndEntityExpiryDays > 360 {
			return fmt.Errorf("%s: notification thresholds are 1-360 days (ca_expiry_days -1 turns the warning off)", where)
		}
	}
	return nil
}

var targetNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CompileProfiles compiles the configured profiles.
func (c *Config) CompileProfiles() (*issuance.Profiles, error) {
	return issuance.CompileProfiles(c.Profiles, c.DefaultProfile)
}

// Passphrase reads PassphraseFile (nil if unset), trimming one trailing newline.
func (c *Config) Passphrase() ([]byte, error) {
	if c.PassphraseFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.PassphraseFile)
	if err != nil {
		return nil, fmt.Errorf("passphrase_file: %w", err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

// DevYAML is the configuration `lanyard serve --dev` writes on first run:
// one profile, covalent, for *.covalent.example.net, 24h certificates.
const DevYAML = `# lanyard development configuration, written by "lanyard serve --dev".
listen: 127.0.0.1:8443
data_dir: .lanyard
dev: true
server_names: [localhost, 127.0.0.1]
default_profile: covalent
profiles:
  covalent:
    cn: ["*.covalent.example.net"]
    dns: ["*.covalent.example.net"]
    default_ttl: 24h
    max_ttl: 24h
    key_types: [P-256, P-384, RSA]
crl:
  validity: 24h
anchors:
  enabled: true
  emulator: true
  create: true
  manage: true      # lanyard owns the profile's settings (always, with the emulator)
  region: us-east-1
  interval: 1m
`
