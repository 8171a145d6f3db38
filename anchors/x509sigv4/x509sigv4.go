// Package x509sigv4 implements the X.509 variant of AWS Signature Version 4
// that IAM Roles Anywhere's CreateSession uses (AWS4-X509-ECDSA-SHA256 and
// AWS4-X509-RSA-SHA256): the request is signed with the private key of an
// X.509 certificate instead of an HMAC secret, and the certificate (plus its
// chain) travels in the X-Amz-X509 and X-Amz-X509-Chain headers.
//
// The canonicalisation follows aws_signing_helper v1.5.0 byte for byte (see
// ../shared/reference/rolesanywhere.md §1.3): the method and path of the
// canonical request are always "POST" and "/sessions", the canonical query is
// url.Values.Encode with "+" written as "%20", and every canonical header line
// is "name:value" with its surrounding spaces trimmed and runs of spaces
// collapsed. The signature is ECDSA (ASN.1 DER) or RSA PKCS #1 v1.5 over the
// SHA-256 of the string to sign, hex encoded.
//
// Sign is the client side; ParseAuthorization, CanonicalRequest, StringToSign
// and VerifySignature are the pieces a verifier (the Roles Anywhere emulator)
// needs.
package x509sigv4

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Signing algorithms, as they appear at the start of the Authorization header.
const (
	AlgorithmECDSA = "AWS4-X509-ECDSA-SHA256"
	AlgorithmRSA   = "AWS4-X509-RSA-SHA256"
)

// Protocol constants.
const (
	// Service is the signing name of IAM Roles Anywhere.
	Service = "rolesanywhere"
	// Terminator ends every credential scope.
	Terminator = "aws4_request"
	// TimeFormat is the layout of the X-Amz-Date header.
	TimeFormat = "20060102T150405Z"
	// DateFormat is the layout of the date in the credential scope.
	DateFormat = "20060102"
	// SessionsPath is the path of CreateSession; the canonical request always
	// uses it, whatever path the request travels on.
	SessionsPath = "/sessions"
)

// Header names set by Sign.
const (
	HeaderAuthorization = "Authorization"
	HeaderDate          = "X-Amz-Date"
	HeaderX509          = "X-Amz-X509"
	HeaderX509Chain     = "X-Amz-X509-Chain"
)

// ignoredHeaders are never signed (the helper's ignoredHeaderKeys), plus the
// headers Go's HTTP client takes from the request fields rather than from
// req.Header, which therefore could not be reproduced by the server.
var ignoredHeaders = map[string]bool{
	"Authorization":     true,
	"User-Agent":        true,
	"X-Amzn-Trace-Id":   true,
	"Content-Length":    true,
	"Transfer-Encoding": true,
	"Trailer":           true,
}

// AlgorithmFor returns the signing algorithm for a public key: ECDSA or RSA.
func AlgorithmFor(pub crypto.PublicKey) (string, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return AlgorithmECDSA, nil
	case *rsa.PublicKey:
		return AlgorithmRSA, nil
	default:
		return "", fmt.Errorf("x509sigv4: unsupported key type %T (want RSA or ECDSA)", pub)
	}
}

// Scope returns the credential scope "YYYYMMDD/<region>/rolesanywhere/aws4_request"
// for a signing time.
func Scope(t time.Time, region string) string {
	return t.UTC().Format(DateFormat) + "/" + region + "/" + Service + "/" + Terminator
}

// Sign signs a CreateSession request the way aws_signing_helper does. It sets
// the Host (req.Host and the Host header, both from req.URL.Host), X-Amz-Date,
// X-Amz-X509, X-Amz-X509-Chain (only when chain is not empty: an empty header
// is refused by AWS) and Authorization headers. Every other header already on
// req is signed too, except Authorization, User-Agent, X-Amzn-Trace-Id and the
// framing headers Go's client manages itself (Content-Length,
// Transfer-Encoding, Trailer). body is the exact payload that will be sent;
// Sign does not touch req.Body.
//
// signer must hold the private key of leaf; it receives the SHA-256 digest of
// the string to sign (crypto.SHA256 opts).
func Sign(req *http.Request, body []byte, signer crypto.Signer, leaf *x509.Certificate, chain []*x509.Certificate, region string, now time.Time) error {
	if req == nil || req.URL == nil {
		return errors.New("x509sigv4: request has no URL")
	}
	if leaf == nil || signer == nil {
		return errors.New("x509sigv4: a certificate and its signer are required")
	}
	if region == "" {
		return errors.New("x509sigv4: region is required")
	}
	alg, err := AlgorithmFor(leaf.PublicKey)
	if err != nil {
		return err
	}
	if kalg, err := AlgorithmFor(signer.Public()); err != nil || kalg != alg {
		return fmt.Errorf("x509sigv4: signer key type %T does not match the certificate's", signer.Public())
	}
	now = now.UTC()
	amzDate := now.Format(TimeFormat)

	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Host = req.URL.Host
	req.Header.Set("Host", req.URL.Host)
	req.Header.Set(HeaderDate, amzDate)
	req.Header.Set(HeaderX509, EncodeCertificate(leaf))
	if len(chain) > 0 {
		req.Header.Set(HeaderX509Chain, EncodeChain(chain))
	} else {
		req.Header.Del(HeaderX509Chain)
	}
	req.Header.Del(HeaderAuthorization)

	var signed []string
	seen := map[string]bool{}
	for k := range req.Header {
		if ignoredHeaders[http.CanonicalHeaderKey(k)] {
			continue
		}
		lk := strings.ToLower(k)
		if !seen[lk] {
			seen[lk] = true
			signed = append(signed, lk)
		}
	}
	sort.Strings(signed)

	creq, err := CanonicalRequest(req, signed, PayloadHash(body))
	if err != nil {
		return err
	}
	scope := Scope(now, region)
	sts := StringToSign(alg, amzDate, scope, creq)
	digest := sha256.Sum256([]byte(sts))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("x509sigv4: sign: %w", err)
	}
	auth := Authorization{
		Algorithm:     alg,
		Serial:        leaf.SerialNumber.String(),
		Date:          now.Format(DateFormat),
		Region:        region,
		Service:       Service,
		SignedHeaders: signed,
		Signature:     sig,
	}
	req.Header.Set(HeaderAuthorization, auth.String())
	return nil
}

// EncodeCertificate returns the X-Amz-X509 form of a certificate: base64 (standard
// alphabet, padded) of its DER.
func EncodeCertificate(c *x509.Certificate) string {
	return base64.StdEncoding.EncodeToString(c.Raw)
}

// EncodeChain returns the X-Amz-X509-Chain form of certificates: their
// EncodeCertificate forms joined by commas, in order.
func EncodeChain(chain []*x509.Certificate) string {
	parts := make([]string, len(chain))
	for i, c := range chain {
		parts[i] = EncodeCertificate(c)
	}
	return strings.Join(parts, ",")
}

// DecodeCertificate parses an X-Amz-X509 header value.
func DecodeCertificate(s string) (*x509.Certificate, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("x509sigv4: certificate is not base64: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("x509sigv4: %w", err)
	}
	return c, nil
}

// DecodeChain parses an X-Amz-X509-Chain header value. An empty value is an
// error (AWS refuses an empty chain header); so is an empty element.
func DecodeChain(s string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("x509sigv4: empty certificate chain header")
	}
	parts := strings.Split(s, ",")
	out := make([]*x509.Certificate, 0, len(parts))
	for i, p := range parts {
		c, err := DecodeCertificate(p)
		if err != nil {
			return nil, fmt.Errorf("chain element %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// PayloadHash returns the lowercase hex SHA-256 of a request body.
func PayloadHash(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// CanonicalQuery returns the canonical query string as the helper builds it:
// url.Values.Encode (sorted by key) with "+" replaced by "%20".
func CanonicalQuery(req *http.Request) string {
	return strings.ReplaceAll(req.URL.Query().Encode(), "+", "%20")
}

// CanonicalRequest builds the canonical request over the given signed header
// names (lowercase, in the order given, as in SignedHeaders):
//
//	POST\n/sessions\n<query>\n<name:value lines>\n\n<h1;h2;...>\n<payloadHash>
//
// The value of "host" is req.Host, or req.URL.Host when req.Host is empty
// (Go's server moves Host out of req.Header). Other values are all of the
// request's values for that name joined by ",". Each "name:value" line is
// trimmed of outer spaces and its runs of spaces collapsed to one, exactly as
// the helper's stripExcessSpaces does. A signed header that the request does
// not carry is an error.
func CanonicalRequest(req *http.Request, signedHeaders []string, payloadHash string) (string, error) {
	if len(signedHeaders) == 0 {
		return "", errors.New("x509sigv4: no signed headers")
	}
	lines := make([]string, len(signedHeaders))
	for i, name := range signedHeaders {
		var value string
		if name == "host" {
			value = req.Host
			if value == "" {
				value = req.URL.Host
			}
			if value == "" {
				return "", errors.New("x509sigv4: request has no host")
			}
		} else {
			vals := req.Header.Values(name)
			if len(vals) == 0 {
				return "", fmt.Errorf("x509sigv4: signed header %q is missing", name)
			}
			value = strings.Join(vals, ",")
		}
		lines[i] = stripExcessSpaces(name + ":" + value)
	}
	var b strings.Builder
	b.WriteString("POST\n")
	b.WriteString(SessionsPath)
	b.WriteString("\n")
	b.WriteString(CanonicalQuery(req))
	b.WriteString("\n")
	b.WriteString(strings.Join(lines, "\n"))
	b.WriteString("\n\n")
	b.WriteString(strings.Join(signedHeaders, ";"))
	b.WriteString("\n")
	b.WriteString(payloadHash)
	return b.String(), nil
}

// StringToSign returns "<algorithm>\n<amzDate>\n<scope>\n<hex sha256(canonicalRequest)>".
func StringToSign(algorithm, amzDate, scope, canonicalRequest string) string {
	h := sha256.Sum256([]byte(canonicalRequest))
	return algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
}

// VerifySignature checks signature (raw bytes, already hex-decoded) over
// SHA-256(stringToSign) with pub, which must match algorithm: ECDSA ASN.1 for
// AlgorithmECDSA, RSA PKCS #1 v1.5 for AlgorithmRSA.
func VerifySignature(pub crypto.PublicKey, algorithm, stringToSign string, signature []byte) error {
	want, err := AlgorithmFor(pub)
	if err != nil {
		return err
	}
	if want != algorithm {
		return fmt.Errorf("x509sigv4: algorithm %s does not match the certificate key (%s)", algorithm, want)
	}
	digest := sha256.Sum256([]byte(stringToSign))
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest[:], signature) {
			return errors.New("x509sigv4: ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], signature); err != nil {
			return errors.New("x509sigv4: RSA signature does not verify")
		}
	}
	return nil
}

// stripExcessSpaces trims spaces (only ' ') at both ends and collapses inner
// runs of spaces to one, like aws_signing_helper's function of that name.
func stripExcessSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	prevSpace := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' {
			if prevSpace {
				continue
			}
			prevSpace = true
		} else {
			prevSpace = false
		}
		b.WriteByte(c)
	}
	return b.String()
}
