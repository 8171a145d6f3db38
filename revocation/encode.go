package revocation

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	encasn1 "encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// KeySigner is optionally implemented by a CRLSigner (ca.Authority does).
// When the signer exposes the intermediate's key this way, large CRLs are
// assembled from entries encoded once at revocation time and signed
// directly, instead of through SignCRL (whose x509.CreateRevocationList
// re-encodes every entry with reflection). The signature is checked
// against Intermediate() before the CRL is used.
type KeySigner interface {
	// Signer is the intermediate's private key.
	Signer() crypto.Signer
	// SignatureAlgorithm is the algorithm SignCRL signs with.
	SignatureAlgorithm() x509.SignatureAlgorithm
}

var (
	oidExtReasonCode = encasn1.ObjectIdentifier{2, 5, 29, 21}
	oidExtCRLNumber  = encasn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtAKI        = encasn1.ObjectIdentifier{2, 5, 29, 35}
)

// sigAlg is what the direct encoder needs to know about a signature
// algorithm: its AlgorithmIdentifier, encoded as x509 encodes it, and the
// hash the signer is handed (0: the message itself, as Ed25519 wants).
type sigAlg struct {
	algID []byte
	hash  crypto.Hash
}

// sigAlgs covers the algorithms package ca signs with. RSA-PSS is not
// here; a CA using it falls back to SignCRL.
var sigAlgs = map[x509.SignatureAlgorithm]sigAlg{
	x509.ECDSAWithSHA256: {algIDBytes(encasn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, false), crypto.SHA256},
	x509.ECDSAWithSHA384: {algIDBytes(encasn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, false), crypto.SHA384},
	x509.ECDSAWithSHA512: {algIDBytes(encasn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, false), crypto.SHA512},
	x509.SHA256WithRSA:   {algIDBytes(encasn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, true), crypto.SHA256},
	x509.SHA384WithRSA:   {algIDBytes(encasn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, true), crypto.SHA384},
	x509.SHA512WithRSA:   {algIDBytes(encasn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, true), crypto.SHA512},
	x509.PureEd25519:     {algIDBytes(encasn1.ObjectIdentifier{1, 3, 101, 112}, false), 0},
}

func algIDBytes(oid encasn1.ObjectIdentifier, null bool) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if null {
			b.AddASN1NULL()
		}
	})
	return b.BytesOrPanic()
}

// addTime encodes t as x509 does (RFC 5280 4.1.2.5): UTCTime through
// 2049, GeneralizedTime from 2050, in UTC, whole seconds.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}

// encodeEntry returns the DER of one revokedCertificates entry: serial,
// revocation date and, unless the reason is unspecified (RFC 5280 5.3.1:
// the reasonCode SHOULD then be absent), a reasonCode entry extension.
func encodeEntry(serial *big.Int, at time.Time, reason int) ([]byte, error) {
	if serial == nil || serial.Sign() < 0 {
		return nil, errors.New("encode CRL entry: serial must be a non-negative integer")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(serial)
		addTime(b, at)
		if reason != ReasonUnspecified {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidExtReasonCode)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1Enum(int64(reason))
					})
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode CRL entry %x: %w", serial, err)
	}
	return der, nil
}

// encodeTBS assembles a TBSCertList exactly as x509.CreateRevocationList
// does: version v2, signature algorithm, the issuer's raw subject,
// thisUpdate, nextUpdate, the entries (omitted when there are none) and
// the authority key identifier and CRL number extensions. size is the
// total length of the entries, to size the buffer once.
func encodeTBS(algID []byte, issuer *x509.Certificate, number int64, thisUpdate, nextUpdate time.Time, entries [][]byte, size int) ([]byte, error) {
	if len(issuer.SubjectKeyId) == 0 {
		return nil, errors.New("encode CRL: the issuer has no subject key identifier")
	}
	if issuer.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, errors.New("encode CRL: the issuer lacks the cRLSign key usage")
	}
	if nextUpdate.Before(thisUpdate) {
		return nil, errors.New("encode CRL: nextUpdate is before thisUpdate")
	}
	if len(issuer.RawSubject) == 0 {
		return nil, errors.New("encode CRL: the issuer has no raw subject")
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, size+len(issuer.RawSubject)+256))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		b.AddBytes(algID)
		b.AddBytes(issuer.RawSubject)
		addTime(b, thisUpdate)
		addTime(b, nextUpdate)
		if len(entries) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, e := range entries {
					b.AddBytes(e)
				}
			})
		}
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidExtAKI)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddBytes(issuer.SubjectKeyId)
							})
						})
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidExtCRLNumber)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(number)
					})
				})
			})
		})
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode CRL: %w", err)
	}
	return tbs, nil
}

// signTBS signs tbs with ks, checks the signature against the issuer and
// returns the CertificateList DER.
func signTBS(ks KeySigner, issuer *x509.Certificate, tbs []byte) ([]byte, error) {
	alg := ks.SignatureAlgorithm()
	sa, ok := sigAlgs[alg]
	if !ok {
		return nil, fmt.Errorf("sign CRL: unsupported signature algorithm %v", alg)
	}
	signed := tbs
	if sa.hash != 0 {
		h := sa.hash.New()
		h.Write(tbs)
		signed = h.Sum(nil)
	}
	sig, err := ks.Signer().Sign(rand.Reader, signed, sa.hash)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	if err := issuer.CheckSignature(alg, tbs, sig); err != nil {
		return nil, fmt.Errorf("sign CRL: the signature does not verify against the intermediate: %w", err)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sa.algID)+len(sig)+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sa.algID)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return der, nil
}

// directAlgID returns the AlgorithmIdentifier the direct encoder would
// use for ks, or nil when it cannot sign for it.
func directAlgID(signer CRLSigner) (KeySigner, []byte) {
	ks, ok := signer.(KeySigner)
	if !ok {
		return nil, nil
	}
	sa, ok := sigAlgs[ks.SignatureAlgorithm()]
	if !ok {
		return nil, nil
	}
	return ks, bytes.Clone(sa.algID)
}
