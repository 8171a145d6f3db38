package trust

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Certificate fields an attribute mapping names (the API's
// certificateField values).
const (
	FieldSubject = "x509Subject"
	FieldIssuer  = "x509Issuer"
	FieldSAN     = "x509SAN"
)

// PrincipalTagPrefix is how a session tag is named in a policy condition.
const PrincipalTagPrefix = "aws:PrincipalTag/"

// Mapping is one attribute mapping of a profile: a certificate field and
// the specifiers of it that become session tags.
type Mapping struct {
	// Field is FieldSubject, FieldIssuer or FieldSAN.
	Field string `json:"certificateField" yaml:"field"`
	// Specifiers: RDN short names ("CN", "OU") or "*" for subject and
	// issuer; "DNS", "URI", "Name/<RDN>" or "Name/*" for the SAN.
	Specifiers []string `json:"specifiers" yaml:"specifiers"`
}

// DefaultMappings are the mappings AWS gives a profile that sets none
// (every subject and issuer RDN; the first DNS, URI and directory name).
var DefaultMappings = []Mapping{
	{Field: FieldIssuer, Specifiers: []string{"*"}},
	{Field: FieldSAN, Specifiers: []string{"DNS", "URI", "Name/*"}},
	{Field: FieldSubject, Specifiers: []string{"*"}},
}

// LanyardMappings are the mappings lanyard's generated trust policies need
// and nothing more: the subject CN (which host) and the issuer CN (which
// CA). Fewer tags, fewer session-tag bytes (they count against the packed
// policy size), and no tag a policy could match by accident.
var LanyardMappings = []Mapping{
	{Field: FieldIssuer, Specifiers: []string{"CN"}},
	{Field: FieldSubject, Specifiers: []string{"CN"}},
}

// rdnNames are the RDNs Roles Anywhere maps, by OID (the issuer list of the
// User Guide; the same set for the subject).
var rdnNames = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{asn1.ObjectIdentifier{2, 5, 4, 6}, "C"},
	{asn1.ObjectIdentifier{2, 5, 4, 3}, "CN"},
	{asn1.ObjectIdentifier{2, 5, 4, 7}, "L"},
	{asn1.ObjectIdentifier{2, 5, 4, 10}, "O"},
	{asn1.ObjectIdentifier{2, 5, 4, 11}, "OU"},
	{asn1.ObjectIdentifier{2, 5, 4, 8}, "ST"},
}

// MaxSpecifierLength is the API's limit on one mapping rule specifier.
const MaxSpecifierLength = 60

// ErrInvalidMapping wraps the reason ValidateMappings refuses a mapping.
var ErrInvalidMapping = fmt.Errorf("invalid attribute mapping")

// ValidateMappings checks fields and specifiers as the API does.
func ValidateMappings(ms []Mapping) error {
	seen := map[string]bool{}
	for _, m := range ms {
		if m.Field != FieldSubject && m.Field != FieldIssuer && m.Field != FieldSAN {
			return fmt.Errorf("%w: certificate field %q (want %s, %s or %s)", ErrInvalidMapping, m.Field, FieldSubject, FieldIssuer, FieldSAN)
		}
		if seen[m.Field] {
			return fmt.Errorf("%w: %s is mapped twice", ErrInvalidMapping, m.Field)
		}
		seen[m.Field] = true
		for _, s := range m.Specifiers {
			if len(s) > MaxSpecifierLength {
				return fmt.Errorf("%w: specifier %q is over %d characters", ErrInvalidMapping, s, MaxSpecifierLength)
			}
			if m.Field == FieldSAN && s != "DNS" && s != "URI" && s != "Name" && !strings.HasPrefix(s, "Name/") {
				return fmt.Errorf("%w: SAN specifier %q (want DNS, URI or Name/<RDN>)", ErrInvalidMapping, s)
			}
		}
	}
	return nil
}

// maxTagValueRunes is STS's limit on a session-tag value (256 characters).
const maxTagValueRunes = 256

// validTagValue reports whether v matches the STS session-tag value pattern
// `[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}`; longer or other values are dropped,
// as Roles Anywhere does. It is written as a loop, not a regexp: the
// compiled {0,256} repetition of Unicode classes costs ~10 MB of heap at
// start-up in every binary that links this package (the host agent too).
func validTagValue(v string) bool {
	n := 0
	for _, r := range v {
		n++
		if n > maxTagValueRunes {
			return false
		}
		if unicode.IsLetter(r) || unicode.In(r, unicode.Z) || unicode.IsNumber(r) || strings.ContainsRune("_.:/=+-@", r) {
			continue
		}
		return false
	}
	return true
}

// SessionTags returns the session tags leaf yields under mappings (nil:
// DefaultMappings), keyed "x509Subject/CN" etc. (without
// PrincipalTagPrefix).
func SessionTags(leaf *x509.Certificate, mappings []Mapping) map[string]string {
	if mappings == nil {
		mappings = DefaultMappings
	}
	tags := map[string]string{}
	put := func(k, v string) {
		if v != "" && validTagValue(v) {
			tags[k] = v
		}
	}
	for _, m := range mappings {
		switch m.Field {
		case FieldSubject:
			for k, v := range rdnTags(leaf.Subject, m.Specifiers) {
				put(FieldSubject+"/"+k, v)
			}
		case FieldIssuer:
			for k, v := range rdnTags(leaf.Issuer, m.Specifiers) {
				put(FieldIssuer+"/"+k, v)
			}
		case FieldSAN:
			for _, s := range m.Specifiers {
				switch {
				case s == "DNS" && len(leaf.DNSNames) > 0:
					put(FieldSAN+"/DNS", leaf.DNSNames[0])
				case s == "URI" && len(leaf.URIs) > 0:
					put(FieldSAN+"/URI", leaf.URIs[0].String())
				case s == "Name" || strings.HasPrefix(s, "Name/"):
					dn, ok := firstDirectoryName(leaf)
					if !ok {
						continue
					}
					spec := strings.TrimPrefix(strings.TrimPrefix(s, "Name"), "/")
					if spec == "" {
						spec = "*"
					}
					for k, v := range rdnTags(dn, []string{spec}) {
						put(FieldSAN+"/Name/"+k, v)
					}
				}
			}
		}
	}
	return tags
}

// rdnTags maps the RDNs of name that specs select, multi-valued ones
// joined with "/" in certificate order.
func rdnTags(name pkix.Name, specs []string) map[string]string {
	all := slices.Contains(specs, "*")
	vals := map[string][]string{}
	for _, atv := range name.Names {
		for _, r := range rdnNames {
			if atv.Type.Equal(r.oid) && (all || slices.Contains(specs, r.name)) {
				if s, ok := atv.Value.(string); ok {
					vals[r.name] = append(vals[r.name], s)
				}
			}
		}
	}
	out := map[string]string{}
	for k, v := range vals {
		out[k] = strings.Join(v, "/")
	}
	return out
}

// oidSAN is the subjectAltName extension.
var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// firstDirectoryName returns the first directoryName of leaf's SAN.
func firstDirectoryName(leaf *x509.Certificate) (pkix.Name, bool) {
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(oidSAN) {
			continue
		}
		var seq asn1.RawValue
		if _, err := asn1.Unmarshal(ext.Value, &seq); err != nil {
			return pkix.Name{}, false
		}
		rest := seq.Bytes
		for len(rest) > 0 {
			var gn asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
				return pkix.Name{}, false
			}
			if gn.Class == asn1.ClassContextSpecific && gn.Tag == 4 { // directoryName [4] Name (explicit)
				var rdns pkix.RDNSequence
				if _, err := asn1.Unmarshal(gn.Bytes, &rdns); err != nil {
					return pkix.Name{}, false
				}
				var n pkix.Name
				n.FillFromRDNSequence(&rdns)
				return n, true
			}
		}
	}
	return pkix.Name{}, false
}
