package trust

import (
	"crypto/x509"
	"fmt"
	"time"
)

// LeafRefusal returns why Roles Anywhere refuses c as the end-entity
// certificate of a CreateSession at now, or "" if its end-entity rules
// hold: X.509 v3, not a CA, digitalSignature key usage, a SHA-256 or
// stronger signature, a non-empty subject, within its validity. The
// emulator refuses with it and `lanyard anchors explain` reports it.
func LeafRefusal(c *x509.Certificate, now time.Time) string {
	switch {
	case c.Version != 3:
		return fmt.Sprintf("leaf is X.509 v%d, v3 is required", c.Version)
	case c.BasicConstraintsValid && c.IsCA:
		return "leaf has basic constraints CA:true"
	case c.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return "leaf key usage lacks digitalSignature"
	case !StrongSignature(c.SignatureAlgorithm):
		return fmt.Sprintf("leaf is signed with %s; SHA-256 or stronger is required", c.SignatureAlgorithm)
	case len(c.RawSubject) == 0 || len(c.Subject.Names) == 0:
		return "leaf has an empty subject"
	case now.Before(c.NotBefore):
		return "leaf is not valid yet (notBefore " + c.NotBefore.UTC().Format(time.RFC3339) + ")"
	case now.After(c.NotAfter):
		return "leaf has expired (notAfter " + c.NotAfter.UTC().Format(time.RFC3339) + ")"
	}
	return ""
}

// StrongSignature reports whether a is a signature algorithm Roles
// Anywhere accepts in a certificate path: RSA (PKCS #1 v1.5 or PSS) or
// ECDSA with SHA-256 or a longer hash.
func StrongSignature(a x509.SignatureAlgorithm) bool {
	switch a {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
		return true
	}
	return false
}
