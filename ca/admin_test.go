package ca

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// TestReplaceAdminCredentialSurvivesACrash: whichever step of the
// replacement a crash interrupts, LoadAdminCredential returns a matching
// pair, and the newest one once both new files were staged.
func TestReplaceAdminCredentialSurvivesACrash(t *testing.T) {
	tests := []struct {
		name  string
		crash func(t *testing.T, p *Paths, certPEM, keyPEM []byte)
		isNew bool
	}{
		{"completed", func(t *testing.T, p *Paths, c, k []byte) {
			if err := ReplaceAdminCredential(p, c, k); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"only the key staged", func(t *testing.T, p *Paths, _, k []byte) {
			writeStaged(t, p.AdminKey+nextSuffix, k, 0o600)
		}, false},
		{"both staged", func(t *testing.T, p *Paths, c, k []byte) {
			writeStaged(t, p.AdminKey+nextSuffix, k, 0o600)
			writeStaged(t, p.AdminCert+nextSuffix, c, 0o644)
		}, true},
		{"key renamed, certificate staged", func(t *testing.T, p *Paths, c, k []byte) {
			writeStaged(t, p.AdminKey, k, 0o600)
			writeStaged(t, p.AdminCert+nextSuffix, c, 0o644)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Init(InitOptions{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			a, err := Load(LoadOptions{Dir: p.Dir})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			next, err := a.ClientTLSCertificate(AdminCommonName, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			keyPEM, err := marshalKey(next.PrivateKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.crash(t, p, encodeCertificates(next.Leaf), keyPEM)
			got, err := LoadAdminCredential(p)
			if err != nil {
				t.Fatalf("load after the crash: %v", err)
			}
			if isNew := bytes.Equal(got.Certificate[0], next.Leaf.Raw); isNew != tt.isNew {
				t.Fatalf("loaded the new credential: %v, want %v", isNew, tt.isNew)
			}
			if fi, err := os.Stat(p.AdminKey); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("admin.key: %v %v", fi.Mode(), err)
			}
		})
	}
	if err := ReplaceAdminCredential(PathsIn(t.TempDir()), []byte("x"), []byte("y")); err == nil {
		t.Fatal("a certificate and key that do not pair were written")
	}
}

func writeStaged(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}
