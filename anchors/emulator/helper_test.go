package emulator

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/realtools"
)

// TestRealSigningHelper runs the real aws_signing_helper v1.5.0
// credential-process against the emulator.
func TestRealSigningHelper(t *testing.T) {
	helper := realtools.SigningHelper(t)
	tests := []struct {
		name    string
		kind    string
		tls     bool
		foreign bool // leaf from a CA the anchor does not hold
		revoked bool // leaf listed on the anchor's enabled CRL
		wantErr string
	}{
		{name: "ECDSA", kind: "ec"},
		{name: "RSA", kind: "rsa"},
		{name: "ECDSA over TLS", kind: "ec", tls: true},
		{name: "foreign CA", kind: "ec", foreign: true, wantErr: "AccessDeniedException: Untrusted signing certificate"},
		{name: "revoked", kind: "rsa", revoked: true, wantErr: "AccessDeniedException: Untrusted signing certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(Options{TLS: tt.tls})
			defer s.Close()
			root := newRootCA(t, "Lanyard Root")
			inter := root.intermediate(t, "Lanyard Intermediate")
			anchorArn, profileArn, err := s.Seed([]*x509.Certificate{root.cert}, testRole)
			must(t, err)
			issuer := inter
			if tt.foreign {
				issuer = newRootCA(t, "Lanyard Root").intermediate(t, "Lanyard Intermediate")
			}
			leaf, key := issuer.leaf(t, tt.kind, "web-1.covalent.example.net", nil)
			if tt.revoked {
				_, err := s.SeedCRL(CRLSpec{TrustAnchorArn: anchorArn, PEM: inter.crl(t, leaf.SerialNumber)})
				must(t, err)
			}
			certFile, keyFile, chainFile := writeCredentialFiles(t, leaf, key, issuer.cert)

			cmd := exec.Command(helper, "credential-process",
				"--certificate", certFile, "--private-key", keyFile, "--intermediates", chainFile,
				"--trust-anchor-arn", anchorArn, "--profile-arn", profileArn, "--role-arn", testRole,
				"--endpoint", s.URL)
			cmd.Env = realtools.HelperEnv()
			if tt.tls {
				caFile := filepath.Join(t.TempDir(), "ca.pem")
				must(t, os.WriteFile(caFile, s.CACertPEM(), 0o600))
				cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+caFile)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("helper succeeded: %s", stdout.String())
				}
				if !strings.Contains(stderr.String(), tt.wantErr) {
					t.Fatalf("helper stderr %q, want %q", stderr.String(), tt.wantErr)
				}
				if n := len(s.Sessions()); n != 0 {
					t.Fatalf("%d sessions after a refusal", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, stderr.String())
			}
			var out struct {
				Version                                   int
				AccessKeyID                               string `json:"AccessKeyId"`
				SecretAccessKey, SessionToken, Expiration string
			}
			if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
				t.Fatalf("helper output %q: %v", stdout.String(), err)
			}
			sess := s.Sessions()
			if len(sess) != 1 || out.Version != 1 || out.AccessKeyID != sess[0].AccessKeyID || out.SecretAccessKey == "" || out.SessionToken == "" {
				t.Fatalf("helper output %+v, sessions %+v", out, sess)
			}
			exp, err := time.Parse(time.RFC3339, out.Expiration)
			if err != nil || exp.Sub(sess[0].Time) > time.Hour || exp.Sub(sess[0].Time) < 59*time.Minute {
				t.Fatalf("expiration %q (%v)", out.Expiration, err)
			}
			if sess[0].Serial.Cmp(leaf.SerialNumber) != 0 || sess[0].CommonName != "web-1.covalent.example.net" || sess[0].SourceIdentity != "CN=web-1.covalent.example.net" {
				t.Fatalf("session %+v", sess[0])
			}
		})
	}
}
