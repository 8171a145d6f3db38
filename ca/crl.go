package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Why the CRL encoder is hand-written: x509.CreateRevocationList re-encodes
// every entry with encoding/asn1's reflection on every CRL, about 230 ms for
// 100,000 entries. Here each entry is encoded once, when it is revoked
// (NewRevokedCert), and a CRL is the concatenation of those encodings in a
// TBSCertList assembled with cryptobyte. The bytes are exactly what
// x509.CreateRevocationList writes for the same input: the tests and the
// differential fuzz target (FuzzSignCRLMatchesX509) compare the two.

var (
	oidCRLReasonCode = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidCRLNumber     = asn1.ObjectIdentifier{2, 5, 29, 20}
)

// crlSigAlg is what the CRL encoder needs to know about a signature
// algorithm: its AlgorithmIdentifier, encoded as x509 encodes it, and the
// hash the signer is handed.
type crlSigAlg struct {
	algID []byte
	hash  crypto.Hash
}

// crlSigAlgs covers every algorithm signatureAlgorithm can choose.
var crlSigAlgs = map[x509.SignatureAlgorithm]crlSigAlg{
	x509.ECDSAWithSHA256: {algIDBytes(oidSigECDSASHA256, false), crypto.SHA256},
	x509.ECDSAWithSHA384: {algIDBytes(oidSigECDSASHA384, false), crypto.SHA384},
	x509.ECDSAWithSHA512: {algIDBytes(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, false), crypto.SHA512},
	x509.SHA256WithRSA:   {algIDBytes(oidSigSHA256RSA, true), crypto.SHA256},
}

func algIDBytes(oid asn1.ObjectIdentifier, null bool) []byte {
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

// RevokedCert is one entry of a CRL's revokedCertificates list, encoded
// once by NewRevokedCert and reused by every CRL that lists it. It is
// immutable.
type RevokedCert struct {
	serial *big.Int
	at     time.Time
	reason int
	der    []byte
}

// NewRevokedCert encodes the CRL entry of the certificate serial, revoked
// at revokedAt (whole seconds are kept) for the RFC 5280 reason code
// reason. Reason 0 (unspecified) is written without a reasonCode
// extension, as RFC 5280 5.3.1 asks and as x509 does.
func NewRevokedCert(serial *big.Int, revokedAt time.Time, reason int) (*RevokedCert, error) {
	if serial == nil || serial.Sign() < 0 {
		return nil, errors.New("ca: encode CRL entry: serial must be a non-negative integer")
	}
	if reason < 0 || reason > 10 {
		return nil, fmt.Errorf("ca: encode CRL entry %x: reason code %d is outside RFC 5280's 0..10", serial, reason)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(serial)
		addTime(b, revokedAt)
		if reason != 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidCRLReasonCode)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1Enum(int64(reason))
					})
				})
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ca: encode CRL entry %x: %w", serial, err)
	}
	return &RevokedCert{serial: new(big.Int).Set(serial), at: revokedAt, reason: reason, der: der}, nil
}

// Serial is the revoked certificate's serial number (a copy).
func (r *RevokedCert) Serial() *big.Int { return new(big.Int).Set(r.serial) }

// RevokedAt is the revocation time as given to NewRevokedCert.
func (r *RevokedCert) RevokedAt() time.Time { return r.at }

// Reason is the RFC 5280 reason code.
func (r *RevokedCert) Reason() int { return r.reason }

// CRLRequest is a CRL to sign.
type CRLRequest struct {
	// Number is the CRL number extension's value; the caller keeps it
	// monotonic.
	Number int64
	// ThisUpdate and NextUpdate are the CRL's validity; NextUpdate must
	// not be before ThisUpdate.
	ThisUpdate, NextUpdate time.Time
	// Entries are listed in this order.
	Entries []*RevokedCert
}

// SignCRL signs an RFC 5280 v2 CRL with the intermediate and returns its
// DER: the intermediate's subject as issuer, the authority key identifier
// and CRL number extensions, and req's entries. The signature is checked
// against the intermediate before the CRL is returned, so a faulty signer
// (a KMS, a wrong key) fails here rather than at the relying party.
func (a *Authority) SignCRL(req CRLRequest) ([]byte, error) {
	sa, ok := crlSigAlgs[a.sigAlg]
	if !ok {
		return nil, fmt.Errorf("ca: sign CRL: unsupported signature algorithm %v", a.sigAlg)
	}
	tbs, err := encodeTBSCertList(sa.algID, a.intermediate, req)
	if err != nil {
		return nil, err
	}
	return signTBSCertList(a.signer, a.sigAlg, sa, a.intermediate, tbs)
}

// encodeTBSCertList assembles a TBSCertList exactly as
// x509.CreateRevocationList does: version v2, signature algorithm, the
// issuer's raw subject, thisUpdate, nextUpdate, the entries (omitted when
// there are none) and the authority key identifier and CRL number
// extensions. It is the one check of the request for the current and the
// retired intermediates alike.
func encodeTBSCertList(algID []byte, issuer *x509.Certificate, req CRLRequest) ([]byte, error) {
	if req.Number < 0 {
		return nil, fmt.Errorf("ca: encode CRL: CRL number %d is negative (RFC 5280 5.2.3)", req.Number)
	}
	if len(issuer.SubjectKeyId) == 0 {
		return nil, errors.New("ca: encode CRL: the issuer has no subject key identifier")
	}
	if issuer.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, errors.New("ca: encode CRL: the issuer lacks the cRLSign key usage")
	}
	if req.NextUpdate.Before(req.ThisUpdate) {
		return nil, errors.New("ca: encode CRL: nextUpdate is before thisUpdate")
	}
	if len(issuer.RawSubject) == 0 {
		return nil, errors.New("ca: encode CRL: the issuer has no raw subject")
	}
	size := 0
	for _, e := range req.Entries {
		size += len(e.der)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, size+len(issuer.RawSubject)+256))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		b.AddBytes(algID)
		b.AddBytes(issuer.RawSubject)
		addTime(b, req.ThisUpdate)
		addTime(b, req.NextUpdate)
		if len(req.Entries) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, e := range req.Entries {
					b.AddBytes(e.der)
				}
			})
		}
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidAuthorityKeyID)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddBytes(issuer.SubjectKeyId)
							})
						})
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidCRLNumber)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(req.Number)
					})
				})
			})
		})
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ca: encode CRL: %w", err)
	}
	return tbs, nil
}

// signTBSCertList signs tbs with signer, checks the signature against the
// issuer and returns the CertificateList DER.
func signTBSCertList(signer crypto.Signer, alg x509.SignatureAlgorithm, sa crlSigAlg, issuer *x509.Certificate, tbs []byte) ([]byte, error) {
	h := sa.hash.New()
	h.Write(tbs)
	sig, err := signer.Sign(rand.Reader, h.Sum(nil), sa.hash)
	if err != nil {
		return nil, fmt.Errorf("ca: sign CRL: %w", err)
	}
	if err := issuer.CheckSignature(alg, tbs, sig); err != nil {
		return nil, fmt.Errorf("ca: sign CRL: the signature does not verify against the intermediate: %w", err)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sa.algID)+len(sig)+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sa.algID)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ca: sign CRL: %w", err)
	}
	return der, nil
}
