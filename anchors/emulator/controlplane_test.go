package emulator

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"
	"github.com/aws/smithy-go"

	"github.com/lanyard/lanyard/internal/testpki"
)

// client returns the real SDK client for s, retrying up to attempts times
// without waiting.
func client(s *Server, attempts int, mod ...func(*ra.Options)) *ra.Client {
	return ra.NewFromConfig(s.Config(), append([]func(*ra.Options){func(o *ra.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
	}}, mod...)...)
}

func bundleSource(pemData []byte) *types.SourceDataMemberX509CertificateData {
	return &types.SourceDataMemberX509CertificateData{Value: string(pemData)}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := apiCode(err); got != code {
		t.Fatalf("error = %v (code %q), want %s", err, got, code)
	}
}

func TestControlPlaneWithRealSDK(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tlsOn], func(t *testing.T) {
			s := NewServer(Options{TLS: tlsOn})
			defer s.Close()
			testControlPlane(t, s, client(s, 1))
		})
	}
}

func testControlPlane(t *testing.T, s *Server, c *ra.Client) {
	ctx := context.Background()
	root, root2 := newRootCA(t, "Root 2026"), newRootCA(t, "Root 2027")

	ca, err := c.CreateTrustAnchor(ctx, &ra.CreateTrustAnchorInput{
		Name:    aws.String("lanyard"),
		Enabled: aws.Bool(true),
		Source:  &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle, SourceData: bundleSource(certPEM(root.cert))},
	})
	if err != nil {
		t.Fatal(err)
	}
	ta := ca.TrustAnchor
	if !strings.HasPrefix(*ta.TrustAnchorArn, "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/") || !*ta.Enabled || ta.CreatedAt == nil {
		t.Fatalf("CreateTrustAnchor = %+v", ta)
	}
	if len(ta.NotificationSettings) != 2 {
		t.Fatalf("notification settings = %+v", ta.NotificationSettings)
	}

	got, err := c.GetTrustAnchor(ctx, &ra.GetTrustAnchorInput{TrustAnchorId: ta.TrustAnchorId})
	if err != nil || *got.TrustAnchor.TrustAnchorArn != *ta.TrustAnchorArn {
		t.Fatalf("GetTrustAnchor = %+v, %v", got, err)
	}
	if data := got.TrustAnchor.Source.SourceData.(*types.SourceDataMemberX509CertificateData).Value; data != string(certPEM(root.cert)) {
		t.Fatalf("bundle came back as %q", data)
	}

	// Rotation: two certificates are fine, three are not.
	up, err := c.UpdateTrustAnchor(ctx, &ra.UpdateTrustAnchorInput{TrustAnchorId: ta.TrustAnchorId,
		Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle, SourceData: bundleSource(certPEM(root.cert, root2.cert))}})
	if err != nil || len(s.TrustAnchors()[0].Certificates) != 2 || !up.TrustAnchor.UpdatedAt.After(*up.TrustAnchor.CreatedAt) && !up.TrustAnchor.UpdatedAt.Equal(*up.TrustAnchor.CreatedAt) {
		t.Fatalf("UpdateTrustAnchor: %+v, %v", up, err)
	}

	leaf, _ := root.leaf(t, "ec", "host.example.net", nil)
	badBundles := []struct {
		name string
		pem  []byte
	}{
		{"three certificates", certPEM(root.cert, root2.cert, newRootCA(t, "Root 3").cert)},
		{"leaf, not a CA", certPEM(leaf)},
		{"no keyCertSign", func() []byte {
			k := testpki.Key(t, "ec")
			tmpl := caTemplate("no certsign")
			tmpl.KeyUsage = x509KeyUsageCRLSignOnly
			return certPEM(testpki.Issue(t, tmpl, tmpl, k.Public(), k))
		}()},
		{"not PEM", []byte("hello")},
		{"empty", nil},
	}
	for _, b := range badBundles {
		_, err := c.UpdateTrustAnchor(ctx, &ra.UpdateTrustAnchorInput{TrustAnchorId: ta.TrustAnchorId,
			Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle, SourceData: bundleSource(b.pem)}})
		if apiCode(err) != ErrValidation {
			t.Errorf("UpdateTrustAnchor(%s): %v, want ValidationException", b.name, err)
		}
		_, err = c.CreateTrustAnchor(ctx, &ra.CreateTrustAnchorInput{Name: aws.String("x"),
			Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle, SourceData: bundleSource(b.pem)}})
		if apiCode(err) != ErrValidation {
			t.Errorf("CreateTrustAnchor(%s): %v, want ValidationException", b.name, err)
		}
	}
	_, err = c.CreateTrustAnchor(ctx, &ra.CreateTrustAnchorInput{Name: aws.String("bad/name"),
		Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle, SourceData: bundleSource(certPEM(root.cert))}})
	wantCode(t, err, ErrValidation)
	_, err = c.GetTrustAnchor(ctx, &ra.GetTrustAnchorInput{TrustAnchorId: aws.String("00000000-0000-4000-8000-000000000000")})
	wantCode(t, err, ErrResourceNotFound)
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("not a modeled ResourceNotFoundException: %T", err)
	}

	dis, err := c.DisableTrustAnchor(ctx, &ra.DisableTrustAnchorInput{TrustAnchorId: ta.TrustAnchorId})
	if err != nil || *dis.TrustAnchor.Enabled {
		t.Fatalf("DisableTrustAnchor: %+v %v", dis, err)
	}
	en, err := c.EnableTrustAnchor(ctx, &ra.EnableTrustAnchorInput{TrustAnchorId: ta.TrustAnchorId})
	if err != nil || !*en.TrustAnchor.Enabled {
		t.Fatalf("EnableTrustAnchor: %+v %v", en, err)
	}
	lst, err := c.ListTrustAnchors(ctx, &ra.ListTrustAnchorsInput{})
	if err != nil || len(lst.TrustAnchors) != 1 {
		t.Fatalf("ListTrustAnchors: %+v %v", lst, err)
	}

	// Profiles.
	cp, err := c.CreateProfile(ctx, &ra.CreateProfileInput{Name: aws.String("covalent"), Enabled: aws.Bool(true),
		RoleArns: []string{"arn:aws:iam::123456789012:role/covalent"}, DurationSeconds: aws.Int32(7200)})
	if err != nil || *cp.Profile.DurationSeconds != 7200 || !*cp.Profile.Enabled {
		t.Fatalf("CreateProfile: %+v %v", cp, err)
	}
	gp, err := c.GetProfile(ctx, &ra.GetProfileInput{ProfileId: cp.Profile.ProfileId})
	if err != nil || *gp.Profile.ProfileArn != *cp.Profile.ProfileArn || len(gp.Profile.AttributeMappings) != 3 {
		t.Fatalf("GetProfile: %+v %v", gp, err)
	}
	lp, err := c.ListProfiles(ctx, &ra.ListProfilesInput{})
	if err != nil || len(lp.Profiles) != 1 {
		t.Fatalf("ListProfiles: %+v %v", lp, err)
	}
	_, err = c.CreateProfile(ctx, &ra.CreateProfileInput{Name: aws.String("p"), RoleArns: []string{"arn:aws:iam::123456789012:role/r"}, DurationSeconds: aws.Int32(60)})
	wantCode(t, err, ErrValidation)
	_, err = c.CreateProfile(ctx, &ra.CreateProfileInput{Name: aws.String("p"), RoleArns: []string{"not-an-arn"}})
	wantCode(t, err, ErrValidation)

	// CRLs.
	crlPEM := root.crl(t, leaf.SerialNumber)
	ic, err := c.ImportCrl(ctx, &ra.ImportCrlInput{Name: aws.String("lanyard"), CrlData: crlPEM, TrustAnchorArn: ta.TrustAnchorArn, Enabled: aws.Bool(true)})
	if err != nil || !*ic.Crl.Enabled || !bytes.Equal(ic.Crl.CrlData, crlPEM) {
		t.Fatalf("ImportCrl: %+v %v", ic, err)
	}
	gc, err := c.GetCrl(ctx, &ra.GetCrlInput{CrlId: ic.Crl.CrlId})
	if err != nil || *gc.Crl.CrlArn != *ic.Crl.CrlArn || *gc.Crl.TrustAnchorArn != *ta.TrustAnchorArn {
		t.Fatalf("GetCrl: %+v %v", gc, err)
	}
	crl2 := root.crl(t)
	uc, err := c.UpdateCrl(ctx, &ra.UpdateCrlInput{CrlId: ic.Crl.CrlId, CrlData: crl2})
	if err != nil || !bytes.Equal(uc.Crl.CrlData, crl2) || len(s.CRLs()[0].List.RevokedCertificateEntries) != 0 {
		t.Fatalf("UpdateCrl: %+v %v", uc, err)
	}
	dc, err := c.DisableCrl(ctx, &ra.DisableCrlInput{CrlId: ic.Crl.CrlId})
	if err != nil || *dc.Crl.Enabled {
		t.Fatalf("DisableCrl: %+v %v", dc, err)
	}
	ec, err := c.EnableCrl(ctx, &ra.EnableCrlInput{CrlId: ic.Crl.CrlId})
	if err != nil || !*ec.Crl.Enabled {
		t.Fatalf("EnableCrl: %+v %v", ec, err)
	}
	badCRLs := []struct {
		name string
		data []byte
	}{
		{"too large", append(bytes.Repeat([]byte("#"), MaxCRLBytes-len(crlPEM)+1), crlPEM...)},
		{"DER", func() []byte { b, _ := pemDecode(crlPEM); return b }()},
		{"certificate, not CRL", certPEM(root.cert)},
	}
	for _, b := range badCRLs {
		_, err := c.ImportCrl(ctx, &ra.ImportCrlInput{Name: aws.String("bad"), CrlData: b.data, TrustAnchorArn: ta.TrustAnchorArn})
		if apiCode(err) != ErrValidation {
			t.Errorf("ImportCrl(%s): %v, want ValidationException", b.name, err)
		}
		_, err = c.UpdateCrl(ctx, &ra.UpdateCrlInput{CrlId: ic.Crl.CrlId, CrlData: b.data})
		if apiCode(err) != ErrValidation {
			t.Errorf("UpdateCrl(%s): %v, want ValidationException", b.name, err)
		}
	}
	if _, err := c.ImportCrl(ctx, &ra.ImportCrlInput{Name: aws.String("second"), CrlData: crl2, TrustAnchorArn: ta.TrustAnchorArn}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ImportCrl(ctx, &ra.ImportCrlInput{Name: aws.String("third"), CrlData: crl2, TrustAnchorArn: ta.TrustAnchorArn})
	wantCode(t, err, ErrValidation)
	lc, err := c.ListCrls(ctx, &ra.ListCrlsInput{PageSize: aws.Int32(1)})
	if err != nil || len(lc.Crls) != 1 || lc.NextToken == nil {
		t.Fatalf("ListCrls page 1: %+v %v", lc, err)
	}
	lc2, err := c.ListCrls(ctx, &ra.ListCrlsInput{PageSize: aws.Int32(1), NextToken: lc.NextToken})
	if err != nil || len(lc2.Crls) != 1 || lc2.NextToken != nil || *lc2.Crls[0].CrlId == *lc.Crls[0].CrlId {
		t.Fatalf("ListCrls page 2: %+v %v", lc2, err)
	}
	if _, err := c.DeleteCrl(ctx, &ra.DeleteCrlInput{CrlId: ic.Crl.CrlId}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetCrl(ctx, &ra.GetCrlInput{CrlId: ic.Crl.CrlId})
	wantCode(t, err, ErrResourceNotFound)
	_, err = c.ImportCrl(ctx, &ra.ImportCrlInput{Name: aws.String("x"), CrlData: crl2,
		TrustAnchorArn: aws.String("arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/00000000-0000-4000-8000-000000000000")})
	wantCode(t, err, ErrResourceNotFound)
}

func TestControlPlaneAuthentication(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	ctx := context.Background()
	tests := []struct {
		name     string
		akid     string
		secret   string
		region   string
		wantCode string
	}{
		{"good", s.AccessKeyID(), s.SecretAccessKey(), s.Region(), ""},
		{"wrong secret", s.AccessKeyID(), "wrong", s.Region(), ErrInvalidSignature},
		{"unknown key", "AKIAUNKNOWN000000000", s.SecretAccessKey(), s.Region(), ErrUnrecognizedClient},
		{"wrong region", s.AccessKeyID(), s.SecretAccessKey(), "eu-west-1", ErrInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.Config()
			cfg.Region = tt.region
			cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: tt.akid, SecretAccessKey: tt.secret}, nil
			})
			c := ra.NewFromConfig(cfg, func(o *ra.Options) { o.RetryMaxAttempts = 1 })
			_, err := c.ListTrustAnchors(ctx, &ra.ListTrustAnchorsInput{})
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tt.wantCode)
			var re interface{ HTTPStatusCode() int }
			if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
				t.Fatalf("status: %v", err)
			}
		})
	}

	// Unsigned and skewed requests.
	resp, err := http.Get(s.URL + "/trustanchors")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Amzn-ErrorType") != ErrMissingAuthentication {
		t.Fatalf("unsigned: %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
	skewed := NewServer(Options{Now: func() time.Time { return time.Now().Add(10 * time.Minute) }})
	defer skewed.Close()
	_, err = client(skewed, 1).ListTrustAnchors(ctx, &ra.ListTrustAnchorsInput{})
	wantCode(t, err, ErrInvalidSignature)
}

func TestThrottling(t *testing.T) {
	s := NewServer(Options{ThrottleFirstN: 2})
	defer s.Close()
	ctx := context.Background()
	// Three attempts: two throttled, the third succeeds.
	if _, err := client(s, 3).ListTrustAnchors(ctx, &ra.ListTrustAnchorsInput{}); err != nil {
		t.Fatalf("with retries: %v", err)
	}
	s.ThrottleNext(1)
	_, err := client(s, 1).ListTrustAnchors(ctx, &ra.ListTrustAnchorsInput{})
	wantCode(t, err, ErrThrottling)
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusTooManyRequests {
		t.Fatalf("status: %v", err)
	}
}

// TestMountedUnderPrefix: the dev server mounts Handler under a path prefix.
func TestMountedUnderPrefix(t *testing.T) {
	e := New(Options{})
	mux := http.NewServeMux()
	mux.Handle("/ra/", http.StripPrefix("/ra", e.Handler()))
	srv := &Server{Emulator: e}
	hs := newHTTPTestServer(t, mux)
	srv.URL = hs + "/ra"
	cfg := e.AWSConfig(srv.URL, nil)
	c := ra.NewFromConfig(cfg, func(o *ra.Options) { o.RetryMaxAttempts = 1 })
	root := newRootCA(t, "Root")
	if _, err := c.CreateTrustAnchor(context.Background(), &ra.CreateTrustAnchorInput{Name: aws.String("x"),
		Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle, SourceData: bundleSource(certPEM(root.cert))}}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.TrustAnchors()); n != 1 {
		t.Fatalf("%d anchors", n)
	}
}
