package agent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"

	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// NewKey makes a private key of the named type: P-256 (also ""), P-384,
// RSA-2048 (also RSA), RSA-3072 or RSA-4096.
func NewKey(keyType string) (crypto.Signer, error) {
	switch normaliseKeyType(keyType) {
	case "P-256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "P-384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "RSA-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "RSA-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "RSA-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("key type %q: want P-256, P-384, RSA-2048, RSA-3072 or RSA-4096", keyType)
}

// KeyTypeOf names the type of a public or private key the way [NewKey]
// takes it ("P-256", "RSA-2048", ...), or "" for other keys.
func KeyTypeOf(key any) string {
	if s, ok := key.(crypto.Signer); ok {
		key = s.Public()
	}
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return k.Curve.Params().Name
	case *rsa.PublicKey:
		return "RSA-" + strconv.Itoa(k.N.BitLen())
	}
	return ""
}

// familyOf names the signing family of a key type NewKey takes.
func familyOf(keyType string) hostdir.KeyType {
	if strings.HasPrefix(normaliseKeyType(keyType), "RSA") {
		return hostdir.KeyTypeRSA
	}
	return hostdir.KeyTypeECDSA
}

func normaliseKeyType(t string) string {
	switch t = strings.ToUpper(strings.TrimSpace(t)); t {
	case "", "P256", "EC", "ECDSA":
		return "P-256"
	case "P384":
		return "P-384"
	case "RSA", "RSA2048":
		return "RSA-2048"
	case "RSA3072":
		return "RSA-3072"
	case "RSA4096":
		return "RSA-4096"
	}
	return t
}

// NewCSR returns a DER certificate request signed by key, asking for names
// (the zero Names asks for none), and the key as PKCS#8 PEM. The CA takes
// subject and SANs from the enrollment token or the current certificate,
// never from the CSR, but it refuses an enrollment CSR that asks for a CN
// other than the token's or a SAN the token does not grant, so a host that
// knows its names says them (as step-ca's `step ca certificate SUBJECT`
// does) and checks the answer with [caclient.VerifyIssued].
func NewCSR(key crypto.Signer, names caclient.Names) (csrDER, keyPEM []byte, err error) {
	tmpl := &x509.CertificateRequest{DNSNames: names.DNSNames}
	tmpl.Subject.CommonName = names.CN
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	return csrDER, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
