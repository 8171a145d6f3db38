package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/x509util"

	"github.com/lanyard/lanyard/internal/clock"
)

// The admin credential marker. Init and Import issue the admin mTLS client
// certificate with Subject CN AdminCommonName and OU AdminOrganizationalUnit
// (and ExtKeyUsage clientAuth); IsAdminCertificate looks for exactly that.
// Leaf profiles must never put AdminOrganizationalUnit in a certificate.
const (
	AdminCommonName         = "lanyard-admin"
	AdminOrganizationalUnit = "lanyard admin"
)

// DefaultTLSValidity is the validity of ServerTLSCertificate and
// ClientTLSCertificate certificates when the ttl passed is zero or negative.
const DefaultTLSValidity = 30 * 24 * time.Hour

// tlsBackdate is how far TLS helper certificates are backdated to tolerate
// clock skew.
const tlsBackdate = time.Minute

// LoadOptions tells Load where the CA is and how to open its intermediate key.
type LoadOptions struct {
	// Dir is the CA folder.
	Dir string
	// Passphrase decrypts the intermediate key when it is encrypted.
	Passphrase []byte
	// KMS, when set, is a go.step.sm/crypto/kms URI (e.g. "softkms:") and the
	// intermediate key is loaded through that KMS: the key is named by
	// Dir/intermediate.key.uri, or, for softkms without that file, is the
	// file Dir/intermediate.key. When KMS is empty but
	// Dir/intermediate.key.uri exists, the KMS type is taken from that URI.
	KMS string
	// Now is the CA's clock: the start of a certificate whose template
	// leaves NotBefore zero, and of TLS and admin certificates asked for
	// at a zero time (nil: the system clock).
	Now func() time.Time
}

// Authority is a loaded CA: its roots, its intermediate certificate(s) and
// the intermediate signer. It is immutable after Load and safe for
// concurrent use.
type Authority struct {
	roots        []*x509.Certificate
	chain        []*x509.Certificate // chain[0] is the issuing intermediate
	intermediate *x509.Certificate
	signer       crypto.Signer
	sigAlg       x509.SignatureAlgorithm
	rootsPEM     []byte
	chainPEM     []byte
	fingerprint  string
	closer       io.Closer
	leaf         *leafFixed // shared encodings for SignLeaf
	retired      []*x509.Certificate
	// retiredSigners are the retired intermediates whose keys are kept.
	retiredSigners []*retiredSigner
	// cross is the new root's cross-certificate during a root rotation,
	// crossInt the issuing intermediate's (both issued by the old root).
	cross, crossInt *x509.Certificate
	// retiredRoots are the old roots of finished root rotations.
	retiredRoots []*x509.Certificate
	now          func() time.Time
}

// Load reads the CA in opts.Dir: root.crt (plus roots.pem if present),
// intermediate.crt and the intermediate key, from a PEM file or through a
// KMS. It never needs the root key. It checks that the intermediate chains
// to a root and that the key matches the intermediate certificate.
func Load(opts LoadOptions) (*Authority, error) {
	if opts.Dir == "" {
		return nil, errors.New("ca: load: no CA folder given")
	}
	if _, err := replayJournal(opts.Dir); err != nil {
		return nil, err
	}
	p := PathsIn(opts.Dir)

	roots, err := readRoots(p)
	if err != nil {
		return nil, err
	}
	chain, err := readCertFile(p.IntermediateCert)
	if err != nil {
		return nil, err
	}

	retired, err := readRetired(opts.Dir)
	if err != nil {
		return nil, err
	}
	cross, err := readCross(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := checkCross(cross, roots, chain[0]); err != nil {
		return nil, err
	}
	retiredRoots, err := readRetiredRoots(opts.Dir)
	if err != nil {
		return nil, err
	}
	signer, closer, err := loadSigner(opts, p)
	if err != nil {
		return nil, err
	}
	a, err := newAuthority(roots, chain, signer, closer)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return nil, fmt.Errorf("ca: load %s: %w", opts.Dir, err)
	}
	a.retired, a.retiredRoots = retired, retiredRoots
	a.now = clock.Or(opts.Now)
	if len(cross) > 0 {
		a.cross = cross[0]
		a.rootsPEM = append(a.rootsPEM, encodeCertificates(a.cross)...)
		if len(cross) > 1 {
			a.crossInt = cross[1]
		}
	}
	if a.retiredSigners, err = loadRetiredSigners(opts.Dir, retired, opts.Passphrase); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// checkCross checks a root rotation's cross-certificates (CrossCertFile):
// the first has the first root's subject and key, the second (if any)
// the issuing intermediate's, and both are issued by another root of the
// folder (the old one).
func checkCross(cross, roots []*x509.Certificate, issuing *x509.Certificate) error {
	if len(cross) == 0 {
		return nil
	}
	if len(cross) > 2 {
		return fmt.Errorf("%w: %s holds %d certificates, want the new root's and the new intermediate's cross-certificates", ErrNotChained, CrossCertFile, len(cross))
	}
	for i, want := range []*x509.Certificate{roots[0], issuing}[:len(cross)] {
		c := cross[i]
		if !bytes.Equal(c.RawSubject, want.RawSubject) || !bytes.Equal(c.RawSubjectPublicKeyInfo, want.RawSubjectPublicKeyInfo) {
			return fmt.Errorf("%w: %s: certificate %d is not a cross-certificate of %q", ErrNotChained, CrossCertFile, i+1, want.Subject)
		}
		if !slices.ContainsFunc(roots[1:], func(r *x509.Certificate) bool { return c.CheckSignatureFrom(r) == nil }) {
			return fmt.Errorf("%w: %s: the cross-certificate of %q is not issued by the old root (%s)", ErrNotChained, CrossCertFile, want.Subject, RootsFile)
		}
	}
	return nil
}

// loadSigner opens the intermediate key of a CA folder.
func loadSigner(opts LoadOptions, p *Paths) (crypto.Signer, io.Closer, error) {
	uriFile := filepath.Join(p.Dir, IntermediateKeyURIFile)
	var keyURI string
	if b, err := os.ReadFile(uriFile); err == nil {
		keyURI = strings.TrimSpace(string(b))
		if keyURI == "" {
			return nil, nil, fmt.Errorf("ca: %s is empty", uriFile)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("ca: read %s: %w", uriFile, err)
	}
	if opts.KMS != "" || keyURI != "" {
		return kmsLoadSigner(p.Dir, opts.KMS, keyURI, opts.Passphrase)
	}
	data, err := readFile(p.IntermediateKey)
	if err != nil {
		return nil, nil, err
	}
	s, err := parseSigner(p.IntermediateKey, data, opts.Passphrase)
	if err != nil {
		return nil, nil, err
	}
	return s, nil, nil
}

// newAuthority checks the parts of a CA and precomputes what signing needs.
func newAuthority(roots, chain []*x509.Certificate, signer crypto.Signer, closer io.Closer) (*Authority, error) {
	if len(roots) == 0 || len(chain) == 0 {
		return nil, errors.New("ca: a root and an intermediate certificate are needed")
	}
	for _, r := range roots {
		if !r.IsCA || !r.BasicConstraintsValid {
			return nil, fmt.Errorf("ca: root %q is not a CA certificate", r.Subject)
		}
	}
	intermediate := chain[0]
	if !intermediate.IsCA || !intermediate.BasicConstraintsValid {
		return nil, fmt.Errorf("%w: %q is not a CA certificate", ErrNotChained, intermediate.Subject)
	}
	if intermediate.KeyUsage != 0 && intermediate.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %q lacks keyUsage keyCertSign", ErrNotChained, intermediate.Subject)
	}
	// Each chain certificate is signed by the next; the last by a root.
	for i := 0; i < len(chain)-1; i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("%w: %q is not signed by %q: %v", ErrNotChained, chain[i].Subject, chain[i+1].Subject, err)
		}
	}
	last := chain[len(chain)-1]
	chained := false
	for _, r := range roots {
		if last.CheckSignatureFrom(r) == nil {
			chained = true
			break
		}
	}
	if !chained {
		return nil, fmt.Errorf("%w: %q is not signed by the root %q", ErrNotChained, last.Subject, roots[0].Subject)
	}
	if !publicKeysEqual(intermediate.PublicKey, signer.Public()) {
		return nil, fmt.Errorf("%w: the intermediate key is not the key of %q", ErrKeyMismatch, intermediate.Subject)
	}
	sigAlg, err := signatureAlgorithm(signer.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(roots[0].Raw)
	leaf, err := newLeafFixed(intermediate, sigAlg)
	if err != nil {
		return nil, err
	}
	return &Authority{
		leaf:         leaf,
		roots:        roots,
		chain:        chain,
		intermediate: intermediate,
		signer:       signer,
		sigAlg:       sigAlg,
		rootsPEM:     encodeCertificates(roots...),
		chainPEM:     encodeCertificates(chain...),
		fingerprint:  hex.EncodeToString(sum[:]),
		closer:       closer,
		now:          clock.Or(nil),
	}, nil
}

// Close releases the KMS the intermediate key was loaded through, if any.
func (a *Authority) Close() error {
	var errs []error
	for _, r := range a.retiredSigners {
		if r.closer != nil {
			errs = append(errs, r.closer.Close())
		}
	}
	if a.closer != nil {
		if err := a.closer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("ca: close KMS: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Roots returns the trusted roots: root.crt first, then any extra roots of
// roots.pem (during a root rotation, old and new). The slice is a copy; the
// certificates must not be modified.
func (a *Authority) Roots() []*x509.Certificate { return slices.Clone(a.roots) }

// Intermediate returns the issuing intermediate certificate.
func (a *Authority) Intermediate() *x509.Certificate { return a.intermediate }

// Chain returns the intermediate certificates, issuing intermediate first,
// without the root. The slice is a copy.
func (a *Authority) Chain() []*x509.Certificate { return slices.Clone(a.chain) }

// Retired returns the intermediates a rotation retired (RetiredDir),
// oldest first: certificates they issued are still valid and may renew.
// The slice is a copy.
func (a *Authority) Retired() []*x509.Certificate { return slices.Clone(a.retired) }

// RootsPEM returns what /roots.pem serves: the roots as a PEM bundle
// and, during a root rotation, the new root's cross-certificate from the
// old one after them (hosts that pinned the old root accept the new one
// only with it). The IAM Roles Anywhere trust anchor holds Roots.
func (a *Authority) RootsPEM() []byte { return slices.Clone(a.rootsPEM) }

// Cross returns, during a root rotation, the new root's cross-certificate
// issued by the old root (CrossCertFile); nil otherwise.
func (a *Authority) Cross() *x509.Certificate { return a.cross }

// RetiredRoots returns the old roots of finished root rotations: no
// certificate chains to them any more, and a trust anchor that still
// holds one should drop it. The slice is a copy.
func (a *Authority) RetiredRoots() []*x509.Certificate { return slices.Clone(a.retiredRoots) }

// ChainPEM returns the intermediates as a PEM bundle (Certbot's chain.pem).
func (a *Authority) ChainPEM() []byte { return slices.Clone(a.chainPEM) }

// Fingerprint returns the hex SHA-256 of the first root's DER, lower-case
// without colons (what `lanyard enroll --fingerprint` takes).
func (a *Authority) Fingerprint() string { return a.fingerprint }

// SignatureAlgorithm returns the algorithm certificates and CRLs are signed
// with: ECDSA-SHA256 (P-256), ECDSA-SHA384 (P-384) or SHA256-RSA (RSA).
func (a *Authority) SignatureAlgorithm() x509.SignatureAlgorithm { return a.sigAlg }

// Sign issues a certificate from tmpl for pub, signed by the intermediate,
// and returns its DER and its parsed form. tmpl is not modified; it must
// have a NotAfter. Sign fills in, on its copy:
//   - SerialNumber, when nil: 128 random bits;
//   - NotBefore, when zero: now; raised to the intermediate's NotBefore if earlier;
//   - NotAfter: capped at the intermediate's NotAfter;
//   - SubjectKeyId, when empty: leftmost 160 bits of the SHA-256 of the
//     subject public key (RFC 7093 section 2 method 1), as Go sets none on leaves;
//   - AuthorityKeyId: the intermediate's SubjectKeyId;
//   - SignatureAlgorithm: the intermediate's (see SignatureAlgorithm).
//
// Everything else (names, key usages, extensions) is the caller's.
func (a *Authority) Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (der []byte, cert *x509.Certificate, err error) {
	if tmpl == nil {
		return nil, nil, errors.New("ca: sign: no certificate template")
	}
	if pub == nil {
		return nil, nil, errors.New("ca: sign: no public key")
	}
	if tmpl.NotAfter.IsZero() {
		return nil, nil, errors.New("ca: sign: the template has no NotAfter")
	}
	t := *tmpl
	if t.SerialNumber == nil {
		if t.SerialNumber, err = randomSerial(); err != nil {
			return nil, nil, err
		}
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = a.now()
	}
	if t.NotBefore.Before(a.intermediate.NotBefore) {
		t.NotBefore = a.intermediate.NotBefore
	}
	if t.NotAfter.After(a.intermediate.NotAfter) {
		t.NotAfter = a.intermediate.NotAfter
	}
	if !t.NotAfter.After(t.NotBefore) {
		return nil, nil, fmt.Errorf("ca: sign: empty validity %s – %s (the intermediate is valid until %s)",
			t.NotBefore.UTC().Format(time.RFC3339), t.NotAfter.UTC().Format(time.RFC3339),
			a.intermediate.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(t.SubjectKeyId) == 0 {
		if t.SubjectKeyId, err = subjectKeyID(pub); err != nil {
			return nil, nil, fmt.Errorf("ca: sign: %w", err)
		}
	}
	t.AuthorityKeyId = a.intermediate.SubjectKeyId
	t.SignatureAlgorithm = a.sigAlg
	der, err = x509.CreateCertificate(rand.Reader, &t, a.intermediate, pub, a.signer)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign certificate for %q: %w", t.Subject.CommonName, err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parse signed certificate for %q: %w", t.Subject.CommonName, err)
	}
	return der, cert, nil
}

// ServerTLSCertificate issues, through Sign, a TLS server certificate for
// names (DNS names and IP addresses; the first is also the CN) with a fresh
// P-256 key, valid from now (backdated a minute) for ttl (DefaultTLSValidity
// when ttl <= 0). The tls.Certificate holds the leaf then the intermediates,
// and Leaf is set.
func (a *Authority) ServerTLSCertificate(names []string, ttl time.Duration, now time.Time) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, errors.New("ca: server certificate: no names")
	}
	dns, ips, emails, uris := x509util.SplitSANs(names)
	if len(emails) > 0 {
		return nil, fmt.Errorf("ca: server certificate: %q is not a DNS name or IP address", emails[0])
	}
	if len(uris) > 0 {
		return nil, fmt.Errorf("ca: server certificate: %q is not a DNS name or IP address", uris[0])
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	return a.tlsCertificate(tmpl, ttl, now)
}

// ClientTLSCertificate issues, through Sign, a TLS client certificate
// (ExtKeyUsage clientAuth) with Subject CN cn and a fresh P-256 key, valid
// from now (backdated a minute) for ttl (DefaultTLSValidity when ttl <= 0).
// When cn is AdminCommonName the certificate also carries the admin marker
// (OU AdminOrganizationalUnit), so this is how the admin credential is
// issued and renewed.
func (a *Authority) ClientTLSCertificate(cn string, ttl time.Duration, now time.Time) (*tls.Certificate, error) {
	if cn == "" {
		return nil, errors.New("ca: client certificate: empty common name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if cn == AdminCommonName {
		tmpl.Subject.OrganizationalUnit = []string{AdminOrganizationalUnit}
	}
	return a.tlsCertificate(tmpl, ttl, now)
}

// AdminCertificate signs, through Sign, an admin credential certificate
// for pub (a key its holder made: rotation and renewal over the network),
// with the admin marker (see IsAdminCertificate), valid from now
// (backdated a minute) for ttl (AdminValidity when ttl <= 0).
func (a *Authority) AdminCertificate(pub crypto.PublicKey, ttl time.Duration, now time.Time) ([]byte, *x509.Certificate, error) {
	if ttl <= 0 {
		ttl = AdminValidity
	}
	if now.IsZero() {
		now = a.now()
	}
	return a.Sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: AdminCommonName, OrganizationalUnit: []string{AdminOrganizationalUnit}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore:   now.Add(-tlsBackdate),
		NotAfter:    now.Add(ttl),
	}, pub)
}

// tlsCertificate signs tmpl for a fresh P-256 key.
func (a *Authority) tlsCertificate(tmpl *x509.Certificate, ttl time.Duration, now time.Time) (*tls.Certificate, error) {
	if ttl <= 0 {
		ttl = DefaultTLSValidity
	}
	if now.IsZero() {
		now = a.now()
	}
	key, err := keyutil.GenerateSigner("EC", "P-256", 0)
	if err != nil {
		return nil, fmt.Errorf("ca: generate TLS key: %w", err)
	}
	tmpl.NotBefore = now.Add(-tlsBackdate)
	tmpl.NotAfter = now.Add(ttl)
	der, leaf, err := a.Sign(tmpl, key.Public())
	if err != nil {
		return nil, err
	}
	chain := make([][]byte, 0, 2+len(a.chain))
	chain = append(chain, der)
	for _, c := range a.chain {
		chain = append(chain, c.Raw)
	}
	if a.crossInt != nil {
		// During a root rotation a client that trusts only the old root
		// verifies this chain through the intermediate's cross-certificate
		// (leaf, intermediate, old root: the root cross-certificate would
		// make the path one CA longer than the old root's pathlen 1
		// allows).
		chain = append(chain, a.crossInt.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// IsAdminCertificate reports whether cert carries the admin credential
// marker: Subject CN AdminCommonName, an OU AdminOrganizationalUnit and
// ExtKeyUsage clientAuth. It checks neither the chain nor revocation: it
// is not an authorization check. Admin checks go through package
// admincred (Checker.Check: marker, recorded in the store, not revoked).
func IsAdminCertificate(cert *x509.Certificate) bool {
	return cert != nil &&
		cert.Subject.CommonName == AdminCommonName &&
		slices.Contains(cert.Subject.OrganizationalUnit, AdminOrganizationalUnit) &&
		slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
}
