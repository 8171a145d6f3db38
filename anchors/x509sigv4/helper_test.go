package x509sigv4

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/realtools"
)

// captured is one request as the capture server saw it.
type captured struct {
	req  *http.Request
	body []byte
}

// TestMatchesRealSigningHelper runs the real aws_signing_helper v1.5.0
// against a capture server, verifies its signature with this package's
// verifier, then signs the same request (same time, same extra headers) with
// Sign and requires the same canonical request and string to sign — and, for
// RSA PKCS #1 v1.5, which is deterministic, the very same Authorization header.
func TestMatchesRealSigningHelper(t *testing.T) {
	helper := realtools.SigningHelper(t)
	for _, kind := range []string{"ec", "rsa"} {
		for _, withChain := range []bool{false, true} {
			name := kind
			if withChain {
				name += "+chain"
			}
			t.Run(name, func(t *testing.T) {
				p := newPKI(t, kind)
				certFile, keyFile, chainFile := p.writeFiles(t, t.TempDir())

				var (
					mu  sync.Mutex
					got []captured
				)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					mu.Lock()
					got = append(got, captured{req: r.Clone(context.Background()), body: body})
					mu.Unlock()
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusCreated)
					exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
					_ = json.NewEncoder(w).Encode(map[string]any{
						"credentialSet": []any{map[string]any{"credentials": map[string]any{
							"accessKeyId": "ASIAEXAMPLE", "secretAccessKey": "secret", "sessionToken": "token", "expiration": exp}}},
						"subjectArn": "arn:aws:rolesanywhere:us-east-1:123456789012:subject/x",
					})
				}))
				defer srv.Close()

				args := []string{"credential-process",
					"--certificate", certFile, "--private-key", keyFile,
					"--trust-anchor-arn", "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/7f3a1b2c-0000-4000-8000-000000000001",
					"--profile-arn", "arn:aws:rolesanywhere:us-east-1:123456789012:profile/7f3a1b2c-0000-4000-8000-000000000002",
					"--role-arn", "arn:aws:iam::123456789012:role/test-role",
					"--role-session-name", "my-sess",
					"--endpoint", srv.URL,
				}
				if withChain {
					args = append(args, "--intermediates", chainFile)
				}
				cmd := exec.Command(helper, args...)
				cmd.Env = realtools.HelperEnv()
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("aws_signing_helper: %v\n%s", err, stderr.String())
				}
				if !strings.Contains(string(out), `"AccessKeyId":"ASIAEXAMPLE"`) {
					t.Fatalf("helper output: %s", out)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(got) != 1 {
					t.Fatalf("capture server saw %d requests", len(got))
				}
				hreq, body := got[0].req, got[0].body

				// 1. The helper's own request verifies with our verifier.
				hauth, hcreq, hsts := verifyRequest(t, hreq, body)
				if hreq.Header.Get("Content-Length") == "" && len(hreq.TransferEncoding) == 0 {
					t.Fatalf("no body framing")
				}

				// 2. Sign the same request ourselves.
				signedAt, err := time.Parse(TimeFormat, hreq.Header.Get(HeaderDate))
				if err != nil {
					t.Fatal(err)
				}
				ours, err := http.NewRequest("POST", "http://"+hreq.Host+"/sessions?"+hreq.URL.RawQuery, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range hauth.SignedHeaders {
					switch h {
					case "host", "x-amz-date", "x-amz-x509", "x-amz-x509-chain":
						continue // Sign sets these
					}
					for _, v := range hreq.Header.Values(h) {
						ours.Header.Add(h, v)
					}
				}
				ours.Header.Set("User-Agent", hreq.Header.Get("User-Agent"))
				var chain []*x509.Certificate
				if withChain {
					chain = []*x509.Certificate{p.inter}
				}
				if err := Sign(ours, body, p.leafKey, p.leaf, chain, "us-east-1", signedAt); err != nil {
					t.Fatal(err)
				}
				for _, h := range []string{HeaderDate, HeaderX509, HeaderX509Chain} {
					if ours.Header.Get(h) != hreq.Header.Get(h) {
						t.Errorf("%s differs:\n ours   %q\n helper %q", h, ours.Header.Get(h), hreq.Header.Get(h))
					}
				}
				oauth, ocreq, osts := verifyRequest(t, ours, body)
				if ocreq != hcreq {
					t.Fatalf("canonical request differs:\n--- ours\n%s\n--- helper\n%s", ocreq, hcreq)
				}
				if osts != hsts {
					t.Fatalf("string to sign differs:\n--- ours\n%s\n--- helper\n%s", osts, hsts)
				}
				if strings.Join(oauth.SignedHeaders, ";") != strings.Join(hauth.SignedHeaders, ";") {
					t.Fatalf("SignedHeaders differ: %v vs %v", oauth.SignedHeaders, hauth.SignedHeaders)
				}
				if kind == "rsa" {
					if a, b := ours.Header.Get(HeaderAuthorization), hreq.Header.Get(HeaderAuthorization); a != b {
						t.Fatalf("Authorization differs:\n ours   %s\n helper %s", a, b)
					}
				} else {
					ha, oa := hauth, oauth
					ha.Signature, oa.Signature = nil, nil
					if ha.String() != oa.String() {
						t.Fatalf("Authorization (without signature) differs:\n ours   %s\n helper %s", oa, ha)
					}
				}
				t.Logf("helper SignedHeaders=%s", strings.Join(hauth.SignedHeaders, ";"))
			})
		}
	}
}
