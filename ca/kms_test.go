package ca

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
)

func TestKMSSoftKMS(t *testing.T) {
	t.Parallel()
	pass := []byte("kms passphrase")
	tests := []struct {
		name    string
		keyType string
		loadKMS string // LoadOptions.KMS; empty: taken from intermediate.key.uri
	}{
		{"P-256 explicit KMS", "P-256", "softkms:"},
		{"P-384 from uri file", "P-384", ""},
		{"RSA-2048", "RSA-2048", "softkms:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "ca")
			p, err := Init(InitOptions{Dir: dir, KeyType: tt.keyType, Passphrase: pass, KMS: "softkms:"})
			if err != nil {
				t.Fatalf("Init: %v", err)
			}
			if p.IntermediateKeyURI == "" || p.IntermediateKey == "" {
				t.Fatalf("Paths lacks the key URI or key file: %+v", p)
			}
			uriData, err := os.ReadFile(p.IntermediateKeyURI)
			if err != nil {
				t.Fatal(err)
			}
			keyURI := strings.TrimSpace(string(uriData))
			if keyURI != "softkms:path=intermediate.key" {
				t.Errorf("intermediate.key.uri = %q", keyURI)
			}
			st, err := os.Stat(p.IntermediateKey)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("intermediate.key: %v", err)
			}
			keyPEM, _ := os.ReadFile(p.IntermediateKey)
			if !isEncryptedPEM(keyPEM) {
				t.Error("softkms intermediate key is not encrypted")
			}

			// The folder may move: the key URI is relative to it.
			moved := filepath.Join(t.TempDir(), "moved")
			if err := os.Rename(dir, moved); err != nil {
				t.Fatal(err)
			}
			a, err := Load(LoadOptions{Dir: moved, Passphrase: pass, KMS: tt.loadKMS})
			if err != nil {
				t.Fatalf("Load through KMS: %v", err)
			}
			defer a.Close()
			_, leaf, _ := signLeaf(t, a, "kms.example.net")
			if err := leaf.CheckSignatureFrom(a.Intermediate()); err != nil {
				t.Errorf("leaf: %v", err)
			}

			// The same key, straight through the KMS API as an operator would name it.
			km, err := kms.New(context.Background(), apiv1.Options{Type: apiv1.SoftKMS})
			if err != nil {
				t.Fatal(err)
			}
			signer, err := km.CreateSigner(&apiv1.CreateSignerRequest{
				SigningKey: "softkms:path=" + filepath.Join(moved, IntermediateKeyFile),
				Password:   pass,
			})
			if err != nil {
				t.Fatalf("softkms CreateSigner: %v", err)
			}
			if !publicKeysEqual(signer.Public(), a.Intermediate().PublicKey) {
				t.Error("softkms signer is not the intermediate key")
			}

			// A wrong passphrase through the KMS is ErrBadPassphrase.
			if _, err := Load(LoadOptions{Dir: moved, Passphrase: []byte("nope"), KMS: tt.loadKMS}); !errors.Is(err, ErrBadPassphrase) {
				t.Errorf("wrong passphrase: err = %v, want ErrBadPassphrase", err)
			}
		})
	}
}

func TestKMSLoadPlainCAThroughSoftKMS(t *testing.T) {
	t.Parallel()
	pass := []byte("pw")
	p, _ := newCA(t, InitOptions{Passphrase: pass})
	a, err := Load(LoadOptions{Dir: p.Dir, Passphrase: pass, KMS: "softkms:"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	signLeaf(t, a, "plain.example.net")
}

func TestKMSErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		uriFile string
		kms     string
		want    string
	}{
		{"unknown KMS type", "", "nosuchkms:", "nosuchkms"},
		{"KMS type not compiled in", "awskms:key-id=abc", "", "unsupported kms type"},
		{"softkms key file missing", "softkms:path=missing.key", "", "missing.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, _ := newCA(t, InitOptions{})
			if tt.uriFile != "" {
				mustWrite(t, filepath.Join(p.Dir, IntermediateKeyURIFile), tt.uriFile+"\n")
			}
			_, err := Load(LoadOptions{Dir: p.Dir, KMS: tt.kms})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSoftKMSPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri, want string
	}{
		{"softkms:path=/a/b.key", "/a/b.key"},
		{"softkms:path=b.key", "b.key"},
		{softKMSURI("/with space/k.key"), "/with space/k.key"},
		{"softkms:/a/c.key", "/a/c.key"},
		{"softkms:d.key", "d.key"},
	}
	for _, tt := range tests {
		got, err := softKMSPath(tt.uri)
		if err != nil || got != tt.want {
			t.Errorf("softKMSPath(%q) = %q, %v; want %q", tt.uri, got, err, tt.want)
		}
	}
	if _, err := softKMSPath("awskms:x"); err == nil {
		t.Error("softKMSPath accepted another scheme")
	}
}
