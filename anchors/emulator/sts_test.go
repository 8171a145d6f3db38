package emulator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/lanyard/lanyard/internal/realtools"
)

// isolateSDK keeps the SDK's default chain to the files a test writes.
func isolateSDK(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// TestGetCallerIdentityThroughProfile is the seeds' check on one machine:
// an AWS config profile whose credential_process is the real
// aws_signing_helper, loaded by the SDK, and the SDK's STS client sent to
// the emulator's endpoint answers the assumed-role ARN of that session.
func TestGetCallerIdentityThroughProfile(t *testing.T) {
	helper := realtools.SigningHelper(t)
	isolateSDK(t)
	f := newFixture(t, Options{})
	leaf, key := f.inter.leaf(t, "ec", "host1.covalent.example.net", nil)
	certFile, keyFile, chainFile := writeCredentialFiles(t, leaf, key, f.inter.cert)

	// credential_process runs with the SDK's environment: drop
	// AWS_CA_BUNDLE for the helper (see realtools.HelperEnv).
	t.Setenv("AWS_CA_BUNDLE", "")
	os.Unsetenv("AWS_CA_BUNDLE")
	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	line := strings.Join([]string{helper, "credential-process", "--certificate", certFile, "--private-key", keyFile,
		"--intermediates", chainFile, "--trust-anchor-arn", f.anchorArn, "--profile-arn", f.profileArn,
		"--role-arn", testRole, "--endpoint", f.s.URL}, " ")
	must(t, os.WriteFile(cfgFile, []byte("[profile covalent]\nregion = us-east-1\ncredential_process = "+line+"\n"), 0o600))
	must(t, os.WriteFile(credFile, nil, 0o600))

	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedConfigFiles([]string{cfgFile}),
		config.WithSharedCredentialsFiles([]string{credFile}), config.WithSharedConfigProfile("covalent"))
	must(t, err)
	out, err := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(f.s.URL) }).
		GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	sessions := f.s.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions", len(sessions))
	}
	s := sessions[0]
	wantArn := "arn:aws:sts::123456789012:assumed-role/covalent/" + hexSerial(leaf)
	if aws.ToString(out.Arn) != wantArn || s.AssumedRoleArn != wantArn {
		t.Errorf("Arn = %q (session %q), want %q", aws.ToString(out.Arn), s.AssumedRoleArn, wantArn)
	}
	if aws.ToString(out.Account) != "123456789012" || aws.ToString(out.UserId) != s.AssumedRoleID ||
		!strings.HasPrefix(s.AssumedRoleID, "AROA") || !strings.HasSuffix(s.AssumedRoleID, ":"+hexSerial(leaf)) {
		t.Errorf("Account %q UserId %q (session %q)", aws.ToString(out.Account), aws.ToString(out.UserId), s.AssumedRoleID)
	}
}

// shiftedSigner signs as a client whose clock reads now().
type shiftedSigner struct{ now func() time.Time }

func (s shiftedSigner) SignHTTP(ctx context.Context, c aws.Credentials, r *http.Request, payloadHash, service, region string, _ time.Time, opts ...func(*v4.SignerOptions)) error {
	return v4.NewSigner().SignHTTP(ctx, c, r, payloadHash, service, region, s.now(), opts...)
}

// TestGetCallerIdentityRefusals: every refusal is STS's XML error shape
// (the SDK's STS client parses the code out of it).
func TestGetCallerIdentityRefusals(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	f := newFixture(t, Options{Now: now})
	s := f.s
	good, _ := f.sessionCredentials(t, now())

	call := func(creds aws.Credentials, region string) error {
		cl := sts.New(sts.Options{Region: region, BaseEndpoint: aws.String(s.URL), HTTPClient: s.Client(),
			Credentials: credentials.StaticCredentialsProvider{Value: creds}, HTTPSignerV4: shiftedSigner{now}})
		_, err := cl.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
		return err
	}
	with := func(mod func(*aws.Credentials)) aws.Credentials { c := good; mod(&c); return c }
	tests := []struct {
		name     string
		creds    aws.Credentials
		region   string
		advance  time.Duration
		wantCode string
	}{
		{name: "valid, any region", creds: good, region: "eu-west-1"},
		{name: "unknown access key", creds: with(func(c *aws.Credentials) { c.AccessKeyID = "ASIAUNKNOWN000000000" }), region: "us-east-1", wantCode: ErrSTSInvalidClientTokenID},
		{name: "wrong session token", creds: with(func(c *aws.Credentials) { c.SessionToken = "forged" }), region: "us-east-1", wantCode: ErrSTSInvalidClientTokenID},
		{name: "no session token", creds: with(func(c *aws.Credentials) { c.SessionToken = "" }), region: "us-east-1", wantCode: ErrSTSInvalidClientTokenID},
		{name: "wrong secret", creds: with(func(c *aws.Credentials) { c.SecretAccessKey = strings.Repeat("x", 40) }), region: "us-east-1", wantCode: ErrSTSSignatureDoesNotMatch},
		{name: "control-plane key is not a session", creds: aws.Credentials{AccessKeyID: DefaultAccessKeyID, SecretAccessKey: DefaultSecretAccessKey}, region: "us-east-1", wantCode: ErrSTSInvalidClientTokenID},
		{name: "expired", creds: good, region: "us-east-1", advance: time.Hour + time.Second, wantCode: ErrSTSExpiredToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			clock = clock.Add(tt.advance)
			mu.Unlock()
			err := call(tt.creds, tt.region)
			var ae smithy.APIError
			switch {
			case tt.wantCode == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantCode == "":
			case !errors.As(err, &ae):
				t.Fatalf("err = %v, want API error %s", err, tt.wantCode)
			case ae.ErrorCode() != tt.wantCode:
				t.Fatalf("code %s (%s), want %s", ae.ErrorCode(), ae.ErrorMessage(), tt.wantCode)
			}
		})
	}

	// Not GetCallerIdentity: an XML InvalidAction, never JSON.
	form := url.Values{"Action": {"AssumeRole"}, "Version": {"2011-06-15"}}.Encode()
	req, _ := http.NewRequest("POST", s.URL+"/", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	r, err := s.Client().Do(req)
	must(t, err)
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	b := string(raw)
	if r.StatusCode != 400 || r.Header.Get("Content-Type") != "text/xml" || !strings.Contains(b, "<Code>InvalidAction</Code>") ||
		!strings.Contains(b, "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">") {
		t.Fatalf("AssumeRole: %d %s %s", r.StatusCode, r.Header.Get("Content-Type"), b)
	}
}
