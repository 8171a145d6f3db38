package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
)

// retiredSigner is a retired intermediate whose key is still kept: it
// signs the CRL of the certificates it issued.
type retiredSigner struct {
	cert   *x509.Certificate
	signer crypto.Signer
	sigAlg x509.SignatureAlgorithm
	closer io.Closer
}

// loadRetiredSigners opens the key of every retired intermediate that
// still has one (RetiredDir/<serial>.key or .key.uri); a retired
// intermediate whose key was destroyed signs nothing.
func loadRetiredSigners(dir string, retired []*x509.Certificate, passphrase []byte) ([]*retiredSigner, error) {
	var out []*retiredSigner
	closeAll := func() {
		for _, r := range out {
			if r.closer != nil {
				r.closer.Close()
			}
		}
	}
	for _, c := range retired {
		base := retiredBase(dir, c)
		var (
			signer crypto.Signer
			closer io.Closer
		)
		if b, err := os.ReadFile(base + ".key.uri"); err == nil {
			keyURI := strings.TrimSpace(string(b))
			if signer, closer, err = kmsLoadSigner(dir, "", keyURI, passphrase); err != nil {
				closeAll()
				return nil, fmt.Errorf("ca: retired intermediate %q: %w", c.Subject.CommonName, err)
			}
		} else if data, err := os.ReadFile(base + ".key"); err == nil {
			if signer, err = parseSigner(base+".key", data, passphrase); err != nil {
				closeAll()
				return nil, err
			}
		} else if errors.Is(err, fs.ErrNotExist) {
			continue
		} else {
			closeAll()
			return nil, fmt.Errorf("ca: retired intermediate key: %w", err)
		}
		if !publicKeysEqual(signer.Public(), c.PublicKey) {
			if closer != nil {
				closer.Close()
			}
			closeAll()
			return nil, fmt.Errorf("%w: the retired key %s is not the key of %q", ErrKeyMismatch, base, c.Subject.CommonName)
		}
		alg, err := signatureAlgorithm(signer.Public())
		if err != nil {
			closeAll()
			return nil, err
		}
		out = append(out, &retiredSigner{cert: c, signer: signer, sigAlg: alg, closer: closer})
	}
	return out, nil
}

// IssuerCRL is a CRL signed by one (retired) intermediate.
type IssuerCRL struct {
	Issuer *x509.Certificate
	DER    []byte
}

// SignRetiredCRLs signs req once with the key of every retired
// intermediate that still has one, so that the certificates they issued
// keep a current CRL from their own issuer (relying parties, IAM Roles
// Anywhere among them, match a CRL to a certificate by issuer). The
// entries are the same as the current intermediate's CRL: serials are
// random, so listing another issuer's serials revokes nothing of this one.
func (a *Authority) SignRetiredCRLs(req CRLRequest) ([]IssuerCRL, error) {
	out := make([]IssuerCRL, 0, len(a.retiredSigners))
	for _, r := range a.retiredSigners {
		sa, ok := crlSigAlgs[r.sigAlg]
		if !ok {
			return nil, fmt.Errorf("ca: sign CRL: unsupported signature algorithm %v", r.sigAlg)
		}
		tbs, err := encodeTBSCertList(sa.algID, r.cert, req)
		if err != nil {
			return nil, err
		}
		der, err := signTBSCertList(r.signer, r.sigAlg, sa, r.cert, tbs)
		if err != nil {
			return nil, fmt.Errorf("ca: retired intermediate %q: %w", r.cert.Subject.CommonName, err)
		}
		out = append(out, IssuerCRL{Issuer: r.cert, DER: der})
	}
	return out, nil
}

// retiredBase is the path, without extension, of retired intermediate
// c's files in dir: <base>.crt, and its key as <base>.key or <base>.key.uri.
func retiredBase(dir string, c *x509.Certificate) string {
	return filepath.Join(dir, RetiredDir, lanyardv1.FormatSerial(c.SerialNumber))
}

// retiredKeyKept reports whether retired intermediate c still has its key
// (a key file or a key URI file), so that it signs a CRL.
func retiredKeyKept(dir string, c *x509.Certificate) bool {
	base := retiredBase(dir, c)
	for _, p := range []string{base + ".key", base + ".key.uri"} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}
