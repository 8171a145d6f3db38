package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/pemutil"

	"github.com/lanyard/lanyard/internal/pembundle"
)

// Key type names accepted by InitOptions.KeyType.
const (
	KeyTypeP256    = "P-256" // ECDSA P-256, signs with ECDSA-SHA256 (the default)
	KeyTypeP384    = "P-384" // ECDSA P-384, signs with ECDSA-SHA384
	KeyTypeRSA2048 = "RSA-2048"
	KeyTypeRSA3072 = "RSA-3072"
	KeyTypeRSA4096 = "RSA-4096"
)

// keySpec describes how to create a key of one key type.
type keySpec struct {
	name  string // canonical name, e.g. "P-256"
	kty   string // keyutil key type: "EC" or "RSA"
	crv   string // keyutil curve for EC keys
	bits  int    // RSA modulus size
	kmsSA apiv1.SignatureAlgorithm
}

// parseKeyType returns the key spec for a KeyType name ("" means P-256);
// names are matched case-insensitively.
func parseKeyType(s string) (keySpec, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "", "P-256", "P256", "EC-P256":
		return keySpec{name: KeyTypeP256, kty: "EC", crv: "P-256", kmsSA: apiv1.ECDSAWithSHA256}, nil
	case "P-384", "P384", "EC-P384":
		return keySpec{name: KeyTypeP384, kty: "EC", crv: "P-384", kmsSA: apiv1.ECDSAWithSHA384}, nil
	case "RSA-2048", "RSA2048":
		return keySpec{name: KeyTypeRSA2048, kty: "RSA", bits: 2048, kmsSA: apiv1.SHA256WithRSA}, nil
	case "RSA-3072", "RSA3072":
		return keySpec{name: KeyTypeRSA3072, kty: "RSA", bits: 3072, kmsSA: apiv1.SHA256WithRSA}, nil
	case "RSA-4096", "RSA4096":
		return keySpec{name: KeyTypeRSA4096, kty: "RSA", bits: 4096, kmsSA: apiv1.SHA256WithRSA}, nil
	}
	return keySpec{}, fmt.Errorf("ca: unknown key type %q (want %s, %s, %s, %s or %s)",
		s, KeyTypeP256, KeyTypeP384, KeyTypeRSA2048, KeyTypeRSA3072, KeyTypeRSA4096)
}

// generate creates a new private key of this spec.
func (k keySpec) generate() (crypto.Signer, error) {
	s, err := keyutil.GenerateSigner(k.kty, k.crv, k.bits)
	if err != nil {
		return nil, fmt.Errorf("ca: generate %s key: %w", k.name, err)
	}
	return s, nil
}

// signatureAlgorithm returns the signature algorithm a CA with public key pub
// signs with: ECDSA-SHA256 for P-256, ECDSA-SHA384 for P-384, ECDSA-SHA512
// for P-521 and SHA256-RSA (PKCS #1 v1.5) for RSA. Other keys are refused,
// because IAM Roles Anywhere accepts only RSA and ECDSA CAs.
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		case elliptic.P521():
			return x509.ECDSAWithSHA512, nil
		}
		return 0, fmt.Errorf("ca: unsupported ECDSA curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return 0, fmt.Errorf("ca: RSA key of %d bits is too small (minimum 2048)", k.N.BitLen())
		}
		return x509.SHA256WithRSA, nil
	}
	return 0, fmt.Errorf("ca: unsupported CA key type %T (want ECDSA or RSA)", pub)
}

// subjectKeyID computes a key identifier for pub as RFC 7093 section 2
// method 1 describes (an update of RFC 5280 section 4.2.1.2 method 1): the
// leftmost 160 bits of the SHA-256 hash of the subjectPublicKey BIT STRING
// value. ECDSA and RSA keys take a fast path without a full SPKI round trip.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	var bits []byte
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("ca: encode ECDSA public key: %w", err)
		}
		bits = b
	case *rsa.PublicKey:
		bits = x509.MarshalPKCS1PublicKey(k)
	case ed25519.PublicKey:
		bits = k
	default:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("ca: encode public key: %w", err)
		}
		var spki struct {
			Algorithm asn1.RawValue
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(der, &spki); err != nil {
			return nil, fmt.Errorf("ca: decode public key: %w", err)
		}
		bits = spki.PublicKey.Bytes
	}
	sum := sha256.Sum256(bits)
	return sum[:20], nil
}

// randomSerial returns a positive random 128-bit certificate serial number.
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("ca: random serial: %w", err)
	}
	b[0] &= 0x7f // positive, and at most 16 octets once DER-encoded
	b[0] |= 0x40 // never short (or zero)
	return new(big.Int).SetBytes(b), nil
}

// publicKeysEqual reports whether two public keys are the same key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	if e, ok := a.(interface{ Equal(crypto.PublicKey) bool }); ok {
		return e.Equal(b)
	}
	return false
}

// marshalKey serialises a private key as PKCS#8 PEM, encrypted with
// passphrase (AES-256, PBES2) when passphrase is non-nil.
func marshalKey(key crypto.PrivateKey, passphrase []byte) ([]byte, error) {
	opts := []pemutil.Options{pemutil.WithPKCS8(true)}
	if passphrase != nil {
		if len(passphrase) == 0 {
			return nil, errors.New("ca: the passphrase is empty")
		}
		opts = append(opts, pemutil.WithPassword(passphrase))
	}
	block, err := pemutil.Serialize(key, opts...)
	if err != nil {
		return nil, fmt.Errorf("ca: serialise private key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// isEncryptedPEM reports whether the first PEM block of data is an encrypted
// private key (PKCS#8 or legacy OpenSSL encryption).
func isEncryptedPEM(data []byte) bool {
	block, _ := pem.Decode(data)
	if block == nil {
		return false
	}
	return block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED"
}

// parseSigner parses a PEM private key (PKCS#1, SEC 1 or PKCS#8, plain or
// encrypted) read from name. An encrypted key with no or a wrong passphrase
// gives ErrBadPassphrase.
func parseSigner(name string, data []byte, passphrase []byte) (crypto.Signer, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("ca: %s: the file is empty", name)
	}
	encrypted := isEncryptedPEM(data)
	if encrypted && len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: %s is encrypted and no passphrase was given", ErrBadPassphrase, name)
	}
	opts := []pemutil.Options{pemutil.WithFilename(name), pemutil.WithFirstBlock()}
	if len(passphrase) > 0 {
		opts = append(opts, pemutil.WithPassword(passphrase))
	}
	v, err := pemutil.ParseKey(data, opts...)
	if err != nil {
		// A wrong passphrase is usually caught by the padding check; when
		// the padding happens to look right, the key fails to parse instead.
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("%w: the passphrase does not decrypt %s", ErrBadPassphrase, name)
		}
		if encrypted {
			return nil, fmt.Errorf("%w: %s does not decrypt to a private key: %v", ErrBadPassphrase, name, err)
		}
		return nil, fmt.Errorf("ca: %s does not hold a PEM private key: %w", name, err)
	}
	s, ok := v.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: %s holds a %T, not a private key", name, v)
	}
	if _, err := signatureAlgorithm(s.Public()); err != nil {
		return nil, fmt.Errorf("ca: %s: %w", name, err)
	}
	return s, nil
}

// parseCertificates parses the PEM certificates of data read from name, in
// order, under the repository's one bundle policy (package pembundle); no
// certificate at all is an error.
func parseCertificates(name string, data []byte) ([]*x509.Certificate, error) {
	certs, err := pembundle.ParseNonEmpty(data)
	if errors.Is(err, pembundle.ErrEmpty) {
		return nil, fmt.Errorf("ca: %s holds no PEM certificate", name)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", name, err)
	}
	return certs, nil
}

// encodeCertificates returns the PEM encoding of certs, in order.
func encodeCertificates(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
