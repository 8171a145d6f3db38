package hostdir

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/lanyard/lanyard/internal/pembundle"
)

// Material is what one version folder holds, as PEM. The full chain written
// to fullchain.pem is CertPEM followed by ChainPEM.
type Material struct {
	// CertPEM is the leaf certificate: exactly one CERTIFICATE block.
	CertPEM []byte
	// ChainPEM holds the intermediates, zero or more CERTIFICATE blocks.
	ChainPEM []byte
	// KeyPEM is the private key: one "PRIVATE KEY" (PKCS#8),
	// "EC PRIVATE KEY" (SEC 1) or "RSA PRIVATE KEY" (PKCS#1) block,
	// holding an ECDSA or RSA key.
	KeyPEM []byte
}

// KeyType names the signing algorithm family of a key as aws_signing_helper
// sees it: "ECDSA" or "RSA". The helper fixes the family when it starts, so a
// renewal must not change it (see [ErrKeyTypeChanged]).
type KeyType string

// Key types that Roles Anywhere and aws_signing_helper accept.
const (
	KeyTypeECDSA KeyType = "ECDSA"
	KeyTypeRSA   KeyType = "RSA"
)

// parsed is validated material.
type parsed struct {
	cert  *x509.Certificate
	chain []*x509.Certificate
	key   crypto.Signer
}

// parseMaterial parses and cross-checks m without touching the disk.
func parseMaterial(certPEM, chainPEM, keyPEM []byte) (*parsed, error) {
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: cert.pem: %w", ErrInvalidMaterial, err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%w: cert.pem: want exactly one certificate (the leaf), found %d", ErrInvalidMaterial, len(certs))
	}
	chain, err := parseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: chain.pem: %w", ErrInvalidMaterial, err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: privkey.pem: %w", ErrInvalidMaterial, err)
	}
	pub, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: certificate %x (CN %q) was not issued for this private key",
			ErrMismatch, certs[0].SerialNumber, certs[0].Subject.CommonName)
	}
	return &parsed{cert: certs[0], chain: chain, key: key}, nil
}

// parseCertificates parses a PEM bundle under the repository's one policy
// (package pembundle): CERTIFICATE blocks only, text outside blocks allowed,
// a block that does not decode refused.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	return pembundle.Parse(data)
}

// parsePrivateKey parses one PEM private key block holding an ECDSA or RSA key.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("more than one PEM block")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: %T (want ECDSA or RSA)", ErrUnsupportedKey, k)
	}
}

// CheckKeyTypeChange is lanyard's one rule on changing a host's key type,
// used by the host folder (Write) and the agent (before it asks the CA): a
// change of signing family (ECDSA ↔ RSA) fails with ErrKeyTypeChanged
// unless allow is set, because a running aws_signing_helper fixes the
// family when it starts; a change within a family (P-256 → P-384,
// RSA-2048 → RSA-3072) is no change. The CA does not rule on changes: it
// issues for any key type the profile allows.
func CheckKeyTypeChange(was, now KeyType, allow bool) error {
	if was == now || allow {
		return nil
	}
	return fmt.Errorf("%w: from %s to %s (allow it explicitly; a running aws_signing_helper must then be restarted)", ErrKeyTypeChanged, was, now)
}

// KeyTypeOf returns the algorithm family of a public or private key, or ""
// for anything else.
func KeyTypeOf(key any) KeyType {
	switch key.(type) {
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return KeyTypeECDSA
	case *rsa.PrivateKey, *rsa.PublicKey:
		return KeyTypeRSA
	}
	return ""
}
