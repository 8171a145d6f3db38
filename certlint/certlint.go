// Package certlint runs zlint's RFC lints (RFC 5280, 5480, 3279, 8813,
// 5891) over certificates and CRLs. Issuance uses it to refuse a profile
// whose template does not lint clean, and, in strict mode, before every
// signature; tests use it on everything they issue.
//
// Only the RFC sources are registered: the full registry costs about
// 4 ms a certificate (almost all in one community lint) against about
// 80 µs for these, and the CA/Browser Forum lints are about public TLS
// server certificates, which lanyard does not issue.
package certlint

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

var (
	registryOnce sync.Once
	registry     lint.Registry
	registryErr  error
)

// ignored lints, each with the reason it does not apply to lanyard.
var ignored = []string{
	// Roles Anywhere client certificates carry the host name in the CN and
	// often no SAN at all; the SAN lints about subjects are for TLS servers.
	"e_ext_san_missing",
	// RFC 5280 recommends, not requires, these for private PKI leaves.
	"w_ext_subject_key_identifier_missing_sub_cert",
}

// Registry is the filtered zlint registry lanyard lints with.
func Registry() (lint.Registry, error) {
	registryOnce.Do(func() {
		registry, registryErr = lint.GlobalRegistry().Filter(lint.FilterOptions{
			IncludeSources: lint.SourceList{lint.RFC5280, lint.RFC5480, lint.RFC3279, lint.RFC8813, lint.RFC5891},
			ExcludeNames:   ignored,
		})
	})
	return registry, registryErr
}

// Problems lists the lints of a result set at warn level or worse, sorted.
func problems(rs *zlint.ResultSet) []string {
	var out []string
	for name, r := range rs.Results {
		if r.Status >= lint.Warn {
			line := name + ": " + r.Status.String()
			if r.Details != "" {
				line += " (" + r.Details + ")"
			}
			out = append(out, line)
		}
	}
	sort.Strings(out)
	return out
}

// Certificate lints a DER certificate and returns an error naming every
// lint at warn level or worse.
func Certificate(der []byte) error {
	reg, err := Registry()
	if err != nil {
		return fmt.Errorf("lint: registry: %w", err)
	}
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("lint: parse certificate: %w", err)
	}
	if p := problems(zlint.LintCertificateEx(c, reg)); len(p) > 0 {
		return fmt.Errorf("lint: %s", strings.Join(p, "; "))
	}
	return nil
}

// CRL lints a DER CRL likewise.
func CRL(der []byte) error {
	reg, err := Registry()
	if err != nil {
		return fmt.Errorf("lint: registry: %w", err)
	}
	r, err := zx509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("lint: parse CRL: %w", err)
	}
	if p := problems(zlint.LintRevocationListEx(r, reg)); len(p) > 0 {
		return fmt.Errorf("lint: %s", strings.Join(p, "; "))
	}
	return nil
}
