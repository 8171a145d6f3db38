package emulator

import (
	"bytes"
	"context"
	"crypto/x509"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"

	"github.com/lanyard/lanyard/internal/realtools"
)

// TestProfileSettingsEnforced sets each profile setting with the real SDK
// client and proves with the real aws_signing_helper that CreateSession
// honours it: duration, attribute mappings (tags), session and managed
// policies (recorded), role session names, the enable/disable kill
// switches, and the role's trust policy.
func TestProfileSettingsEnforced(t *testing.T) {
	helper := realtools.SigningHelper(t)
	ctx := context.Background()
	tests := []struct {
		name        string
		setup       func(t *testing.T, c *ra.Client, s *Server, anchorID, profileID string)
		sessionName string
		wantErr     string
		check       func(t *testing.T, s Session)
	}{
		{name: "duration from the profile", setup: func(t *testing.T, c *ra.Client, _ *Server, _, id string) {
			_, err := c.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: aws.String(id), DurationSeconds: aws.Int32(900)})
			must(t, err)
		}, check: func(t *testing.T, s Session) {
			if s.DurationSeconds != 900 || s.Expiration.Sub(s.Time) > 900*time.Second || s.Expiration.Sub(s.Time) < 899*time.Second {
				t.Errorf("duration %d, expires %s after issue", s.DurationSeconds, s.Expiration.Sub(s.Time))
			}
		}},
		{name: "default mappings", check: func(t *testing.T, s Session) {
			if s.Tags["x509Subject/CN"] != "web-1.covalent.example.net" || s.Tags["x509Issuer/CN"] != "Lanyard Intermediate" {
				t.Errorf("tags %v", s.Tags)
			}
		}},
		{name: "mappings narrowed to the CNs", setup: func(t *testing.T, c *ra.Client, _ *Server, _, id string) {
			for _, f := range []string{"x509Subject", "x509Issuer"} {
				_, err := c.PutAttributeMapping(ctx, &ra.PutAttributeMappingInput{ProfileId: aws.String(id),
					CertificateField: types.CertificateField(f), MappingRules: []types.MappingRule{{Specifier: aws.String("CN")}}})
				must(t, err)
			}
			_, err := c.DeleteAttributeMapping(ctx, &ra.DeleteAttributeMappingInput{ProfileId: aws.String(id), CertificateField: types.CertificateFieldX509SAN})
			must(t, err)
			p, err := c.GetProfile(ctx, &ra.GetProfileInput{ProfileId: aws.String(id)})
			must(t, err)
			if n := len(p.Profile.AttributeMappings); n != 2 {
				t.Fatalf("%d mappings after put/delete", n)
			}
		}, check: func(t *testing.T, s Session) {
			if len(s.Tags) != 2 || s.Tags["x509Subject/CN"] != "web-1.covalent.example.net" || s.Tags["x509Issuer/CN"] != "Lanyard Intermediate" {
				t.Errorf("tags %v, want the two CNs", s.Tags)
			}
		}},
		{name: "session and managed policies recorded", setup: func(t *testing.T, c *ra.Client, _ *Server, _, id string) {
			_, err := c.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: aws.String(id),
				SessionPolicy:     aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"}}}]}`),
				ManagedPolicyArns: []string{"arn:aws:iam::aws:policy/ReadOnlyAccess"}})
			must(t, err)
		}, check: func(t *testing.T, s Session) {
			if !strings.Contains(s.SessionPolicy, "192.0.2.0/24") || len(s.ManagedPolicyArns) != 1 || s.SourceIP != "127.0.0.1" {
				t.Errorf("session policy %q, managed %v, source %q", s.SessionPolicy, s.ManagedPolicyArns, s.SourceIP)
			}
		}},
		{name: "role session name refused", sessionName: "custom-name", wantErr: "AccessDeniedException"},
		{name: "role session name accepted", sessionName: "custom-name", setup: func(t *testing.T, c *ra.Client, _ *Server, _, id string) {
			_, err := c.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: aws.String(id), AcceptRoleSessionName: aws.Bool(true)})
			must(t, err)
		}, check: func(t *testing.T, s Session) {
			if s.RoleSessionName != "custom-name" || !strings.HasSuffix(s.AssumedRoleArn, "/custom-name") {
				t.Errorf("session name %q, arn %q", s.RoleSessionName, s.AssumedRoleArn)
			}
		}},
		{name: "profile disabled", wantErr: "AccessDeniedException: Profile is disabled", setup: func(t *testing.T, c *ra.Client, _ *Server, _, id string) {
			_, err := c.DisableProfile(ctx, &ra.DisableProfileInput{ProfileId: aws.String(id)})
			must(t, err)
		}},
		{name: "trust anchor disabled", wantErr: "AccessDeniedException: " + MsgUntrusted, setup: func(t *testing.T, c *ra.Client, _ *Server, id, _ string) {
			_, err := c.DisableTrustAnchor(ctx, &ra.DisableTrustAnchorInput{TrustAnchorId: aws.String(id)})
			must(t, err)
		}},
		{name: "trust policy names another CN", wantErr: "AccessDeniedException: Access Denied", setup: func(t *testing.T, _ *ra.Client, s *Server, _, _ string) {
			must(t, s.SetRoleTrustPolicy(testRole, []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
"Principal":{"Service":"rolesanywhere.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],
"Condition":{"StringEquals":{"aws:PrincipalTag/x509Subject/CN":"db-1.covalent.example.net"}}}]}`)))
		}},
		{name: "trust policy names this CN", setup: func(t *testing.T, _ *ra.Client, s *Server, _, _ string) {
			must(t, s.SetRoleTrustPolicy(testRole, []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
"Principal":{"Service":"rolesanywhere.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],
"Condition":{"StringLike":{"aws:PrincipalTag/x509Subject/CN":"*.covalent.example.net"},"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}}]}`)))
		}, check: func(t *testing.T, s Session) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(Options{})
			defer s.Close()
			root := newRootCA(t, "Lanyard Root")
			inter := root.intermediate(t, "Lanyard Intermediate")
			anchorArn, profileArn, err := s.Seed([]*x509.Certificate{root.cert}, testRole)
			must(t, err)
			if tt.setup != nil {
				tt.setup(t, client(s, 1), s, idOfArn(anchorArn), idOfArn(profileArn))
			}
			leaf, key := inter.leaf(t, "ec", "web-1.covalent.example.net", nil)
			certFile, keyFile, chainFile := writeCredentialFiles(t, leaf, key, inter.cert)
			args := []string{"credential-process", "--certificate", certFile, "--private-key", keyFile, "--intermediates", chainFile,
				"--trust-anchor-arn", anchorArn, "--profile-arn", profileArn, "--role-arn", testRole, "--endpoint", s.URL}
			if tt.sessionName != "" {
				args = append(args, "--role-session-name", tt.sessionName)
			}
			cmd := exec.Command(helper, args...)
			cmd.Env = realtools.HelperEnv()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(stderr.String(), tt.wantErr) {
					t.Fatalf("helper: %v %q, want %q", err, stderr.String(), tt.wantErr)
				}
				if len(s.Sessions()) != 0 {
					t.Fatal("a session after a refusal")
				}
				return
			}
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, stderr.String())
			}
			sessions := s.Sessions()
			if len(sessions) != 1 {
				t.Fatalf("%d sessions", len(sessions))
			}
			if tt.check != nil {
				tt.check(t, sessions[0])
			}
		})
	}
}

func idOfArn(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }
