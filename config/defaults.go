package config

import (
	"reflect"

	"github.com/spf13/viper"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/tidy"
)

// Defaults of the settings that no other package owns.
const (
	// DefaultListen is the API's address: 8443, the usual unprivileged
	// HTTPS port, on every interface.
	DefaultListen = ":8443"
	// DefaultDataDir is where a packaged server keeps its store and CA
	// (the FHS place for a service's state).
	DefaultDataDir = "/var/lib/lanyard"
	// DefaultLogLevel logs every issuance and revocation, not requests.
	DefaultLogLevel = "info"
	// DefaultRegion is the AWS region of the default trust anchor.
	DefaultRegion = "us-east-1"
	// DefaultEmulatorListen is the dev emulator's loopback address, the
	// port beside DefaultListen's.
	DefaultEmulatorListen = "127.0.0.1:8444"
	// DefaultRatePerClient and DefaultBurst limit enroll and renew per
	// client: a host renews a few times a day, so 5 a second with a burst
	// of 20 never slows one and stops a runaway loop.
	DefaultRatePerClient = 5.0
	DefaultBurst         = 20
)

// DefaultServerNames are the names of the server's own TLS certificate when
// none are configured: enough to reach it on the machine itself.
func DefaultServerNames() []string { return []string{"localhost", "127.0.0.1"} }

// Defaults is the configuration before the file, the environment and the
// flags apply: the one list of lanyard.yaml's defaults, each taken from
// the constant of the package that owns the setting. SetDefaults registers
// it on viper. A setting whose owner cannot be imported here (package web:
// its tests run on internal/testca, which imports config) stays zero and
// the owner applies its default (web.session_ttl: web.DefaultSessionTTL).
func Defaults() Config {
	return Config{
		Listen:      DefaultListen,
		DataDir:     DefaultDataDir,
		ServerNames: DefaultServerNames(),
		LogLevel:    DefaultLogLevel,
		CRL:         CRL{Validity: revocation.DefaultValidity},
		Anchors: Anchors{
			AnchorsTarget:  AnchorsTarget{Region: DefaultRegion, Name: anchors.DefaultName},
			Interval:       anchors.DefaultInterval,
			EmulatorListen: DefaultEmulatorListen,
		},
		Limits: Limits{
			MaxBody:       server.DefaultMaxBody,
			RatePerClient: DefaultRatePerClient,
			Burst:         DefaultBurst,
			MaxHandshakes: server.DefaultMaxHandshakes,
			ReadTimeout:   server.DefaultReadTimeout,
			WriteTimeout:  server.DefaultWriteTimeout,
			IdleTimeout:   server.DefaultIdleTimeout,
		},
		Tidy: Tidy{
			Interval: tidy.DefaultInterval,
			Certs:    tidy.DefaultCertRetention,
			Tokens:   tidy.DefaultTokenRetention,
			Sessions: tidy.DefaultSessionRetention,
			Audit:    tidy.DefaultAuditRetention,
		},
	}
}

// SetDefaults registers every non-zero leaf of Defaults on v, under the
// keys LeafKeys lists.
func SetDefaults(v *viper.Viper) {
	d := reflect.ValueOf(Defaults())
	walkLeaves(d.Type(), "", func(key string, index []int) {
		if f := d.FieldByIndex(index); !f.IsZero() {
			v.SetDefault(key, f.Interface())
		}
	})
}
