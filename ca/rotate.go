package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.step.sm/crypto/kms/apiv1"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/clock"
)

// RotateOptions configures RotateIntermediate.
type RotateOptions struct {
	// Dir is the CA folder.
	Dir string
	// RootKeyPath is the root key (default Dir/root.key); rotation is the
	// one operation besides Init that needs it.
	RootKeyPath string
	// Passphrase decrypts the root key and encrypts a new intermediate key
	// file (as Init does).
	Passphrase []byte
	// Validity of the new intermediate (default DefaultIntermediateValidity,
	// capped at the root's NotAfter).
	Validity time.Duration
	// DryRun checks everything and says what would happen; nothing is
	// created (no key in a token either).
	DryRun bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// RotateResult says what RotateIntermediate did (or would do).
type RotateResult struct {
	// Old is the intermediate retired; New the one issuing from now on
	// (nil in a dry run).
	Old, New *x509.Certificate
	// RetiredCert is where Old now lives (RetiredDir/<serial>.crt).
	RetiredCert string
	// KeyType of the new key, and KeyStore: "file", "softkms" or the KMS
	// URI of the token the key was created in (without the PIN).
	KeyType, KeyStore string
	DryRun            bool
}

// RotateIntermediate replaces the issuing intermediate of the CA folder
// with a new one under the same root: a new key of the same type, kept
// where the old one was (a key file, softkms, or a new object in the same
// PKCS#11 token), and a certificate signed by the root key. The old
// intermediate and its key (or key URI) move to RetiredDir/<serial>.*:
// certificates it issued stay valid to their end, the server keeps
// accepting them for renewal (onto the new intermediate) and its key keeps
// signing their CRL until the last one has expired. The files change in
// one journaled commit (all or nothing, even across a crash). The server
// picks the new intermediate up when it is restarted.
func RotateIntermediate(opts RotateOptions) (*RotateResult, error) {
	if opts.Dir == "" {
		return nil, errors.New("ca: rotate: no CA folder given")
	}
	nowFn := clock.Or(opts.Now)
	now := nowFn()
	p := PathsIn(opts.Dir)
	if opts.RootKeyPath != "" {
		p.RootKey = opts.RootKeyPath
	}
	st, err := ReadState(opts.Dir)
	if err != nil {
		return nil, err
	}
	if st.Cross != nil {
		return nil, fmt.Errorf("%w: rotate the intermediate after `lanyard ca rotate-root --finish` (a trust anchor holds two CRLs: the old and the new root's intermediates use them)", ErrRotationInProgress)
	}
	for _, r := range st.Retired {
		if retiredKeyKept(opts.Dir, r) {
			serial := lanyardv1.FormatSerial(r.SerialNumber)
			return nil, fmt.Errorf("%w: %q (serial %s) keeps its key; IAM Roles Anywhere holds two CRLs per trust anchor, the current "+
				"intermediate's and one retired one's. Once its certificates have expired (lanyard ca status), destroy its key "+
				"(lanyard ca destroy-retired-key %s), then rotate", ErrRetiredStillSigning, r.Subject.CommonName, serial, serial)
		}
	}
	root := st.Roots[0]
	rootKeyPEM, err := readFile(p.RootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate: the root key is needed (--root-key): %w", err)
	}
	rootKey, err := parseSigner(p.RootKey, rootKeyPEM, opts.Passphrase)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(rootKey.Public(), root.PublicKey) {
		return nil, fmt.Errorf("%w: %s is not the key of the root %q", ErrKeyMismatch, p.RootKey, root.Subject)
	}
	old := st.Current
	spec, err := specOf(old.PublicKey)
	if err != nil {
		return nil, err
	}
	oldSerial := lanyardv1.FormatSerial(old.SerialNumber)
	res := &RotateResult{Old: old, KeyType: spec.name, DryRun: opts.DryRun,
		RetiredCert: filepath.Join(opts.Dir, RetiredDir, oldSerial+".crt")}

	kp, err := planIntermediateKey(opts.Dir)
	if err != nil {
		return nil, err
	}
	res.KeyStore = kp.keyStore
	validity := opts.Validity
	if validity <= 0 {
		validity = DefaultIntermediateValidity
	}
	notAfter := now.Add(validity)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	if !notAfter.After(now.Add(24 * time.Hour)) {
		return nil, fmt.Errorf("ca: rotate: the root %q expires %s: rotate the root first", root.Subject, root.NotAfter.UTC().Format(time.RFC3339))
	}
	if opts.DryRun {
		return res, nil
	}

	// The new key and certificate.
	nk, err := kp.newKey(spec, opts.Passphrase, now)
	if err != nil {
		return nil, err
	}
	if nk.closer != nil {
		defer nk.closer.Close()
	}
	signer, keyPEM, keyURI := nk.signer, nk.pem, nk.uri
	org := "lanyard"
	if len(old.Subject.Organization) > 0 {
		org = old.Subject.Organization[0]
	}
	cert, err := createCACert(caTemplate{
		cn:        org + " Intermediate CA " + now.UTC().Format("2006-01-02T15:04Z"),
		org:       org,
		notBefore: now.Add(-caBackdate),
		notAfter:  notAfter,
		pathLen:   0,
	}, root, signer.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate: new intermediate: %w", err)
	}
	if _, err := newAuthority(st.Roots, []*x509.Certificate{cert}, signer, nil); err != nil {
		return nil, fmt.Errorf("ca: rotate: %w", err)
	}

	// Retire the old one and install the new one in one journaled commit
	// (commitChanges): a failure or a crash never leaves a mix.
	files, err := kp.retireFiles(opts.Dir, old)
	if err != nil {
		return nil, err
	}
	var changes []fileChange
	for _, f := range files {
		if err := refuseExisting(f.path); err != nil {
			return nil, err
		}
		changes = append(changes, fileChange{path: f.path, data: f.data, perm: f.perm})
	}
	if keyPEM != nil {
		changes = append(changes, fileChange{path: filepath.Join(opts.Dir, IntermediateKeyFile), data: keyPEM, perm: 0o600})
	}
	if keyURI != "" {
		changes = append(changes, fileChange{path: kp.uriFile, data: []byte(keyURI + "\n"), perm: 0o600})
	}
	changes = append(changes, fileChange{path: p.IntermediateCert, data: encodeCertificates(cert), perm: 0o644})
	if err := commitChanges(opts.Dir, changes); err != nil {
		return nil, fmt.Errorf("ca: rotate: %w", err)
	}
	os.Remove(filepath.Join(opts.Dir, IntermediateKeyFile+".new"))
	res.New = cert
	return res, nil
}

// intermediateKeyPlan says where the issuing intermediate's key is, and
// so where its successor's key goes: a key file, softkms, or a new object
// in the same PKCS#11 token. Making it changes nothing.
type intermediateKeyPlan struct {
	// uriFile is Dir/intermediate.key.uri; oldKeyURI its content ("" for
	// a plain key file).
	uriFile, oldKeyURI string
	// kmsURI is the KMS the new key is created through ("" for a plain
	// key file, "softkms:", or the token URI without id and object).
	kmsURI string
	// keyStore is what RotateResult.KeyStore says.
	keyStore string
}

// planIntermediateKey reads where the intermediate key of the CA folder
// dir is.
func planIntermediateKey(dir string) (*intermediateKeyPlan, error) {
	kp := &intermediateKeyPlan{uriFile: filepath.Join(dir, IntermediateKeyURIFile), keyStore: "file"}
	if b, err := os.ReadFile(kp.uriFile); err == nil {
		kp.oldKeyURI = strings.TrimSpace(string(b))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: rotate: %w", err)
	}
	if kp.oldKeyURI == "" {
		return kp, nil
	}
	t, err := kmsType(kp.oldKeyURI)
	if err != nil {
		return nil, err
	}
	switch t {
	case apiv1.SoftKMS:
		kp.kmsURI, kp.keyStore = "softkms:", "softkms"
	case apiv1.PKCS11:
		kp.kmsURI = pkcs11TokenURI(kp.oldKeyURI)
		kp.keyStore, _, _ = strings.Cut(kp.kmsURI, "?")
	default:
		return nil, fmt.Errorf("ca: rotate: KMS type %s: give the new key's URI by hand (only file, softkms and pkcs11 keys rotate by themselves)", t)
	}
	return kp, nil
}

// newIntermediateKey is a key made by intermediateKeyPlan.newKey: pem is
// the new intermediate.key (nil when the key lives in a token), uri the
// new intermediate.key.uri ("" for a plain key file).
type newIntermediateKey struct {
	signer crypto.Signer
	pem    []byte
	uri    string
	closer io.Closer
}

// newKey creates the new intermediate key of type spec where the plan
// says (in a token, that is a new object there).
func (kp *intermediateKeyPlan) newKey(spec keySpec, passphrase []byte, now time.Time) (*newIntermediateKey, error) {
	if kp.kmsURI == "" {
		signer, err := spec.generate()
		if err != nil {
			return nil, err
		}
		keyPEM, err := marshalKey(signer, passphrase)
		if err != nil {
			return nil, err
		}
		return &newIntermediateKey{signer: signer, pem: keyPEM}, nil
	}
	k, err := kmsCreateKey(kp.kmsURI, IntermediateKeyFile+".new", spec, passphrase, now)
	if err != nil {
		return nil, err
	}
	nk := &newIntermediateKey{signer: k.signer, pem: k.pem, uri: k.uri, closer: k.closer}
	if kp.kmsURI == "softkms:" {
		nk.uri = softKMSURI(IntermediateKeyFile)
	}
	return nk, nil
}

// retireFiles are the files that keep the current intermediate old and
// its key (or key URI) as RetiredDir/<serial>.*.
func (kp *intermediateKeyPlan) retireFiles(dir string, old *x509.Certificate) ([]caFile, error) {
	retired := filepath.Join(dir, RetiredDir)
	base := filepath.Join(retired, lanyardv1.FormatSerial(old.SerialNumber))
	files := []caFile{{base + ".crt", encodeCertificates(old), 0o644}}
	switch {
	case kp.oldKeyURI == "":
		data, err := readFile(filepath.Join(dir, IntermediateKeyFile))
		if err != nil {
			return nil, err
		}
		files = append(files, caFile{base + ".key", data, 0o600})
	case kp.kmsURI == "softkms:":
		data, err := readFile(filepath.Join(dir, IntermediateKeyFile))
		if err != nil {
			return nil, err
		}
		files = append(files, caFile{base + ".key", data, 0o600},
			caFile{base + ".key.uri", []byte(softKMSURI(filepath.Join(RetiredDir, filepath.Base(base)+".key")) + "\n"), 0o600})
	default:
		files = append(files, caFile{base + ".key.uri", []byte(kp.oldKeyURI + "\n"), 0o600})
	}
	return files, nil
}

// pkcs11ObjectAttr matches the id and object attributes of a pkcs11 URI.
var pkcs11ObjectAttr = regexp.MustCompile(`;(id|object)=[^;?]*`)

// pkcs11TokenURI is a key's pkcs11 URI without its id and object: the
// token, module and PIN source, where a new key is created.
func pkcs11TokenURI(keyURI string) string {
	return pkcs11ObjectAttr.ReplaceAllString(keyURI, "")
}

// specOf is the key spec of an existing CA public key.
func specOf(pub crypto.PublicKey) (keySpec, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return parseKeyType(KeyTypeP256)
		case elliptic.P384():
			return parseKeyType(KeyTypeP384)
		}
	case *rsa.PublicKey:
		return parseKeyType(fmt.Sprintf("RSA-%d", k.N.BitLen()))
	}
	return keySpec{}, fmt.Errorf("ca: rotate: the intermediate's key type %T is not one lanyard creates", pub)
}
