package emulator

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/lanyard/lanyard/anchors/x509sigv4"
)

const testRole = "arn:aws:iam::123456789012:role/covalent"

// fixture is an emulator seeded with root → intermediate, an enabled anchor
// holding the root and a profile allowing testRole.
type fixture struct {
	s                     *Server
	root, inter           *testCA
	anchorArn, profileArn string
}

// newFixture serves an emulator with opts, seeded with a root (and an
// intermediate under it) as its trust anchor for testRole.
func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	f := &fixture{s: NewServer(opts)}
	t.Cleanup(f.s.Close)
	f.root = newRootCA(t, "Lanyard Root")
	f.inter = f.root.intermediate(t, "Lanyard Intermediate")
	var err error
	if f.anchorArn, f.profileArn, err = f.s.Seed([]*x509.Certificate{f.root.cert}, testRole); err != nil {
		t.Fatal(err)
	}
	return f
}

// sessionCredentials makes the default CreateSession (an "ec" leaf)
// signed at at and returns the session's credentials and the ARN of its
// assumed role.
func (f *fixture) sessionCredentials(t testing.TB, at time.Time) (aws.Credentials, string) {
	t.Helper()
	c := f.defaultCall(t, "ec")
	c.signedAt = at
	resp, out := f.do(t, c)
	if resp.StatusCode != 201 {
		t.Fatalf("CreateSession %d %v", resp.StatusCode, out)
	}
	cr := out["credentialSet"].([]any)[0].(map[string]any)
	creds := cr["credentials"].(map[string]any)
	return aws.Credentials{AccessKeyID: creds["accessKeyId"].(string), SecretAccessKey: creds["secretAccessKey"].(string),
		SessionToken: creds["sessionToken"].(string)}, cr["assumedRoleUser"].(map[string]any)["arn"].(string)
}

// call describes one CreateSession request.
type call struct {
	leaf      *x509.Certificate
	key       crypto.Signer
	chain     []*x509.Certificate
	query     url.Values
	body      []byte
	region    string
	signedAt  time.Time
	chunked   bool
	afterSign func(*http.Request) // tampering after signing
	// signedHeaders, when set, signs with exactly these headers (by hand).
	signedHeaders []string
}

func (f *fixture) defaultCall(t testing.TB, kind string) *call {
	leaf, key := f.inter.leaf(t, kind, "web-1.covalent.example.net", nil)
	return &call{
		leaf: leaf, key: key, chain: []*x509.Certificate{f.inter.cert},
		query: url.Values{"trustAnchorArn": {f.anchorArn}, "profileArn": {f.profileArn}, "roleArn": {testRole}},
		body:  []byte(`{"durationSeconds":3600}`), region: "us-east-1", signedAt: time.Now(),
	}
}

func (f *fixture) do(t testing.TB, c *call) (*http.Response, map[string]any) {
	t.Helper()
	u := f.s.URL + "/sessions"
	if len(c.query) > 0 {
		u += "?" + c.query.Encode()
	}
	var body io.Reader = bytes.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(bytes.NewReader(c.body)) // hide the length
	}
	req, err := http.NewRequest("POST", u, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.chunked {
		req.ContentLength = -1 // unknown length: sent with Transfer-Encoding: chunked
	}
	req.Header.Set("Content-Type", "application/json")
	if c.signedHeaders != nil {
		signByHand(t, req, c)
	} else if err := x509sigv4.Sign(req, c.body, c.key, c.leaf, c.chain, c.region, c.signedAt); err != nil {
		t.Fatal(err)
	}
	if c.afterSign != nil {
		c.afterSign(req)
	}
	resp, err := f.s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// signByHand signs req over c.signedHeaders only (to build requests the
// helper never would).
func signByHand(t testing.TB, req *http.Request, c *call) {
	t.Helper()
	req.Host = req.URL.Host
	amzDate := c.signedAt.UTC().Format(x509sigv4.TimeFormat)
	req.Header.Set(x509sigv4.HeaderDate, amzDate)
	req.Header.Set(x509sigv4.HeaderX509, x509sigv4.EncodeCertificate(c.leaf))
	if len(c.chain) > 0 {
		req.Header.Set(x509sigv4.HeaderX509Chain, x509sigv4.EncodeChain(c.chain))
	}
	alg, _ := x509sigv4.AlgorithmFor(c.leaf.PublicKey)
	creq, err := x509sigv4.CanonicalRequest(req, c.signedHeaders, x509sigv4.PayloadHash(c.body))
	if err != nil {
		t.Fatal(err)
	}
	scope := x509sigv4.Scope(c.signedAt, c.region)
	d := sha256.Sum256([]byte(x509sigv4.StringToSign(alg, amzDate, scope, creq)))
	sig, err := c.key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	a := x509sigv4.Authorization{Algorithm: alg, Serial: c.leaf.SerialNumber.String(), Date: amzDate[:8], Region: c.region,
		Service: x509sigv4.Service, SignedHeaders: c.signedHeaders, Signature: sig}
	req.Header.Set("Authorization", a.String())
}

func TestCreateSession(t *testing.T) {
	tests := []struct {
		name       string
		kind       string
		setup      func(t *testing.T, f *fixture, c *call)
		wantStatus int
		wantCode   string
		wantMsg    string
		wantReason string
		check      func(t *testing.T, f *fixture, c *call, out map[string]any)
	}{
		{name: "ECDSA leaf with chain", kind: "ec", wantStatus: 201, check: checkGranted(3600)},
		{name: "RSA leaf with chain", kind: "rsa", wantStatus: 201, check: checkGranted(3600)},
		{name: "ARNs in the JSON body", kind: "ec", wantStatus: 201, check: checkGranted(900), setup: func(t *testing.T, f *fixture, c *call) {
			c.query = nil
			c.body, _ = json.Marshal(map[string]any{"trustAnchorArn": f.anchorArn, "profileArn": f.profileArn, "roleArn": testRole, "durationSeconds": 900})
		}},
		{name: "chunked body", kind: "ec", wantStatus: 201, setup: func(t *testing.T, f *fixture, c *call) { c.chunked = true }},
		{name: "leaf repeated in the chain (PKCS #12)", kind: "ec", wantStatus: 201, setup: func(t *testing.T, f *fixture, c *call) {
			c.chain = []*x509.Certificate{c.leaf, f.inter.cert}
		}},
		{name: "anchor is the intermediate, no chain", kind: "ec", wantStatus: 201, setup: func(t *testing.T, f *fixture, c *call) {
			arn, err := f.s.SeedTrustAnchor(TrustAnchorSpec{Name: "inter", BundlePEM: certPEM(f.inter.cert)})
			must(t, err)
			c.query.Set("trustAnchorArn", arn)
			c.chain = nil
		}},
		{name: "request duration above the profile's is capped", kind: "ec", wantStatus: 201, check: checkGranted(3600), setup: func(t *testing.T, f *fixture, c *call) {
			c.body = []byte(`{"durationSeconds":43200}`)
		}},
		{name: "tampered signature", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgInvalidSignature, wantReason: "does not verify",
			setup: func(t *testing.T, f *fixture, c *call) {
				c.afterSign = func(r *http.Request) {
					a, _ := x509sigv4.ParseAuthorization(r.Header.Get("Authorization"))
					a.Signature[len(a.Signature)-1] ^= 1
					r.Header.Set("Authorization", a.String())
				}
			}},
		{name: "tampered body", kind: "rsa", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgInvalidSignature, setup: func(t *testing.T, f *fixture, c *call) {
			c.afterSign = func(r *http.Request) {
				b := []byte(`{"durationSeconds":900}`)
				r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
			}
		}},
		{name: "tampered query (role swapped)", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgInvalidSignature, setup: func(t *testing.T, f *fixture, c *call) {
			c.afterSign = func(r *http.Request) {
				q := r.URL.Query()
				q.Set("roleArn", "arn:aws:iam::123456789012:role/admin")
				r.URL.RawQuery = q.Encode()
			}
		}},
		{name: "wrong serial in Credential", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantReason: "Credential serial", setup: func(t *testing.T, f *fixture, c *call) {
			c.afterSign = func(r *http.Request) {
				a, _ := x509sigv4.ParseAuthorization(r.Header.Get("Authorization"))
				a.Serial = new(big.Int).Add(c.leaf.SerialNumber, big.NewInt(1)).String()
				r.Header.Set("Authorization", a.String())
			}
		}},
		{name: "hex serial in Credential", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, setup: func(t *testing.T, f *fixture, c *call) {
			c.afterSign = func(r *http.Request) {
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), c.leaf.SerialNumber.String(), c.leaf.SerialNumber.Text(16), 1))
			}
		}},
		{name: "expired leaf", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "expired", setup: func(t *testing.T, f *fixture, c *call) {
			c.leaf, c.key = f.inter.leaf(t, "ec", "old.covalent.example.net", func(x *x509.Certificate) {
				x.NotBefore, x.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
			})
		}},
		{name: "not yet valid leaf", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "not valid yet", setup: func(t *testing.T, f *fixture, c *call) {
			c.leaf, c.key = f.inter.leaf(t, "ec", "new.covalent.example.net", func(x *x509.Certificate) { x.NotBefore = time.Now().Add(time.Hour) })
		}},
		{name: "CA:true leaf", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "CA:true", setup: func(t *testing.T, f *fixture, c *call) {
			c.leaf, c.key = f.inter.leaf(t, "ec", "ca.covalent.example.net", func(x *x509.Certificate) {
				x.IsCA, x.KeyUsage = true, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign
			})
		}},
		{name: "SHA-1 signed leaf", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "SHA-256 or stronger", setup: func(t *testing.T, f *fixture, c *call) {
			c.leaf, c.key = f.inter.leaf(t, "ec", "sha1.covalent.example.net", func(x *x509.Certificate) { x.SignatureAlgorithm = x509.ECDSAWithSHA1 })
		}},
		{name: "no digitalSignature key usage", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "digitalSignature", setup: func(t *testing.T, f *fixture, c *call) {
			c.leaf, c.key = f.inter.leaf(t, "ec", "ku.covalent.example.net", func(x *x509.Certificate) { x.KeyUsage = x509.KeyUsageKeyEncipherment })
		}},
		{name: "chain to an unknown root", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "no path", setup: func(t *testing.T, f *fixture, c *call) {
			foreign := newRootCA(t, "Lanyard Root") // same name, other key
			fi := foreign.intermediate(t, "Lanyard Intermediate")
			c.leaf, c.key = fi.leaf(t, "ec", "web-1.covalent.example.net", nil)
			c.chain = []*x509.Certificate{fi.cert}
		}},
		{name: "intermediate missing", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, setup: func(t *testing.T, f *fixture, c *call) { c.chain = nil }},
		{name: "chain of six", kind: "ec", wantStatus: 400, wantCode: ErrValidation, wantReason: "at most 5", setup: func(t *testing.T, f *fixture, c *call) {
			c.chain = []*x509.Certificate{f.inter.cert, f.root.cert, f.root.cert, f.root.cert, f.root.cert, f.root.cert}
		}},
		{name: "empty chain header", kind: "ec", wantStatus: 400, wantCode: ErrValidation},
		{name: "x-amz-x509 not signed", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantReason: "x-amz-x509 must be a signed header", setup: func(t *testing.T, f *fixture, c *call) {
			c.signedHeaders = []string{"content-type", "host", "x-amz-date", "x-amz-x509-chain"}
		}},
		{name: "chain present but not signed", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantReason: "x-amz-x509-chain must be a signed header", setup: func(t *testing.T, f *fixture, c *call) {
			c.signedHeaders = []string{"content-type", "host", "x-amz-date", "x-amz-x509"}
		}},
		{name: "only the required headers signed", kind: "ec", wantStatus: 201, setup: func(t *testing.T, f *fixture, c *call) {
			c.signedHeaders = []string{"host", "x-amz-date", "x-amz-x509", "x-amz-x509-chain"}
		}},
		{name: "signed 10 minutes ago", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantReason: "5 minutes", setup: func(t *testing.T, f *fixture, c *call) {
			c.signedAt = time.Now().Add(-10 * time.Minute)
		}},
		{name: "signed for another region", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantReason: "region", setup: func(t *testing.T, f *fixture, c *call) { c.region = "eu-west-1" }},
		{name: "revoked on an enabled CRL", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "revoked", setup: func(t *testing.T, f *fixture, c *call) {
			_, err := f.s.SeedCRL(CRLSpec{TrustAnchorArn: f.anchorArn, PEM: f.inter.crl(t, c.leaf.SerialNumber)})
			must(t, err)
		}},
		{name: "revoked intermediate", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantMsg: MsgUntrusted, wantReason: "revoked", setup: func(t *testing.T, f *fixture, c *call) {
			_, err := f.s.SeedCRL(CRLSpec{TrustAnchorArn: f.anchorArn, PEM: f.root.crl(t, f.inter.cert.SerialNumber)})
			must(t, err)
		}},
		{name: "revoked on a disabled CRL", kind: "ec", wantStatus: 201, setup: func(t *testing.T, f *fixture, c *call) {
			_, err := f.s.SeedCRL(CRLSpec{TrustAnchorArn: f.anchorArn, PEM: f.inter.crl(t, c.leaf.SerialNumber), Disabled: true})
			must(t, err)
		}},
		{name: "CRL from a foreign issuer is ignored", kind: "ec", wantStatus: 201, setup: func(t *testing.T, f *fixture, c *call) {
			foreign := f.root.intermediate(t, "Lanyard Intermediate") // same name, other key
			_, err := f.s.SeedCRL(CRLSpec{TrustAnchorArn: f.anchorArn, PEM: foreign.crl(t, c.leaf.SerialNumber)})
			must(t, err)
		}},
		{name: "unknown trust anchor", kind: "ec", wantStatus: 404, wantCode: ErrResourceNotFound, setup: func(t *testing.T, f *fixture, c *call) {
			c.query.Set("trustAnchorArn", "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/00000000-0000-4000-8000-000000000000")
		}},
		{name: "unknown profile", kind: "ec", wantStatus: 404, wantCode: ErrResourceNotFound, setup: func(t *testing.T, f *fixture, c *call) {
			c.query.Set("profileArn", "arn:aws:rolesanywhere:us-east-1:123456789012:profile/00000000-0000-4000-8000-000000000000")
		}},
		{name: "missing roleArn", kind: "ec", wantStatus: 400, wantCode: ErrValidation, setup: func(t *testing.T, f *fixture, c *call) { c.query.Del("roleArn") }},
		{name: "role not in the profile", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, wantReason: "not in the profile", setup: func(t *testing.T, f *fixture, c *call) {
			c.query.Set("roleArn", "arn:aws:iam::123456789012:role/admin")
		}},
		{name: "disabled trust anchor", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, setup: func(t *testing.T, f *fixture, c *call) {
			arn, err := f.s.SeedTrustAnchor(TrustAnchorSpec{BundlePEM: certPEM(f.root.cert), Disabled: true})
			must(t, err)
			c.query.Set("trustAnchorArn", arn)
		}},
		{name: "disabled profile", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, setup: func(t *testing.T, f *fixture, c *call) {
			arn, err := f.s.SeedProfile(ProfileSpec{RoleArns: []string{testRole}, Disabled: true})
			must(t, err)
			c.query.Set("profileArn", arn)
		}},
		{name: "duration below 900", kind: "ec", wantStatus: 400, wantCode: ErrValidation, setup: func(t *testing.T, f *fixture, c *call) { c.body = []byte(`{"durationSeconds":899}`) }},
		{name: "duration above 43200", kind: "ec", wantStatus: 400, wantCode: ErrValidation, setup: func(t *testing.T, f *fixture, c *call) { c.body = []byte(`{"durationSeconds":43201}`) }},
		{name: "roleSessionName refused by the profile", kind: "ec", wantStatus: 403, wantCode: ErrAccessDenied, setup: func(t *testing.T, f *fixture, c *call) {
			c.body = []byte(`{"durationSeconds":3600,"roleSessionName":"my-sess"}`)
		}},
		{name: "roleSessionName accepted by the profile", kind: "ec", wantStatus: 201, setup: func(t *testing.T, f *fixture, c *call) {
			arn, err := f.s.SeedProfile(ProfileSpec{RoleArns: []string{testRole}, AcceptRoleSessionName: true, DurationSeconds: 7200})
			must(t, err)
			c.query.Set("profileArn", arn)
			c.body = []byte(`{"durationSeconds":43200,"roleSessionName":"my-sess"}`)
		}, check: func(t *testing.T, f *fixture, c *call, out map[string]any) {
			checkGranted(7200)(t, f, c, out)
			if s := f.s.Sessions(); s[len(s)-1].RoleSessionName != "my-sess" {
				t.Fatalf("session name %q", s[len(s)-1].RoleSessionName)
			}
		}},
		{name: "body is not JSON", kind: "ec", wantStatus: 400, wantCode: ErrValidation, setup: func(t *testing.T, f *fixture, c *call) { c.body = []byte(`{`) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			c := f.defaultCall(t, tt.kind)
			if tt.setup != nil {
				tt.setup(t, f, c)
			}
			if tt.name == "empty chain header" {
				// Sign by hand over an explicitly empty chain header.
				c.chain = nil
				c.signedHeaders = []string{"content-type", "host", "x-amz-date", "x-amz-x509", "x-amz-x509-chain"}
				f.doEmptyChain(t, c)
				return
			}
			resp, out := f.do(t, c)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%s: %v; reason %q), want %d", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), out["message"], resp.Header.Get(ReasonHeader), tt.wantStatus)
			}
			if tt.wantStatus == 201 {
				if tt.check != nil {
					tt.check(t, f, c, out)
				} else {
					checkGranted(-1)(t, f, c, out)
				}
				return
			}
			if got := resp.Header.Get("X-Amzn-ErrorType"); got != tt.wantCode {
				t.Fatalf("X-Amzn-ErrorType %q, want %q", got, tt.wantCode)
			}
			if tt.wantMsg != "" && out["message"] != tt.wantMsg {
				t.Fatalf("message %q, want %q", out["message"], tt.wantMsg)
			}
			if !strings.Contains(resp.Header.Get(ReasonHeader), tt.wantReason) {
				t.Fatalf("reason %q, want it to contain %q", resp.Header.Get(ReasonHeader), tt.wantReason)
			}
			if n := len(f.s.Sessions()); n != 0 {
				t.Fatalf("%d sessions recorded after a refusal", n)
			}
		})
	}
}

// doEmptyChain sends a request whose X-Amz-X509-Chain header is present but
// empty, correctly signed.
func (f *fixture) doEmptyChain(t *testing.T, c *call) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.s.URL+"/sessions?"+c.query.Encode(), bytes.NewReader(c.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(x509sigv4.HeaderX509Chain, "")
	signByHand(t, req, c)
	resp, err := f.s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != ErrValidation {
		t.Fatalf("empty chain header: %d %s (%s)", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), resp.Header.Get(ReasonHeader))
	}
}

// checkGranted checks a 201 answer; wantDuration < 0 skips the duration check.
func checkGranted(wantDuration int) func(t *testing.T, f *fixture, c *call, out map[string]any) {
	return func(t *testing.T, f *fixture, c *call, out map[string]any) {
		t.Helper()
		set, _ := out["credentialSet"].([]any)
		if len(set) != 1 {
			t.Fatalf("credentialSet = %v", out)
		}
		cs := set[0].(map[string]any)
		cr := cs["credentials"].(map[string]any)
		for _, k := range []string{"accessKeyId", "secretAccessKey", "sessionToken", "expiration"} {
			if s, _ := cr[k].(string); s == "" {
				t.Fatalf("credentials.%s missing: %v", k, cr)
			}
		}
		exp, err := time.Parse(time.RFC3339, cr["expiration"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if cs["roleArn"] != testRole || cs["sourceIdentity"] != "CN="+c.leaf.Subject.CommonName {
			t.Fatalf("roleArn/sourceIdentity = %v / %v", cs["roleArn"], cs["sourceIdentity"])
		}
		if !strings.HasPrefix(out["subjectArn"].(string), "arn:aws:rolesanywhere:us-east-1:123456789012:subject/") {
			t.Fatalf("subjectArn %v", out["subjectArn"])
		}
		sessions := f.s.Sessions()
		if len(sessions) != 1 {
			t.Fatalf("%d sessions recorded", len(sessions))
		}
		s := sessions[0]
		if s.Serial.Cmp(c.leaf.SerialNumber) != 0 || s.CommonName != c.leaf.Subject.CommonName || s.RoleArn != testRole || s.AccessKeyID != cr["accessKeyId"] {
			t.Fatalf("session = %+v", s)
		}
		if wantDuration >= 0 {
			if s.DurationSeconds != wantDuration {
				t.Fatalf("duration %d, want %d", s.DurationSeconds, wantDuration)
			}
			if d := exp.Sub(s.Time); d < time.Duration(wantDuration-1)*time.Second || d > time.Duration(wantDuration)*time.Second {
				t.Fatalf("expiration %s is %s after issue", exp, d)
			}
		}
		if c.query.Get("profileArn") == f.profileArn && s.RoleSessionName != hex.EncodeToString(c.leaf.SerialNumber.Bytes()) {
			t.Fatalf("default session name %q, want hex serial", s.RoleSessionName)
		}
	}
}
