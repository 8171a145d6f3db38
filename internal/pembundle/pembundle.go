// Package pembundle parses PEM bundles of X.509 certificates (roots,
// chains, leaves) under one policy shared by every binary: each PEM block
// must be a CERTIFICATE that parses; text outside the blocks (comments such
// as openssl's "subject=" lines) is allowed; anything that starts like a PEM
// block but does not decode is an error, so a truncated or corrupted file
// is never read as a shorter bundle.
package pembundle

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// BlockType is the PEM type of a certificate block.
const BlockType = "CERTIFICATE"

// ErrEmpty means the data holds no certificate at all.
var ErrEmpty = errors.New("no PEM certificate found")

// Parse returns the certificates of data in order; zero certificates is
// not an error (an empty chain). See the package documentation for what
// is refused.
func Parse(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != BlockType {
			return nil, fmt.Errorf("unexpected PEM block %q (want %s)", block.Type, BlockType)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("malformed PEM block after certificate %d", len(out))
	}
	return out, nil
}

// ParseNonEmpty is [Parse] that also refuses a bundle without a
// certificate ([ErrEmpty]).
func ParseNonEmpty(data []byte) ([]*x509.Certificate, error) {
	certs, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, ErrEmpty
	}
	return certs, nil
}

// Encode returns the PEM encoding of certs, in order.
func Encode(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: BlockType, Bytes: c.Raw})
	}
	return buf.Bytes()
}
