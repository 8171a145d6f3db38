package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/smallstep/certificates/policy"
)

// Bounds on certificate lifetimes.
const (
	// MinTTL is the shortest certificate lanyard issues: below five
	// minutes, clock skew between hosts, the CA and AWS eats the lifetime.
	MinTTL = 5 * time.Minute
	// DefaultTTL is a profile's certificate lifetime when it names none:
	// a day is short enough that a lost key ages out quickly and long
	// enough that a CA outage over a night does not stop hosts.
	DefaultTTL = 24 * time.Hour
	// maxCNLength is X.520's ub-common-name.
	maxCNLength = 64
	// maxRSABits bounds the work a CSR can ask of the CA.
	maxRSABits = 8192
	// minRSABits is the smallest RSA key accepted (NIST SP 800-131A).
	minRSABits = 2048
)

// Key type names used in profiles.
const (
	KeyP256 = "P-256"
	KeyP384 = "P-384"
	KeyRSA  = "RSA"
)

// ProfileConfig is one profile as written in lanyard.yaml.
type ProfileConfig struct {
	// CN lists the allowed common names: exact names, globs whose "*" is
	// one DNS label ("*.covalent.example.net"), or anchored regular
	// expressions written "re:<expr>".
	CN []string `mapstructure:"cn" yaml:"cn" json:"cn"`
	// DNS lists the DNS names a token may put in the SAN, as
	// smallstep's name-policy permitted domains ("*.example.net" or
	// "host.example.net"). Empty: no SANs.
	DNS []string `mapstructure:"dns" yaml:"dns" json:"dns,omitempty"`
	// DenyDNS lists DNS names refused even when DNS permits them.
	DenyDNS []string `mapstructure:"deny_dns" yaml:"deny_dns" json:"deny_dns,omitempty"`
	// DefaultTTL and MaxTTL bound certificate lifetimes (default 24h).
	DefaultTTL time.Duration `mapstructure:"default_ttl" yaml:"default_ttl" json:"default_ttl,omitempty"`
	MaxTTL     time.Duration `mapstructure:"max_ttl" yaml:"max_ttl" json:"max_ttl,omitempty"`
	// KeyTypes allowed in CSRs: P-256, P-384, RSA (≥2048 bits). Default all.
	KeyTypes []string `mapstructure:"key_types" yaml:"key_types" json:"key_types,omitempty"`
	// AllowKeyReuse lets a renewal keep the current key.
	AllowKeyReuse bool `mapstructure:"allow_key_reuse" yaml:"allow_key_reuse" json:"allow_key_reuse,omitempty"`
	// Strict lints every certificate with zlint before signing it.
	Strict bool `mapstructure:"strict" yaml:"strict" json:"strict,omitempty"`
}

// Profile is a compiled, validated profile. It is immutable and safe for
// concurrent use.
type Profile struct {
	Name   string
	Config ProfileConfig
	cn     []cnRule
	san    *policy.NamePolicyEngine
	keys   map[string]bool
}

type cnRule struct {
	exact  string
	suffix string // glob: "*" + suffix
	re     *regexp.Regexp
}

var labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (r cnRule) match(cn string) bool {
	switch {
	case r.re != nil:
		return r.re.MatchString(cn)
	case r.suffix != "":
		if !strings.HasSuffix(cn, r.suffix) {
			return false
		}
		return labelRe.MatchString(strings.TrimSuffix(cn, r.suffix))
	default:
		return cn == r.exact
	}
}

// ErrBadProfile means a profile in the configuration cannot be used.
var ErrBadProfile = errors.New("invalid profile")

// CompileProfile validates cfg and returns the profile it describes.
func CompileProfile(name string, cfg ProfileConfig) (*Profile, error) {
	fail := func(format string, args ...any) (*Profile, error) {
		return nil, fmt.Errorf("profile %q: %w: %s", name, ErrBadProfile, fmt.Sprintf(format, args...))
	}
	if name == "" || strings.ContainsAny(name, "\x00/ ") {
		return fail("name must be non-empty without spaces, slashes or NUL")
	}
	if len(cfg.CN) == 0 {
		return fail("cn: at least one allowed common name is required")
	}
	p := &Profile{Name: name, Config: cfg, keys: map[string]bool{}}
	for _, rule := range cfg.CN {
		switch {
		case strings.HasPrefix(rule, "re:"):
			re, err := regexp.Compile(`^(?:` + strings.TrimPrefix(rule, "re:") + `)$`)
			if err != nil {
				return fail("cn rule %q: %v", rule, err)
			}
			p.cn = append(p.cn, cnRule{re: re})
		case strings.HasPrefix(rule, "*."):
			if strings.Contains(rule[1:], "*") {
				return fail("cn rule %q: only a leading \"*.\" label is allowed", rule)
			}
			p.cn = append(p.cn, cnRule{suffix: rule[1:]})
		case strings.Contains(rule, "*"):
			return fail("cn rule %q: \"*\" may only be the whole first label", rule)
		default:
			if err := ValidateCN(rule); err != nil {
				return fail("cn rule %q: %v", rule, err)
			}
			p.cn = append(p.cn, cnRule{exact: rule})
		}
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = max(cfg.DefaultTTL, DefaultTTL)
	}
	if cfg.DefaultTTL < MinTTL {
		return fail("default_ttl %s is below the minimum %s", cfg.DefaultTTL, MinTTL)
	}
	if cfg.MaxTTL < cfg.DefaultTTL {
		return fail("max_ttl %s is below default_ttl %s", cfg.MaxTTL, cfg.DefaultTTL)
	}
	if len(cfg.KeyTypes) == 0 {
		cfg.KeyTypes = []string{KeyP256, KeyP384, KeyRSA}
	}
	for _, k := range cfg.KeyTypes {
		switch k {
		case KeyP256, KeyP384, KeyRSA:
			p.keys[k] = true
		default:
			return fail("key type %q: want P-256, P-384 or RSA", k)
		}
	}
	opts := []policy.NamePolicyOption{}
	if len(cfg.DNS) > 0 {
		opts = append(opts, policy.WithPermittedDNSDomains(cfg.DNS...))
	}
	if len(cfg.DenyDNS) > 0 {
		opts = append(opts, policy.WithExcludedDNSDomains(cfg.DenyDNS...))
	}
	if len(opts) > 0 {
		eng, err := policy.New(opts...)
		if err != nil {
			return fail("dns policy: %v", err)
		}
		p.san = eng
	}
	p.Config = cfg
	return p, nil
}

// AllowsCN reports whether the profile lets cn be issued.
func (p *Profile) AllowsCN(cn string) bool {
	if ValidateCN(cn) != nil {
		return false
	}
	for _, r := range p.cn {
		if r.match(cn) {
			return true
		}
	}
	return false
}

// CheckDNSNames returns an error naming the first DNS name the profile's
// SAN policy refuses. A profile without DNS rules refuses every SAN.
func (p *Profile) CheckDNSNames(names []string) error {
	if len(names) == 0 {
		return nil
	}
	if p.san == nil {
		return fmt.Errorf("%w: profile %q allows no SANs, got %q", ErrNameNotAllowed, p.Name, names[0])
	}
	for _, n := range names {
		if err := p.san.IsDNSAllowed(n); err != nil {
			return fmt.Errorf("%w: SAN %q: %v", ErrNameNotAllowed, n, err)
		}
	}
	return nil
}

// KeyType names the type of pub ("P-256", "P-384", "RSA") and checks its
// size; it fails with ErrKeyType for anything else.
func KeyType(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return KeyP256, nil
		case elliptic.P384():
			return KeyP384, nil
		}
		return "", fmt.Errorf("%w: curve %s (want P-256 or P-384)", ErrKeyType, k.Curve.Params().Name)
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits || bits > maxRSABits {
			return "", fmt.Errorf("%w: RSA %d bits (want %d to %d)", ErrKeyType, bits, minRSABits, maxRSABits)
		}
		return KeyRSA, nil
	}
	return "", fmt.Errorf("%w: %T (want ECDSA P-256/P-384 or RSA)", ErrKeyType, pub)
}

// AllowsKey checks that pub is of a type the profile allows.
func (p *Profile) AllowsKey(pub crypto.PublicKey) (string, error) {
	kt, err := KeyType(pub)
	if err != nil {
		return "", err
	}
	if !p.keys[kt] {
		return "", fmt.Errorf("%w: profile %q does not allow %s keys", ErrKeyType, p.Name, kt)
	}
	return kt, nil
}

// TTL returns the lifetime for a request asking for ask (0: default).
func (p *Profile) TTL(ask time.Duration) time.Duration {
	if ask <= 0 {
		return p.Config.DefaultTTL
	}
	return max(min(ask, p.Config.MaxTTL), MinTTL)
}

// ValidateCN refuses common names that are empty, too long, or hold
// anything but printable ASCII letters, digits and " _.:/=+-@" (the
// characters AWS keeps in principal tags). Control characters, NUL and
// look-alike Unicode never reach a certificate.
func ValidateCN(cn string) error {
	if cn == "" {
		return fmt.Errorf("%w: empty common name", ErrNameNotAllowed)
	}
	if len(cn) > maxCNLength {
		return fmt.Errorf("%w: common name longer than %d bytes", ErrNameNotAllowed, maxCNLength)
	}
	for _, r := range cn {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" _.:/=+-@", r)
		if !ok {
			return fmt.Errorf("%w: common name holds %q", ErrNameNotAllowed, r)
		}
	}
	return nil
}

// Profiles is a set of compiled profiles and the default one's name.
type Profiles struct {
	byName  map[string]*Profile
	Default string
}

// CompileProfiles compiles every profile; any invalid profile fails the
// whole set (a CA never runs with half its configuration).
func CompileProfiles(cfgs map[string]ProfileConfig, def string) (*Profiles, error) {
	ps := &Profiles{byName: map[string]*Profile{}, Default: def}
	var errs []error
	for name, cfg := range cfgs {
		p, err := CompileProfile(name, cfg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps.byName[name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(ps.byName) == 0 {
		return nil, fmt.Errorf("%w: no profiles configured", ErrBadProfile)
	}
	if def == "" && len(ps.byName) == 1 {
		for n := range ps.byName {
			ps.Default = n
		}
	}
	if _, ok := ps.byName[ps.Default]; ps.Default != "" && !ok {
		return nil, fmt.Errorf("%w: default profile %q is not defined", ErrBadProfile, ps.Default)
	}
	return ps, nil
}

// Get returns the named profile ("" means the default).
func (ps *Profiles) Get(name string) (*Profile, error) {
	if name == "" {
		name = ps.Default
	}
	p, ok := ps.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProfile, name)
	}
	return p, nil
}

// Names lists the profile names, sorted.
func (ps *Profiles) Names() []string {
	out := make([]string, 0, len(ps.byName))
	for n := range ps.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// template returns the certificate template every certificate of this
// profile is cut from: client authentication only, digital signature
// only, not a CA.
func (p *Profile) template(cn string, dns []string, serialBytes []byte, notBefore, notAfter time.Time) *x509.Certificate {
	t := &x509.Certificate{
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dns,
	}
	t.Subject.CommonName = cn
	t.SerialNumber = serialInt(serialBytes)
	return t
}
