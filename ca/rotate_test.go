package ca

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/realtools"
)

// checkRotation rotates the CA in dir and checks the result: a new
// intermediate under the same root issues, the old one is retired with
// its key, and a leaf of the old one still verifies through it.
func checkRotation(t *testing.T, dir, rootKey string, pass []byte) {
	t.Helper()
	before, err := Load(LoadOptions{Dir: dir, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	_, oldLeaf, _ := signLeaf(t, before, "old.covalent.example.net")
	before.Close()

	dry, err := RotateIntermediate(RotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass, DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if dry.New != nil {
		t.Fatal("a dry run made an intermediate")
	}
	if _, err := os.Stat(filepath.Join(dir, RetiredDir)); !os.IsNotExist(err) {
		t.Fatal("a dry run retired the intermediate")
	}

	res, err := RotateIntermediate(RotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass})
	if err != nil {
		t.Fatalf("RotateIntermediate: %v", err)
	}
	a, err := Load(LoadOptions{Dir: dir, Passphrase: pass})
	if err != nil {
		t.Fatalf("Load after rotation: %v", err)
	}
	defer a.Close()
	if a.Intermediate().Equal(res.Old) || !a.Intermediate().Equal(res.New) {
		t.Fatal("the new intermediate is not the issuing one")
	}
	if err := a.Intermediate().CheckSignatureFrom(a.Roots()[0]); err != nil {
		t.Fatalf("new intermediate not under the same root: %v", err)
	}
	if ret := a.Retired(); len(ret) != 1 || !ret[0].Equal(res.Old) {
		t.Fatalf("retired intermediates: %d", len(ret))
	}
	_, newLeaf, _ := signLeaf(t, a, "new.covalent.example.net")
	if err := newLeaf.CheckSignatureFrom(res.New); err != nil {
		t.Errorf("new issuance: %v", err)
	}
	// The old leaf still chains to the root through the retired intermediate.
	inter := x509.NewCertPool()
	for _, c := range a.Retired() {
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Roots()[0])
	if _, err := oldLeaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("old leaf after rotation: %v", err)
	}
	// The retired intermediate's key is kept and signs its own CRL.
	if _, err := os.Stat(res.RetiredCert); err != nil {
		t.Fatal(err)
	}
	entry, err := NewRevokedCert(oldLeaf.SerialNumber, oldLeaf.NotBefore, 1)
	if err != nil {
		t.Fatal(err)
	}
	crls, err := a.SignRetiredCRLs(CRLRequest{Number: 3, ThisUpdate: oldLeaf.NotBefore, NextUpdate: oldLeaf.NotAfter, Entries: []*RevokedCert{entry}})
	if err != nil || len(crls) != 1 {
		t.Fatalf("SignRetiredCRLs: %d CRLs, %v", len(crls), err)
	}
	rl, err := x509.ParseRevocationList(crls[0].DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(res.Old); err != nil || len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("retired intermediate's CRL: %v", err)
	}
	// A second rotation while the first retired intermediate keeps its
	// key would need a third CRL on the trust anchor (it holds two): it is
	// refused and changes nothing, until that key is destroyed.
	prior, _ := ReadState(dir)
	if _, err := RotateIntermediate(RotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass}); !errors.Is(err, ErrRetiredStillSigning) {
		t.Fatalf("second rotation with the retired key kept: %v, want %v", err, ErrRetiredStillSigning)
	}
	if after, _ := ReadState(dir); !after.Current.Equal(prior.Current) || len(after.Retired) != 1 {
		t.Fatal("the refused rotation changed the CA folder")
	}
	if _, err := DestroyRetiredKey(DestroyOptions{Dir: dir, Serial: lanyardv1.FormatSerial(res.Old.SerialNumber)}); err != nil {
		t.Fatal(err)
	}
	// Then a second rotation retires the second intermediate too.
	if _, err := RotateIntermediate(RotateOptions{Dir: dir, RootKeyPath: rootKey, Passphrase: pass}); err != nil {
		t.Fatalf("second rotation: %v", err)
	}
	st, err := ReadState(dir)
	if err != nil || len(st.Retired) != 2 {
		t.Fatalf("state after two rotations: %+v, %v", st, err)
	}
}

func TestRotateIntermediateFile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		keyType string
		pass    []byte
		kms     string
	}{
		{"P-256 plain file", "P-256", nil, ""},
		{"P-384 encrypted file", "P-384", []byte("pw"), ""},
		{"softkms", "P-256", []byte("pw"), "softkms:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "ca")
			if _, err := Init(InitOptions{Dir: dir, KeyType: tt.keyType, Passphrase: tt.pass, KMS: tt.kms}); err != nil {
				t.Fatal(err)
			}
			checkRotation(t, dir, "", tt.pass)
		})
	}
}

func TestRotateIntermediatePKCS11(t *testing.T) {
	tok := realtools.NewSoftHSMToken(t)
	dir := filepath.Join(t.TempDir(), "ca")
	rootKey := filepath.Join(t.TempDir(), "offline", RootKeyFile)
	if _, err := Init(InitOptions{Dir: dir, KMS: tok.KMS(), RootKeyPath: rootKey}); err != nil {
		t.Fatal(err)
	}
	oldURI, _ := os.ReadFile(filepath.Join(dir, IntermediateKeyURIFile))
	checkRotation(t, dir, rootKey, nil)
	newURI, _ := os.ReadFile(filepath.Join(dir, IntermediateKeyURIFile))
	if string(newURI) == string(oldURI) || !strings.Contains(string(newURI), "token="+tok.Label) {
		t.Fatalf("key URI after rotation %q (was %q): want a new object in the same token", newURI, oldURI)
	}
	noKeyOnDisk(t, dir)
}

func TestRotateIntermediateNeedsTheRootKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	other := filepath.Join(t.TempDir(), "other")
	if _, err := Init(InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(InitOptions{Dir: other}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, IntermediateCertFile))
	for name, key := range map[string]string{"missing": filepath.Join(dir, "nope.key"), "another root's": filepath.Join(other, RootKeyFile)} {
		if _, err := RotateIntermediate(RotateOptions{Dir: dir, RootKeyPath: key}); err == nil {
			t.Errorf("rotation with the %s root key succeeded", name)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(dir, IntermediateCertFile)); string(after) != string(before) {
		t.Fatal("a refused rotation changed the intermediate")
	}
}
