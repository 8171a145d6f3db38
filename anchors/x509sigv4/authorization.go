package x509sigv4

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Authorization is a parsed X.509 SigV4 Authorization header:
//
//	<Algorithm> Credential=<Serial>/<Date>/<Region>/<Service>/aws4_request, SignedHeaders=<h1;h2;...>, Signature=<hex>
type Authorization struct {
	// Algorithm is AlgorithmECDSA or AlgorithmRSA.
	Algorithm string
	// Serial is the decimal serial number of the signing certificate, as sent.
	Serial string
	// Date is the scope date, YYYYMMDD.
	Date string
	// Region is the scope region.
	Region string
	// Service is the scope service (Service for CreateSession).
	Service string
	// SignedHeaders are the lowercase signed header names, in the order sent.
	SignedHeaders []string
	// Signature is the hex-decoded signature.
	Signature []byte
}

// Scope returns "<Date>/<Region>/<Service>/aws4_request".
func (a Authorization) Scope() string {
	return a.Date + "/" + a.Region + "/" + a.Service + "/" + Terminator
}

// String formats the header value exactly as aws_signing_helper does.
func (a Authorization) String() string {
	return a.Algorithm + " Credential=" + a.Serial + "/" + a.Scope() +
		", SignedHeaders=" + strings.Join(a.SignedHeaders, ";") +
		", Signature=" + hex.EncodeToString(a.Signature)
}

// Signs reports whether name (any case) is among the signed headers.
func (a Authorization) Signs(name string) bool {
	name = strings.ToLower(name)
	for _, h := range a.SignedHeaders {
		if h == name {
			return true
		}
	}
	return false
}

// maxSerialDigits bounds the decimal serial: RFC 5280 serials are at most 20
// octets, i.e. at most 49 decimal digits.
const maxSerialDigits = 49

// ParseAuthorization parses an X.509 SigV4 Authorization header value. It
// accepts exactly the two X.509 algorithms, the three components Credential,
// SignedHeaders and Signature (each once, in any order, separated by a comma
// and optional spaces), a credential of five slash-separated parts ending in
// aws4_request with a decimal serial and a valid YYYYMMDD date, lowercase
// header-name tokens without duplicates, and a non-empty hex signature.
func ParseAuthorization(v string) (Authorization, error) {
	var a Authorization
	alg, rest, ok := strings.Cut(v, " ")
	if !ok {
		return a, errors.New("authorization: missing credential")
	}
	switch alg {
	case AlgorithmECDSA, AlgorithmRSA:
		a.Algorithm = alg
	default:
		return a, fmt.Errorf("authorization: unsupported algorithm %q", truncate(alg))
	}
	var haveCred, haveSH, haveSig bool
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimLeft(part, " ")
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return a, fmt.Errorf("authorization: malformed component %q", truncate(part))
		}
		switch key {
		case "Credential":
			if haveCred {
				return a, errors.New("authorization: duplicate Credential")
			}
			haveCred = true
			if err := a.parseCredential(val); err != nil {
				return a, err
			}
		case "SignedHeaders":
			if haveSH {
				return a, errors.New("authorization: duplicate SignedHeaders")
			}
			haveSH = true
			hs, err := parseSignedHeaders(val)
			if err != nil {
				return a, err
			}
			a.SignedHeaders = hs
		case "Signature":
			if haveSig {
				return a, errors.New("authorization: duplicate Signature")
			}
			haveSig = true
			if val == "" {
				return a, errors.New("authorization: empty Signature")
			}
			sig, err := hex.DecodeString(val)
			if err != nil {
				return a, errors.New("authorization: Signature is not hex")
			}
			a.Signature = sig
		default:
			return a, fmt.Errorf("authorization: unknown component %q", truncate(key))
		}
	}
	switch {
	case !haveCred:
		return a, errors.New("authorization: missing Credential")
	case !haveSH:
		return a, errors.New("authorization: missing SignedHeaders")
	case !haveSig:
		return a, errors.New("authorization: missing Signature")
	}
	return a, nil
}

func (a *Authorization) parseCredential(v string) error {
	parts := strings.Split(v, "/")
	if len(parts) != 5 {
		return errors.New("authorization: Credential must be serial/date/region/service/aws4_request")
	}
	serial, date, region, service, term := parts[0], parts[1], parts[2], parts[3], parts[4]
	if serial == "" || len(serial) > maxSerialDigits || !allBytes(serial, isDigit) {
		return errors.New("authorization: Credential serial must be a decimal number")
	}
	if len(date) != len(DateFormat) || !allBytes(date, isDigit) {
		return errors.New("authorization: Credential date must be YYYYMMDD")
	}
	if _, err := time.Parse(DateFormat, date); err != nil {
		return errors.New("authorization: Credential date is not a valid date")
	}
	if region == "" || !allBytes(region, isTokenByte) {
		return errors.New("authorization: Credential region is malformed")
	}
	if service == "" || !allBytes(service, isTokenByte) {
		return errors.New("authorization: Credential service is malformed")
	}
	if term != Terminator {
		return errors.New("authorization: Credential must end with aws4_request")
	}
	a.Serial, a.Date, a.Region, a.Service = serial, date, region, service
	return nil
}

func parseSignedHeaders(v string) ([]string, error) {
	if v == "" {
		return nil, errors.New("authorization: empty SignedHeaders")
	}
	names := strings.Split(v, ";")
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" || !allBytes(n, isTokenByte) {
			return nil, fmt.Errorf("authorization: bad signed header name %q", truncate(n))
		}
		if seen[n] {
			return nil, fmt.Errorf("authorization: signed header %q listed twice", n)
		}
		seen[n] = true
	}
	return names, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isTokenByte accepts lowercase letters, digits and '-' (header names in
// SignedHeaders are lowercase; regions and services use the same alphabet).
func isTokenByte(c byte) bool { return isDigit(c) || (c >= 'a' && c <= 'z') || c == '-' }

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
