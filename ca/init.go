package ca

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/lanyard/lanyard/internal/clock"
)

// Defaults of InitOptions.
const (
	DefaultName                 = "lanyard"
	DefaultRootValidity         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 5 * 365 * 24 * time.Hour
	// AdminValidity is the validity of every admin credential (Init, Import,
	// `lanyard admin rotate-cert`, admin renewal; capped at the
	// intermediate's NotAfter). The admin certificate grants full control
	// of the CA, so its life bounds what a leaked key is worth even if
	// nobody revokes it: 90 days, as Let's Encrypt chose for its leaves
	// (short enough to limit a leak to one quarter, long enough that
	// rotating it stays a quarterly chore that the CLI reminds of a week
	// ahead).
	AdminValidity = 90 * 24 * time.Hour
)

// caBackdate is how far CA certificates are backdated to tolerate clock skew.
const caBackdate = 5 * time.Minute

// InitOptions configures Init.
type InitOptions struct {
	// Dir is the CA folder, e.g. ./.lanyard/ca; created 0700 if missing.
	Dir string
	// Name is the organisation and CN prefix (default "lanyard"): the root
	// CN is "<Name> Root CA", the intermediate CN "<Name> Intermediate CA".
	Name string
	// KeyType is one of "P-256" (default), "P-384", "RSA-2048", "RSA-3072"
	// or "RSA-4096"; root and intermediate keys are of this type.
	KeyType string
	// Passphrase, when non-nil, encrypts the root and intermediate keys
	// (PKCS#8, PBES2 with AES-256-CBC). It must not be empty then. The admin
	// client key is never encrypted: TLS clients read it unattended.
	Passphrase []byte
	// RootKeyPath is where the root key is written; default Dir/root.key.
	// It may be outside Dir (kept offline); its folder is created 0700.
	RootKeyPath string
	// RootValidity is the root's validity (default 10 years).
	RootValidity time.Duration
	// IntermediateValidity is the intermediate's validity (default 5 years,
	// capped at the root's NotAfter).
	IntermediateValidity time.Duration
	// KMS, when set, is a go.step.sm/crypto/kms URI through which the
	// intermediate key is created, and its key URI is stored in
	// Dir/intermediate.key.uri for Load. With "softkms:" the key is still
	// the file Dir/intermediate.key (encrypted with Passphrase), referenced
	// relative to Dir. With another KMS type the URI also names the key to
	// create, and that type must be compiled into the binary.
	KMS string
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Init creates a new CA in opts.Dir: a root, an intermediate signed by it and
// the admin client credential (CN "lanyard-admin", see IsAdminCertificate,
// issued by the intermediate for AdminValidity). It refuses to overwrite any
// existing CA file (ErrExists); on failure nothing it wrote is left behind.
// Keys are written 0600 and certificates 0644, atomically.
func Init(opts InitOptions) (*Paths, error) {
	if opts.Dir == "" {
		return nil, errors.New("ca: init: no CA folder given")
	}
	spec, err := parseKeyType(opts.KeyType)
	if err != nil {
		return nil, err
	}
	if opts.Passphrase != nil && len(opts.Passphrase) == 0 {
		return nil, errors.New("ca: init: the passphrase is empty")
	}
	name := opts.Name
	if name == "" {
		name = DefaultName
	}
	rootValidity, intValidity := opts.RootValidity, opts.IntermediateValidity
	if rootValidity <= 0 {
		rootValidity = DefaultRootValidity
	}
	if intValidity <= 0 {
		intValidity = DefaultIntermediateValidity
	}
	nowFn := clock.Or(opts.Now)

	p := PathsIn(opts.Dir)
	if opts.RootKeyPath != "" {
		p.RootKey = opts.RootKeyPath
	}
	if opts.KMS != "" {
		p.IntermediateKeyURI = filepath.Join(opts.Dir, IntermediateKeyURIFile)
	}
	if err := refuseExisting(p.RootCert, p.RootKey, p.IntermediateCert, p.IntermediateKey,
		filepath.Join(opts.Dir, IntermediateKeyURIFile), p.AdminCert, p.AdminKey); err != nil {
		return nil, err
	}

	now := nowFn()
	rootKey, err := spec.generate()
	if err != nil {
		return nil, err
	}
	rootCert, err := createCACert(caTemplate{
		cn:        name + " Root CA",
		org:       name,
		notBefore: now.Add(-caBackdate),
		notAfter:  now.Add(rootValidity),
		pathLen:   1,
	}, nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: init: root certificate: %w", err)
	}

	var (
		intSigner crypto.Signer
		intKeyPEM []byte
		keyURI    string
	)
	if opts.KMS != "" {
		k, err := kmsCreateKey(opts.KMS, IntermediateKeyFile, spec, opts.Passphrase, now)
		if err != nil {
			return nil, err
		}
		defer k.closer.Close()
		intSigner, intKeyPEM, keyURI = k.signer, k.pem, k.uri
	} else {
		if intSigner, err = spec.generate(); err != nil {
			return nil, err
		}
		if intKeyPEM, err = marshalKey(intSigner, opts.Passphrase); err != nil {
			return nil, err
		}
	}
	intNotAfter := now.Add(intValidity)
	if intNotAfter.After(rootCert.NotAfter) {
		intNotAfter = rootCert.NotAfter
	}
	intCert, err := createCACert(caTemplate{
		cn:        name + " Intermediate CA",
		org:       name,
		notBefore: now.Add(-caBackdate),
		notAfter:  intNotAfter,
		pathLen:   0,
	}, rootCert, intSigner.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: init: intermediate certificate: %w", err)
	}
	a, err := newAuthority([]*x509.Certificate{rootCert}, []*x509.Certificate{intCert}, intSigner, nil)
	if err != nil {
		return nil, fmt.Errorf("ca: init: %w", err)
	}
	admin, err := a.ClientTLSCertificate(AdminCommonName, AdminValidity, now)
	if err != nil {
		return nil, fmt.Errorf("ca: init: admin credential: %w", err)
	}
	rootKeyPEM, err := marshalKey(rootKey, opts.Passphrase)
	if err != nil {
		return nil, err
	}

	files := []caFile{
		{p.RootKey, rootKeyPEM, 0o600},
		{p.RootCert, encodeCertificates(rootCert), 0o644},
	}
	if intKeyPEM != nil {
		files = append(files, caFile{p.IntermediateKey, intKeyPEM, 0o600})
	} else {
		p.IntermediateKey = ""
	}
	if keyURI != "" {
		files = append(files, caFile{p.IntermediateKeyURI, []byte(keyURI + "\n"), 0o600})
	}
	files = append(files, caFile{p.IntermediateCert, encodeCertificates(intCert), 0o644})
	if err := writeCA(p, admin, files, filepath.Dir(p.RootKey)); err != nil {
		return nil, err
	}
	return p, nil
}

// Import creates a CA folder dir from an existing root certificate, an
// intermediate certificate (PEM; further intermediates may follow it, leaf
// first) and the intermediate's PEM private key (PKCS#1, SEC 1 or PKCS#8,
// plain or encrypted). passphrase decrypts the key if it is encrypted, and,
// when non-nil, encrypts the copy written to dir/intermediate.key.
// rootCertPEM may hold several roots: the first goes to root.crt, the others
// to roots.pem. Import checks that the intermediate chains to the root, that
// the key matches it and that it is not expired, then issues the admin
// credential. It refuses to overwrite an existing CA (ErrExists). now is
// the clock's time, against which expiry is checked and from which the admin
// credential is valid. The returned Paths has no RootKey.
func Import(dir string, rootCertPEM, intCertPEM, intKeyPEM []byte, passphrase []byte, now time.Time) (*Paths, error) {
	return importCA(dir, "the root certificate", "the intermediate certificate", "the intermediate key",
		rootCertPEM, intCertPEM, intKeyPEM, passphrase, now)
}

// ImportFiles is Import reading the three files, naming them in errors.
func ImportFiles(dir, rootCertPath, intCertPath, intKeyPath string, passphrase []byte, now time.Time) (*Paths, error) {
	rootPEM, err := readFile(rootCertPath)
	if err != nil {
		return nil, err
	}
	intPEM, err := readFile(intCertPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(intKeyPath)
	if err != nil {
		return nil, err
	}
	return importCA(dir, rootCertPath, intCertPath, intKeyPath, rootPEM, intPEM, keyPEM, passphrase, now)
}

// importCA is Import with names for the three inputs.
func importCA(dir, rootName, intName, keyName string, rootCertPEM, intCertPEM, intKeyPEM, passphrase []byte, now time.Time) (*Paths, error) {
	if dir == "" {
		return nil, errors.New("ca: import: no CA folder given")
	}
	if passphrase != nil && len(passphrase) == 0 {
		return nil, errors.New("ca: import: the passphrase is empty")
	}
	roots, err := parseCertificates(rootName, rootCertPEM)
	if err != nil {
		return nil, err
	}
	for _, r := range roots {
		if err := r.CheckSignatureFrom(r); err != nil {
			return nil, fmt.Errorf("ca: import: %s: %q is not a self-signed CA certificate: %w", rootName, r.Subject, err)
		}
	}
	chain, err := parseCertificates(intName, intCertPEM)
	if err != nil {
		return nil, err
	}
	signer, err := parseSigner(keyName, intKeyPEM, passphrase)
	if err != nil {
		return nil, err
	}
	a, err := newAuthority(roots, chain, signer, nil)
	if err != nil {
		return nil, fmt.Errorf("ca: import: %w", err)
	}
	for _, c := range append(roots[:1:1], chain...) {
		if now.After(c.NotAfter) {
			return nil, fmt.Errorf("ca: import: %q expired on %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	keyPEM, err := marshalKey(signer, passphrase)
	if err != nil {
		return nil, err
	}

	p := PathsIn(dir)
	p.RootKey = ""
	if err := refuseExisting(p.RootCert, p.Roots, p.IntermediateCert, p.IntermediateKey,
		filepath.Join(dir, IntermediateKeyURIFile), p.AdminCert, p.AdminKey); err != nil {
		return nil, err
	}
	admin, err := a.ClientTLSCertificate(AdminCommonName, AdminValidity, now)
	if err != nil {
		return nil, fmt.Errorf("ca: import: admin credential: %w", err)
	}
	files := []caFile{
		{p.RootCert, encodeCertificates(roots[0]), 0o644},
	}
	if len(roots) > 1 {
		files = append(files, caFile{p.Roots, encodeCertificates(roots[1:]...), 0o644})
	}
	files = append(files,
		caFile{p.IntermediateKey, keyPEM, 0o600},
		caFile{p.IntermediateCert, encodeCertificates(chain...), 0o644},
	)
	if err := writeCA(p, admin, files, ""); err != nil {
		return nil, err
	}
	return p, nil
}

// caFile is one file writeCA writes.
type caFile struct {
	path string
	data []byte
	perm os.FileMode
}

// writeCA creates the CA folder (and extraDir, the root key's folder, if
// set) 0700 and writes files plus the admin credential, all or nothing.
func writeCA(p *Paths, admin *tls.Certificate, files []caFile, extraDir string) (err error) {
	for _, d := range []string{p.Dir, extraDir} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("ca: create %s: %w", d, err)
		}
	}
	adminKeyPEM, err := marshalKey(admin.PrivateKey, nil)
	if err != nil {
		return err
	}
	files = append(files,
		caFile{p.AdminKey, adminKeyPEM, 0o600},
		caFile{p.AdminCert, encodeCertificates(admin.Leaf), 0o644},
	)
	var w fileWriter
	defer func() {
		if err != nil {
			w.rollback()
		}
	}()
	for _, f := range files {
		if err = w.create(f.path, f.data, f.perm); err != nil {
			return err
		}
	}
	return w.sync()
}

// caTemplate describes a CA certificate.
type caTemplate struct {
	cn, org             string
	notBefore, notAfter time.Time
	pathLen             int
}

// createCACert signs a CA certificate for pub with signer, issued by parent
// (self-signed when parent is nil), as IAM Roles Anywhere wants it: v3,
// critical basicConstraints CA:TRUE with the given pathlen, critical keyUsage
// keyCertSign|cRLSign|digitalSignature, SKI and AKI, SHA-256+ signature.
func createCACert(ct caTemplate, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	sigAlg, err := signatureAlgorithm(signer.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: ct.cn, Organization: []string{ct.org}},
		NotBefore:             ct.notBefore,
		NotAfter:              ct.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            ct.pathLen,
		MaxPathLenZero:        ct.pathLen == 0,
		SubjectKeyId:          ski,
		SignatureAlgorithm:    sigAlg,
	}
	if parent == nil {
		parent = tmpl
		tmpl.AuthorityKeyId = ski // Go copies the parent's SKI only when not self-signed
	} else {
		tmpl.AuthorityKeyId = parent.SubjectKeyId
	}
	cert, err := x509util.CreateCertificate(tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return cert, nil
}
