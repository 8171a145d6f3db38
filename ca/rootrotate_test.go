package ca

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/pembundle"
	"github.com/lanyard/lanyard/internal/realtools"
)

// folderSnapshot is every file of a folder tree with its content.
func folderSnapshot(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			out[path] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diff []string
	for p, b := range before {
		if a, ok := after[p]; !ok || a != b {
			diff = append(diff, "changed or gone: "+p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diff = append(diff, "new: "+p)
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Fatalf("%s changed the folder: %v", what, diff)
	}
}

// verifies reports whether chain (leaf first) verifies under roots for
// TLS server use.
func verifies(chain [][]byte, usage x509.ExtKeyUsage, roots ...*x509.Certificate) error {
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	var leaf *x509.Certificate
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		if i == 0 {
			leaf = c
		} else {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// TestRotateRootThenFinish walks a root rotation through the CA folder:
// a dry run and a refused start change nothing; the rotation trusts two
// roots, serves the cross-certificate, issues from the new intermediate,
// gives a TLS chain that hosts of either root verify, refuses a second
// rotation; the finish is refused while a certificate of the old root is
// live and then leaves only the new root.
func TestRotateRootThenFinish(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir, offline := filepath.Join(base, "ca"), filepath.Join(base, "offline")
	rootKey := filepath.Join(offline, RootKeyFile)
	var pass []byte // PBKDF2 of encrypted keys costs seconds on a busy machine; Init's tests cover it
	if _, err := Init(InitOptions{Dir: dir, RootKeyPath: rootKey}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(base, "other")
	if _, err := Init(InitOptions{Dir: other}); err != nil {
		t.Fatal(err)
	}
	before, err := Load(LoadOptions{Dir: dir, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	oldRoot, oldInt := before.Roots()[0], before.Intermediate()
	_, oldLeaf, _ := signLeaf(t, before, "old.covalent.example.net")
	before.Close()

	snap := folderSnapshot(t, dir, offline)
	if _, err := RotateRoot(RootRotateOptions{Dir: dir, RootKeyPath: filepath.Join(other, RootKeyFile)}); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("rotation with another CA's root key: %v", err)
	}
	if _, err := RotateRoot(RootRotateOptions{Dir: dir, Passphrase: pass}); err == nil {
		t.Fatal("rotation without the (offline) root key succeeded")
	}
	dry, err := RotateRoot(RootRotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass, DryRun: true})
	if err != nil || dry.NewRoot != nil || !dry.OldRoot.Equal(oldRoot) {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	sameSnapshot(t, "a dry run or a refused rotation", snap, folderSnapshot(t, dir, offline))

	res, err := RotateRoot(RootRotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass})
	if err != nil {
		t.Fatalf("RotateRoot: %v", err)
	}
	a, err := Load(LoadOptions{Dir: dir, Passphrase: pass})
	if err != nil {
		t.Fatalf("Load during the rotation: %v", err)
	}
	defer a.Close()
	roots := a.Roots()
	if len(roots) != 2 || !roots[0].Equal(res.NewRoot) || !roots[1].Equal(oldRoot) {
		t.Fatalf("roots during the rotation: %d, want the new then the old", len(roots))
	}
	if err := a.Intermediate().CheckSignatureFrom(res.NewRoot); err != nil || !a.Intermediate().Equal(res.NewIntermediate) {
		t.Fatalf("the issuing intermediate is not the new one under the new root: %v", err)
	}
	served, err := pembundle.ParseNonEmpty(a.RootsPEM())
	if err != nil || len(served) != 3 || !served[2].Equal(res.Cross) {
		t.Fatalf("/roots.pem during the rotation: %d certificates, %v; want both roots and the cross-certificate", len(served), err)
	}
	if err := res.Cross.CheckSignatureFrom(oldRoot); err != nil || string(res.Cross.RawSubjectPublicKeyInfo) != string(res.NewRoot.RawSubjectPublicKeyInfo) {
		t.Fatalf("the cross-certificate is not the new root's key under the old root: %v", err)
	}
	// A host that trusts only the old root, and one that trusts only the
	// new root, both verify the server's TLS chain.
	srv, err := a.ServerTLSCertificate([]string{"ca.example.net"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*x509.Certificate{"old root": oldRoot, "new root": res.NewRoot} {
		if err := verifies(srv.Certificate, x509.ExtKeyUsageServerAuth, r); err != nil {
			t.Errorf("TLS chain under the %s only: %v", name, err)
		}
	}
	if ret := a.Retired(); len(ret) != 1 || !ret[0].Equal(oldInt) {
		t.Fatalf("retired intermediates: %d, want the old one", len(ret))
	}
	if err := oldLeaf.CheckSignatureFrom(a.Retired()[0]); err != nil {
		t.Fatal(err)
	}
	if crls, err := a.SignRetiredCRLs(CRLRequest{Number: 2, ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}); err != nil || len(crls) != 1 {
		t.Fatalf("the old intermediate signs no CRL during the rotation: %d, %v", len(crls), err)
	}
	// The new root key replaced the old one; the old one is kept apart.
	newKeyPEM, _ := os.ReadFile(rootKey)
	if k, err := parseSigner(rootKey, newKeyPEM, pass); err != nil || !publicKeysEqual(k.Public(), res.NewRoot.PublicKey) {
		t.Fatalf("%s is not the new root's key: %v", rootKey, err)
	}
	oldKeyPEM, _ := os.ReadFile(res.RetiredRootKey)
	if k, err := parseSigner(res.RetiredRootKey, oldKeyPEM, pass); err != nil || !publicKeysEqual(k.Public(), oldRoot.PublicKey) {
		t.Fatalf("the old root key is not kept at %s: %v", res.RetiredRootKey, err)
	}

	// One rotation at a time, and no intermediate rotation inside it.
	if _, err := RotateRoot(RootRotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass}); !errors.Is(err, ErrRotationInProgress) {
		t.Fatalf("second root rotation: %v", err)
	}
	if _, err := RotateIntermediate(RotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass}); !errors.Is(err, ErrRotationInProgress) {
		t.Fatalf("intermediate rotation during a root rotation: %v", err)
	}

	snap = folderSnapshot(t, dir, offline)
	var asked []*x509.Certificate
	live := func(n int) func([]*x509.Certificate) (int, time.Time, error) {
		return func(issuers []*x509.Certificate) (int, time.Time, error) {
			asked = issuers
			return n, oldLeaf.NotAfter, nil
		}
	}
	if _, err := FinishRootRotation(FinishOptions{Dir: dir, Live: live(1)}); !errors.Is(err, ErrRotationNotDone) {
		t.Fatalf("finish with a live certificate: %v", err)
	}
	if len(asked) != 1 || !asked[0].Equal(oldInt) {
		t.Fatalf("finish asked about %d intermediates, want the old root's one", len(asked))
	}
	if _, err := FinishRootRotation(FinishOptions{Dir: dir, Live: live(0), DryRun: true}); err != nil {
		t.Fatalf("finish dry run: %v", err)
	}
	sameSnapshot(t, "a refused finish or its dry run", snap, folderSnapshot(t, dir, offline))

	fin, err := FinishRootRotation(FinishOptions{Dir: dir, Live: live(0)})
	if err != nil {
		t.Fatalf("FinishRootRotation: %v", err)
	}
	after, err := Load(LoadOptions{Dir: dir, Passphrase: pass})
	if err != nil {
		t.Fatalf("Load after the finish: %v", err)
	}
	defer after.Close()
	if r := after.Roots(); len(r) != 1 || !r[0].Equal(res.NewRoot) {
		t.Fatalf("roots after the finish: %d", len(r))
	}
	if served, _ := pembundle.ParseNonEmpty(after.RootsPEM()); len(served) != 1 {
		t.Fatalf("/roots.pem after the finish: %d certificates, want the new root alone", len(served))
	}
	if after.Cross() != nil || len(after.Retired()) != 0 {
		t.Fatalf("after the finish: cross %v, %d retired intermediates loaded", after.Cross() != nil, len(after.Retired()))
	}
	if rr := after.RetiredRoots(); len(rr) != 1 || !rr[0].Equal(oldRoot) {
		t.Fatalf("retired roots after the finish: %d", len(rr))
	}
	srv, err = after.ServerTLSCertificate([]string{"ca.example.net"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(srv.Certificate) != 2 || verifies(srv.Certificate, x509.ExtKeyUsageServerAuth, oldRoot) == nil {
		t.Fatal("after the finish the TLS chain still leads to the old root")
	}
	if _, err := os.Stat(filepath.Join(fin.RetiredTo, lanyardv1.FormatSerial(oldInt.SerialNumber)+".key")); err != nil {
		t.Fatalf("the old intermediate's key was not moved for destruction: %v", err)
	}
	if _, err := FinishRootRotation(FinishOptions{Dir: dir, Live: live(0)}); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("a second finish: %v", err)
	}
	// And the next rotation may start.
	if _, err := RotateRoot(RootRotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass, DryRun: true}); err != nil {
		t.Fatalf("dry run of the next rotation: %v", err)
	}
}

// TestRootRotationCrashAfterCommit: a crash after the journal's commit
// point is completed by the next reader of the folder, so the folder is
// the rotated one, never a mix.
func TestRootRotationCrashAfterCommit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	crashAfterCommit = true
	_, err := RotateRoot(RootRotateOptions{Dir: dir})
	crashAfterCommit = false
	if err == nil {
		t.Fatal("the simulated crash did not happen")
	}
	if _, err := os.Stat(filepath.Join(dir, journalDir)); err != nil {
		t.Fatalf("no journal after a crash past the commit point: %v", err)
	}
	a, err := Load(LoadOptions{Dir: dir})
	if err != nil {
		t.Fatalf("Load after the crash: %v", err)
	}
	defer a.Close()
	if len(a.Roots()) != 2 || a.Cross() == nil || a.Intermediate().CheckSignatureFrom(a.Roots()[0]) != nil {
		t.Fatal("the interrupted rotation was not completed")
	}
	if _, err := os.Stat(filepath.Join(dir, journalDir)); !os.IsNotExist(err) {
		t.Fatalf("the journal is still there: %v", err)
	}
}

// checkRootRotationKeys rotates the root of the CA in dir and finishes,
// checking that the new intermediate key lives where the old one did and
// that every step loads (the retired intermediate's key signs its CRL
// during the rotation).
func checkRootRotationKeys(t *testing.T, dir, rootKey string) (oldURI, newURI string) {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, IntermediateKeyURIFile))
	oldURI = string(b)
	if _, err := RotateRoot(RootRotateOptions{Dir: dir, RootKeyPath: rootKey}); err != nil {
		t.Fatalf("RotateRoot: %v", err)
	}
	a, err := Load(LoadOptions{Dir: dir})
	if err != nil {
		t.Fatalf("Load during the rotation: %v", err)
	}
	if crls, err := a.SignRetiredCRLs(CRLRequest{Number: 2, ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}); err != nil || len(crls) != 1 {
		t.Fatalf("the old intermediate's key signs no CRL: %d, %v", len(crls), err)
	}
	signLeaf(t, a, "new.covalent.example.net")
	a.Close()
	b, _ = os.ReadFile(filepath.Join(dir, IntermediateKeyURIFile))
	newURI = string(b)
	none := func([]*x509.Certificate) (int, time.Time, error) { return 0, time.Time{}, nil }
	if _, err := FinishRootRotation(FinishOptions{Dir: dir, Live: none}); err != nil {
		t.Fatalf("FinishRootRotation: %v", err)
	}
	a, err = Load(LoadOptions{Dir: dir})
	if err != nil {
		t.Fatalf("Load after the finish: %v", err)
	}
	signLeaf(t, a, "after.covalent.example.net")
	a.Close()
	return oldURI, newURI
}

func TestRotateRootSoftKMS(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(InitOptions{Dir: dir, KMS: "softkms:"}); err != nil {
		t.Fatal(err)
	}
	if _, newURI := checkRootRotationKeys(t, dir, ""); !strings.HasPrefix(newURI, "softkms:") {
		t.Fatalf("key URI after the rotation %q: want softkms", newURI)
	}
}

func TestRotateRootPKCS11(t *testing.T) {
	tok := realtools.NewSoftHSMToken(t)
	dir := filepath.Join(t.TempDir(), "ca")
	rootKey := filepath.Join(t.TempDir(), "offline", RootKeyFile)
	if _, err := Init(InitOptions{Dir: dir, KMS: tok.KMS(), RootKeyPath: rootKey}); err != nil {
		t.Fatal(err)
	}
	oldURI, newURI := checkRootRotationKeys(t, dir, rootKey)
	if newURI == oldURI || !strings.Contains(newURI, "token="+tok.Label) {
		t.Fatalf("key URI after the rotation %q (was %q): want a new object in the same token", newURI, oldURI)
	}
	noKeyOnDisk(t, dir)
}
