package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "go.step.sm/crypto/kms/pkcs11" // the pkcs11 KMS (cgo), as cmd/lanyard links it

	"github.com/lanyard/lanyard/internal/realtools"
)

// noKeyOnDisk fails when any file under dir holds a private key.
func noKeyOnDisk(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Name() == AdminKeyFile {
			return nil // the admin client key is a file by design
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a private key", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPKCS11SoftHSM(t *testing.T) {
	tok := realtools.NewSoftHSMToken(t)
	for _, keyType := range []string{"P-256", "P-384", "RSA-2048"} {
		t.Run(keyType, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			p, err := Init(InitOptions{Dir: dir, KeyType: keyType, KMS: tok.KMS(), RootKeyPath: filepath.Join(t.TempDir(), "offline", "root.key")})
			if err != nil {
				t.Fatalf("Init with the key in the token: %v", err)
			}
			if p.IntermediateKey != "" {
				t.Errorf("Paths.IntermediateKey = %q, want none (the key is in the token)", p.IntermediateKey)
			}
			if _, err := os.Stat(filepath.Join(dir, IntermediateKeyFile)); !os.IsNotExist(err) {
				t.Errorf("%s exists (err %v): the key must stay in the token", IntermediateKeyFile, err)
			}
			noKeyOnDisk(t, dir)
			keyURI, err := os.ReadFile(p.IntermediateKeyURI)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"pkcs11:", ";id=", ";object=lanyard-intermediate-", "pin-source="} {
				if !strings.Contains(string(keyURI), want) {
					t.Errorf("key URI %q lacks %q", keyURI, want)
				}
			}

			// Load takes the key URI from the CA folder alone.
			a, err := Load(LoadOptions{Dir: dir})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer a.Close()

			_, leaf, _ := signLeaf(t, a, "hsm.covalent.example.net")
			if err := leaf.CheckSignatureFrom(a.Intermediate()); err != nil {
				t.Errorf("leaf signed in the token: %v", err)
			}
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			now := time.Now()
			for i := range verifyFirst + 2 { // past the sampled self-checks
				der, _, err := a.SignLeaf(LeafRequest{Serial: big.NewInt(int64(i + 1)), CommonName: "fast.covalent.example.net",
					NotBefore: now, NotAfter: now.Add(time.Hour), PublicKey: &k.PublicKey})
				if err != nil {
					t.Fatalf("SignLeaf: %v", err)
				}
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.CheckSignatureFrom(a.Intermediate()); err != nil {
					t.Fatalf("SignLeaf #%d in the token: %v", i, err)
				}
			}
			entry, err := NewRevokedCert(leaf.SerialNumber, now, 1)
			if err != nil {
				t.Fatal(err)
			}
			crlDER, err := a.SignCRL(CRLRequest{Number: 7, ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: []*RevokedCert{entry}})
			if err != nil {
				t.Fatalf("SignCRL: %v", err)
			}
			crl, err := x509.ParseRevocationList(crlDER)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(a.Intermediate()); err != nil {
				t.Errorf("CRL signed in the token: %v", err)
			}
		})
	}
}

func TestPKCS11BadURIs(t *testing.T) {
	tok := realtools.NewSoftHSMToken(t)
	tests := []struct {
		name, kms, want string
	}{
		{"id without object", strings.Replace(tok.KMS(), "?", ";id=%01?", 1), "give both id and object"},
		{"unknown token", strings.Replace(tok.KMS(), "token="+tok.Label, "token=nope", 1), "nope"},
		{"wrong pin file", strings.Replace(tok.KMS(), tok.PinFile, filepath.Join(t.TempDir(), "missing"), 1), "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			_, err := Init(InitOptions{Dir: dir, KMS: tt.kms})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init: err = %v, want one naming %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a failed Init left %d files in %s", len(entries), dir)
			}
		})
	}
}

// BenchmarkSignLeafPKCS11 is BenchmarkSignLeaf with the intermediate key
// (P-256) in a SoftHSM v2 token: what issuance costs when every signature is
// a PKCS#11 C_Sign call.
func BenchmarkSignLeafPKCS11(b *testing.B) {
	tok := realtools.NewSoftHSMToken(b)
	benchSignLeaf(b, InitOptions{KMS: tok.KMS()})
}

// BenchmarkSignLeafPKCS11Parallel signs from several goroutines at once, as
// the server does (crypto11 keeps a pool of PKCS#11 sessions).
func BenchmarkSignLeafPKCS11Parallel(b *testing.B) {
	tok := realtools.NewSoftHSMToken(b)
	_, a := newCA(b, InitOptions{KMS: tok.KMS()})
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := a.SignLeaf(LeafRequest{Serial: big.NewInt(n.Add(1)), CommonName: "bench.covalent.example.net",
				NotBefore: now, NotAfter: now.Add(time.Hour), PublicKey: &k.PublicKey}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
