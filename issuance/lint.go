package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/lanyard/lanyard/certlint"
)

func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

var (
	throwawayOnce sync.Once
	throwawayKey  *ecdsa.PrivateKey
	throwawayErr  error
)

// lintWithThrowawayIssuer signs tmpl with a throwaway key under the real
// issuer's name (so nothing it produces is valid anywhere) and lints the
// result: the certificate that would be issued, minus the signature bytes.
func lintWithThrowawayIssuer(tmpl *x509.Certificate, pub crypto.PublicKey, issuer *x509.Certificate) error {
	throwawayOnce.Do(func() {
		throwawayKey, throwawayErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
	if throwawayErr != nil {
		return throwawayErr
	}
	parent := *issuer
	parent.PublicKey = &throwawayKey.PublicKey
	t := *tmpl
	t.AuthorityKeyId = issuer.SubjectKeyId
	if len(t.SubjectKeyId) == 0 {
		t.SubjectKeyId = []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	}
	der, err := x509.CreateCertificate(rand.Reader, &t, &parent, pub, throwawayKey)
	if err != nil {
		return err
	}
	return certlint.Certificate(der)
}

// lintProfile lints the certificate a profile would issue for a sample CN.
func lintProfile(p *Profile, issuer *x509.Certificate, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	sb, err := serials.next(now)
	if err != nil {
		return err
	}
	tmpl := p.template(sampleCN(p), nil, sb, now.Add(-Backdate), now.Add(p.Config.DefaultTTL))
	if err := lintWithThrowawayIssuer(tmpl, &key.PublicKey, issuer); err != nil {
		return fmt.Errorf("template lint: %w", err)
	}
	return nil
}

func sampleCN(p *Profile) string {
	for _, r := range p.cn {
		switch {
		case r.exact != "":
			return r.exact
		case r.suffix != "":
			return "lint" + r.suffix
		}
	}
	return "lint.example"
}
