package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/clock"
)

// A root rotation, in two offline steps (lanyard serve stopped):
//
// RotateRoot makes a new root (key of the old root's type, written where
// the old root key was, the old one kept beside it as
// root-<serial>.retired.key until it is destroyed), a new intermediate
// under it (key where the old intermediate's is) and cross-certificates
// of the new root and of the new intermediate, issued by the old root.
// root.crt becomes the new root, roots.pem the old one, cross.crt the
// cross-certificates; the old
// intermediate is retired (RetiredDir) as RotateIntermediate retires it.
// The server then trusts, serves (/roots.pem: new root, old root,
// new root's cross-certificate) and syncs to the trust anchor both roots,
// issues from the new intermediate, and sends the intermediate's
// cross-certificate in its TLS chain, so a host that trusts only the old
// root still reaches it, and learns the new root by caclient's pinning
// rule (a cross-certificate of the root, issued by the pinned root).
//
// FinishRootRotation, once no live certificate chains to the old root,
// moves the old root, the cross-certificate and the old root's
// intermediates to RetiredDir/RetiredRootsDir/<old root serial>/: the
// server then trusts and serves only the new root, the anchors sync drops
// the old one from the trust anchor, and hosts drop it from DIR/ca.pem at
// their next refresh.
//
// There are never more than two roots: RotateRoot refuses while a
// rotation is in progress (ErrRotationInProgress). Both steps change the
// folder through one journaled commit (commitChanges): all or nothing.

// RootRotateOptions configures RotateRoot.
type RootRotateOptions struct {
	// Dir is the CA folder.
	Dir string
	// RootKeyPath is the old root's key (default Dir/root.key); the new
	// root key replaces it there.
	RootKeyPath string
	// Passphrase decrypts the old root key and encrypts the new keys (as
	// Init does).
	Passphrase []byte
	// RootValidity of the new root (default DefaultRootValidity) and
	// IntermediateValidity of the new intermediate (default
	// DefaultIntermediateValidity, capped at the new root's NotAfter).
	RootValidity, IntermediateValidity time.Duration
	// DryRun checks everything and says what would happen; nothing is
	// created.
	DryRun bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// RootRotateResult says what RotateRoot did (or would do).
type RootRotateResult struct {
	// OldRoot and OldIntermediate are replaced; NewRoot, NewIntermediate
	// and Cross (the new root issued by the old one) are new (nil in a dry
	// run).
	OldRoot, OldIntermediate        *x509.Certificate
	NewRoot, NewIntermediate, Cross *x509.Certificate
	// RootKey is where the new root key is; RetiredRootKey where the old
	// root key is kept until it is destroyed.
	RootKey, RetiredRootKey string
	// KeyType of the new keys; KeyStore where the new intermediate key is
	// ("file", "softkms" or the token's KMS URI without the PIN).
	KeyType, KeyStore string
	DryRun            bool
}

// crossMinValidity is how long the old root must still be valid for a
// rotation to start: its cross-certificate (bounded by it) must outlive
// the rotation, which lasts until the old root's certificates renewed or
// expired, a day for the default 24-hour host certificates.
const crossMinValidity = 48 * time.Hour

// RotateRoot starts a root rotation in the CA folder opts.Dir (see above).
// It refuses while a rotation is in progress and while a retired
// intermediate still holds a key (its CRL would make three CRLs beside the
// old and new intermediates', and a trust anchor holds two). On any error
// nothing is written.
func RotateRoot(opts RootRotateOptions) (*RootRotateResult, error) {
	if opts.Dir == "" {
		return nil, errors.New("ca: rotate-root: no CA folder given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate-root: %w", err)
	}
	now := clock.Or(opts.Now)()
	p := PathsIn(dir)
	if opts.RootKeyPath != "" {
		if p.RootKey, err = filepath.Abs(opts.RootKeyPath); err != nil {
			return nil, fmt.Errorf("ca: rotate-root: %w", err)
		}
	}
	st, err := ReadState(dir)
	if err != nil {
		return nil, err
	}
	if st.Cross != nil || len(st.Roots) > 1 {
		since := ""
		if st.Cross != nil {
			since = " (started " + st.Cross.NotBefore.Add(caBackdate).UTC().Format(time.RFC3339) + ")"
		}
		return nil, fmt.Errorf("%w%s: the CA trusts %d roots; finish it first: `lanyard ca status` says when no certificate chains to the old root any more, then `lanyard ca rotate-root --finish`",
			ErrRotationInProgress, since, len(st.Roots))
	}
	if keyed := retiredWithKeys(dir, st.Retired); len(keyed) > 0 {
		return nil, fmt.Errorf("ca: rotate-root: the retired intermediate %q still has its key and signs a CRL; a trust anchor holds two CRLs, which the old and the new root's intermediates need: once `lanyard ca status` shows no live certificate under it, destroy its key (%s) and rotate then",
			keyed[0].Subject.CommonName, filepath.Join(dir, RetiredDir, lanyardv1.FormatSerial(keyed[0].SerialNumber)+".key*"))
	}
	oldRoot, oldInt := st.Roots[0], st.Current
	if !oldRoot.NotAfter.After(now.Add(crossMinValidity)) {
		return nil, fmt.Errorf("ca: rotate-root: the root %q expires %s: too late for a cross-signed rotation (it must be valid %s more); make a new CA (lanyard init) and a new trust anchor",
			oldRoot.Subject.CommonName, oldRoot.NotAfter.UTC().Format(time.RFC3339), crossMinValidity)
	}
	rootKeyPEM, err := readFile(p.RootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate-root: the root key is needed (--root-key): %w", err)
	}
	oldRootKey, err := parseSigner(p.RootKey, rootKeyPEM, opts.Passphrase)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(oldRootKey.Public(), oldRoot.PublicKey) {
		return nil, fmt.Errorf("%w: %s is not the key of the root %q", ErrKeyMismatch, p.RootKey, oldRoot.Subject)
	}
	rootSpec, err := specOf(oldRoot.PublicKey)
	if err != nil {
		return nil, err
	}
	intSpec, err := specOf(oldInt.PublicKey)
	if err != nil {
		return nil, err
	}
	if opts.Passphrase != nil && len(opts.Passphrase) == 0 {
		return nil, errors.New("ca: rotate-root: the passphrase is empty")
	}
	kp, err := planIntermediateKey(dir)
	if err != nil {
		return nil, err
	}
	res := &RootRotateResult{OldRoot: oldRoot, OldIntermediate: oldInt, KeyType: rootSpec.name, KeyStore: kp.keyStore,
		DryRun: opts.DryRun, RootKey: p.RootKey,
		RetiredRootKey: filepath.Join(filepath.Dir(p.RootKey), "root-"+lanyardv1.FormatSerial(oldRoot.SerialNumber)+".retired.key")}
	if err := refuseExisting(res.RetiredRootKey, filepath.Join(dir, CrossCertFile), p.Roots); err != nil {
		return nil, fmt.Errorf("ca: rotate-root: %w", err)
	}
	if opts.DryRun {
		return res, nil
	}

	rootValidity, intValidity := opts.RootValidity, opts.IntermediateValidity
	if rootValidity <= 0 {
		rootValidity = DefaultRootValidity
	}
	if intValidity <= 0 {
		intValidity = DefaultIntermediateValidity
	}
	org := DefaultName
	if len(oldRoot.Subject.Organization) > 0 {
		org = oldRoot.Subject.Organization[0]
	}
	stamp := now.UTC().Format("2006-01-02T15:04Z")
	newRootKey, err := rootSpec.generate()
	if err != nil {
		return nil, err
	}
	rootT := caTemplate{cn: org + " Root CA " + stamp, org: org, notBefore: now.Add(-caBackdate), notAfter: now.Add(rootValidity), pathLen: 1}
	newRoot, err := createCACert(rootT, nil, newRootKey.Public(), newRootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate-root: new root: %w", err)
	}
	// The cross-certificate: the new root's name and key, issued by the
	// old root, for as long as both are valid.
	crossT := rootT
	crossT.notAfter = minTime(newRoot.NotAfter, oldRoot.NotAfter)
	cross, err := createCACert(crossT, oldRoot, newRootKey.Public(), oldRootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate-root: cross-certificate: %w", err)
	}
	nk, err := kp.newKey(intSpec, opts.Passphrase, now)
	if err != nil {
		return nil, err
	}
	if nk.closer != nil {
		defer nk.closer.Close()
	}
	newInt, err := createCACert(caTemplate{cn: org + " Intermediate CA " + stamp, org: org, notBefore: now.Add(-caBackdate),
		notAfter: minTime(now.Add(intValidity), newRoot.NotAfter), pathLen: 0}, newRoot, nk.signer.Public(), newRootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate-root: new intermediate: %w", err)
	}
	crossInt, err := createCACert(caTemplate{cn: newInt.Subject.CommonName, org: org, notBefore: newInt.NotBefore,
		notAfter: minTime(newInt.NotAfter, oldRoot.NotAfter), pathLen: 0}, oldRoot, nk.signer.Public(), oldRootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate-root: the new intermediate's cross-certificate: %w", err)
	}
	a, err := newAuthority([]*x509.Certificate{newRoot, oldRoot}, []*x509.Certificate{newInt}, nk.signer, nil)
	if err != nil {
		return nil, fmt.Errorf("ca: rotate-root: %w", err)
	}
	if err := checkCross([]*x509.Certificate{cross, crossInt}, a.roots, newInt); err != nil {
		return nil, fmt.Errorf("ca: rotate-root: %w", err)
	}
	newRootKeyPEM, err := marshalKey(newRootKey, opts.Passphrase)
	if err != nil {
		return nil, err
	}

	retire, err := kp.retireFiles(dir, oldInt)
	if err != nil {
		return nil, err
	}
	var changes []fileChange
	for _, f := range retire {
		changes = append(changes, fileChange{path: f.path, data: f.data, perm: f.perm})
	}
	changes = append(changes,
		fileChange{path: res.RetiredRootKey, data: rootKeyPEM, perm: 0o600},
		fileChange{path: p.RootKey, data: newRootKeyPEM, perm: 0o600},
		fileChange{path: p.Roots, data: encodeCertificates(oldRoot), perm: 0o644},
		fileChange{path: filepath.Join(dir, CrossCertFile), data: encodeCertificates(cross, crossInt), perm: 0o644})
	if nk.pem != nil {
		changes = append(changes, fileChange{path: filepath.Join(dir, IntermediateKeyFile), data: nk.pem, perm: 0o600})
	}
	if nk.uri != "" {
		changes = append(changes, fileChange{path: kp.uriFile, data: []byte(nk.uri + "\n"), perm: 0o600})
	}
	changes = append(changes,
		fileChange{path: p.IntermediateCert, data: encodeCertificates(newInt), perm: 0o644},
		fileChange{path: p.RootCert, data: encodeCertificates(newRoot), perm: 0o644})
	if err := commitChanges(dir, changes); err != nil {
		return nil, fmt.Errorf("ca: rotate-root: %w", err)
	}
	os.Remove(filepath.Join(dir, IntermediateKeyFile+".new"))
	res.NewRoot, res.NewIntermediate, res.Cross = newRoot, newInt, cross
	return res, nil
}

// retiredWithKeys are the retired intermediates whose key (or key URI)
// is still kept.
func retiredWithKeys(dir string, retired []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range retired {
		base := filepath.Join(dir, RetiredDir, lanyardv1.FormatSerial(c.SerialNumber))
		for _, ext := range []string{".key", ".key.uri"} {
			if _, err := os.Lstat(base + ext); err == nil {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// readOr is the content of path, nil if it cannot be read (ReadState
// has just read it).
func readOr(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// FinishOptions configures FinishRootRotation.
type FinishOptions struct {
	// Dir is the CA folder.
	Dir string
	// Live counts the certificates still in use that the given
	// intermediates (the old root's) issued, and says when the last of
	// them stops being in use. The store knows; package ca does not. A
	// count above zero refuses the finish with ErrRotationNotDone.
	Live func(issuers []*x509.Certificate) (n int, until time.Time, err error)
	// DryRun checks and says what would happen; nothing changes.
	DryRun bool
}

// FinishResult says what FinishRootRotation did (or would do).
type FinishResult struct {
	// OldRoot left the trust; Root is the one root trusted now.
	OldRoot, Root *x509.Certificate
	// Intermediates are the old root's intermediates that went with it.
	Intermediates []*x509.Certificate
	// RetiredTo is the folder they were moved to
	// (RetiredDir/RetiredRootsDir/<old root serial>).
	RetiredTo string
	DryRun    bool
}

// FinishRootRotation ends the root rotation of the CA folder opts.Dir
// once opts.Live finds no certificate of the old root's intermediates in
// use (see the comment at the top of this file). Without a rotation it
// fails with ErrNoRotation; on any error nothing changes.
func FinishRootRotation(opts FinishOptions) (*FinishResult, error) {
	if opts.Dir == "" {
		return nil, errors.New("ca: finish root rotation: no CA folder given")
	}
	if opts.Live == nil {
		return nil, errors.New("ca: finish root rotation: no way to count live certificates given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("ca: finish root rotation: %w", err)
	}
	st, err := ReadState(dir)
	if err != nil {
		return nil, err
	}
	old := st.OldRoot()
	if old == nil {
		return nil, ErrNoRotation
	}
	under := st.UnderOldRoot()
	n, until, err := opts.Live(under)
	if err != nil {
		return nil, fmt.Errorf("ca: finish root rotation: %w", err)
	}
	if n > 0 {
		return nil, fmt.Errorf("%w: %d certificate(s) of the old root %q are in use until %s at the latest (they renew onto the new root; `lanyard ca status`)",
			ErrRotationNotDone, n, old.Subject.CommonName, until.UTC().Format(time.RFC3339))
	}
	if st.Current.CheckSignatureFrom(st.Roots[0]) != nil {
		return nil, fmt.Errorf("%w: the issuing intermediate %q is not under the new root %q", ErrNotChained, st.Current.Subject.CommonName, st.Roots[0].Subject.CommonName)
	}
	to := filepath.Join(dir, RetiredDir, RetiredRootsDir, lanyardv1.FormatSerial(old.SerialNumber))
	res := &FinishResult{OldRoot: old, Root: st.Roots[0], Intermediates: under, RetiredTo: to, DryRun: opts.DryRun}
	if err := refuseExisting(to); err != nil {
		return nil, fmt.Errorf("ca: finish root rotation: %w", err)
	}
	p := PathsIn(dir)
	rest := make([]*x509.Certificate, 0, len(st.Roots))
	for _, r := range st.Roots[1:] {
		if !r.Equal(old) {
			rest = append(rest, r)
		}
	}
	changes := []fileChange{
		{path: filepath.Join(to, RootCertFile), data: encodeCertificates(old), perm: 0o644},
		{path: filepath.Join(to, CrossCertFile), data: readOr(filepath.Join(dir, CrossCertFile)), perm: 0o644},
		{path: filepath.Join(dir, CrossCertFile), remove: true},
	}
	if len(rest) == 0 {
		changes = append(changes, fileChange{path: p.Roots, remove: true})
	} else {
		changes = append(changes, fileChange{path: p.Roots, data: encodeCertificates(rest...), perm: 0o644})
	}
	for _, c := range under {
		moved, err := moveRetired(dir, to, c)
		if err != nil {
			return nil, err
		}
		changes = append(changes, moved...)
	}
	if opts.DryRun {
		return res, nil
	}
	if err := commitChanges(dir, changes); err != nil {
		return nil, fmt.Errorf("ca: finish root rotation: %w", err)
	}
	return res, nil
}

// moveRetired are the changes that move the retired intermediate c's
// files (RetiredDir/<serial>.crt, .key, .key.uri) into the folder to.
// A softkms key URI names its file relative to the CA folder, so it is
// rewritten to the new place.
func moveRetired(dir, to string, c *x509.Certificate) ([]fileChange, error) {
	serial := lanyardv1.FormatSerial(c.SerialNumber)
	var out []fileChange
	for _, ext := range []string{".crt", ".key", ".key.uri"} {
		from := filepath.Join(dir, RetiredDir, serial+ext)
		info, err := os.Stat(from)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ca: finish root rotation: %w", err)
		}
		data, err := readFile(from)
		if err != nil {
			return nil, err
		}
		if ext == ".key.uri" && strings.HasPrefix(strings.TrimSpace(string(data)), "softkms:") {
			rel, err := filepath.Rel(dir, filepath.Join(to, serial+".key"))
			if err != nil {
				return nil, fmt.Errorf("ca: finish root rotation: %w", err)
			}
			data = []byte(softKMSURI(rel) + "\n")
		}
		out = append(out,
			fileChange{path: filepath.Join(to, serial+ext), data: data, perm: info.Mode().Perm()},
			fileChange{path: from, remove: true})
	}
	return out, nil
}
