package credproc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/anchors/x509sigv4"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

const (
	testCN  = "host1.covalent.example.net"
	roleARN = "arn:aws:iam::123456789012:role/test-role"
)

// enroll redeems a token at c for a fresh P-256 key and writes the result
// into a new host folder, as `lanyard enroll` does.
func enroll(t *testing.T, c *testca.CA, cn string) (string, *hostdir.Version) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := caclient.New(c.URL, c.Authority.RootsPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Certificates.Enroll(context.Background(), connect.NewRequest(&v1.EnrollRequest{Token: c.Token(t, cn), Csr: csr}))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	b := resp.Msg.GetBundle()
	dir := filepath.Join(t.TempDir(), "host")
	d, err := hostdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(hostdir.Material{CertPEM: []byte(b.GetCertificatePem()), ChainPEM: []byte(b.GetChainPem()), KeyPEM: pkcs8PEM(t, key)}); err != nil {
		t.Fatal(err)
	}
	v, err := d.LoadCurrent()
	if err != nil {
		t.Fatal(err)
	}
	return dir, v
}

func pkcs8PEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// world is a CA, an emulator trusting it, and one enrolled host folder.
type world struct {
	ca         *testca.CA
	emu        *emulator.Server
	dir        string
	version    *hostdir.Version
	anchor     string
	profile    string
	profileRSN string // a profile that accepts roleSessionName
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{ca: testca.Start(t, testca.Options{})}
	w.emu, w.anchor, w.profile = w.ca.SeededEmulator(t, roleARN)
	var err error
	if w.profileRSN, err = w.emu.SeedProfile(emulator.ProfileSpec{Name: "rsn", RoleArns: []string{roleARN}, AcceptRoleSessionName: true}); err != nil {
		t.Fatal(err)
	}
	w.dir, w.version = enroll(t, w.ca, testCN)
	return w
}

func (w *world) opts() Options {
	return Options{Dir: w.dir, TrustAnchorARN: w.anchor, ProfileARN: w.profile, RoleARN: roleARN, Endpoint: w.emu.URL}
}

func TestCredentialsAgainstEmulator(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name         string
		change       func(*Options)
		wantDuration int
		wantSession  string
	}{
		{name: "defaults", wantDuration: 3600, wantSession: ""},
		{name: "duration and session name", change: func(o *Options) {
			o.ProfileARN, o.DurationSeconds, o.RoleSessionName = w.profileRSN, 900, "my-sess"
		}, wantDuration: 900, wantSession: "my-sess"},
		{name: "explicit region, endpoint with trailing slash", change: func(o *Options) {
			o.Region, o.Endpoint = "us-east-1", w.emu.URL+"/"
		}, wantDuration: 3600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := w.opts()
			if tt.change != nil {
				tt.change(&o)
			}
			before := len(w.emu.Sessions())
			out, err := Credentials(context.Background(), o)
			if err != nil {
				t.Fatalf("Credentials: %v", err)
			}
			sessions := w.emu.Sessions()
			if len(sessions) != before+1 {
				t.Fatalf("emulator recorded %d new sessions, want 1", len(sessions)-before)
			}
			s := sessions[len(sessions)-1]
			if s.Serial.Cmp(w.version.Cert.SerialNumber) != 0 {
				t.Errorf("emulator saw serial %s, want the current version's %s", s.Serial, w.version.Cert.SerialNumber)
			}
			if s.CommonName != testCN || s.RoleArn != roleARN || s.DurationSeconds != tt.wantDuration {
				t.Errorf("session = %+v, want CN %s, role %s, duration %d", s, testCN, roleARN, tt.wantDuration)
			}
			if tt.wantSession != "" && s.RoleSessionName != tt.wantSession {
				t.Errorf("role session name = %q, want %q", s.RoleSessionName, tt.wantSession)
			}
			if out.Version != 1 || out.AccessKeyId != s.AccessKeyID || out.SecretAccessKey == "" || out.SessionToken == "" {
				t.Errorf("output = %+v, want version 1 and the emulator's key %s", out, s.AccessKeyID)
			}
			exp, err := out.Expires()
			if err != nil || !exp.Equal(s.Expiration) {
				t.Errorf("expiration = %v (%v), want %v", exp, err, s.Expiration)
			}
		})
	}
}

// TestOutputJSON pins the exact shape aws_signing_helper prints.
func TestOutputJSON(t *testing.T) {
	out := Output{Version: 1, AccessKeyId: "ASIA1", SecretAccessKey: "s/k", SessionToken: "tok", Expiration: "2026-11-23T12:35:12Z"}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Version":1,"AccessKeyId":"ASIA1","SecretAccessKey":"s/k","SessionToken":"tok","Expiration":"2026-11-23T12:35:12Z"}`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant   %s", b, want)
	}
}

// writeVersion puts new material into the host folder as its current version.
func writeVersion(t *testing.T, dir string, m hostdir.Material) {
	t.Helper()
	d, err := hostdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(m); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialsRefused(t *testing.T) {
	w := newWorld(t)
	foreign := testca.Start(t, testca.Options{})
	foreignDir, _ := enroll(t, foreign, testCN)

	// A tampered certificate: the same key and fields, one bit of the CA's
	// signature flipped.
	tamperedDir, v := enroll(t, w.ca, "host2.covalent.example.net")
	der := append([]byte(nil), v.Cert.Raw...)
	der[len(der)-5] ^= 0x01
	writeVersion(t, tamperedDir, hostdir.Material{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ChainPEM: v.ChainPEM, KeyPEM: v.KeyPEM,
	})

	// An expired certificate, issued by a CA whose clock is three days behind.
	clk := clock.NewFake(time.Now().Add(-72 * time.Hour))
	old := testca.Start(t, testca.Options{Clock: clk})
	expiredDir, _ := enroll(t, old, testCN)

	tests := []struct {
		name     string
		change   func(*Options)
		wantIs   error
		wantText string
		wantSent bool
	}{
		{name: "foreign CA", change: func(o *Options) { o.Dir = foreignDir },
			wantIs: ErrAccessDenied, wantText: "CreateSession: 403 AccessDeniedException: Untrusted signing certificate", wantSent: true},
		{name: "tampered certificate", change: func(o *Options) { o.Dir = tamperedDir },
			wantIs: ErrAccessDenied, wantText: "CreateSession: 403 AccessDeniedException: Untrusted signing certificate", wantSent: true},
		{name: "expired certificate", change: func(o *Options) { o.Dir = expiredDir },
			wantIs: ErrCertificateExpired, wantText: "certificate has expired"},
		{name: "clock before the certificate", change: func(o *Options) { o.Now = func() time.Time { return w.version.Cert.NotBefore.Add(-time.Hour) } },
			wantIs: ErrCertificateNotYetValid, wantText: "not valid yet"},
		{name: "role not in profile", change: func(o *Options) { o.RoleARN = "arn:aws:iam::123456789012:role/other" },
			wantIs: ErrAccessDenied, wantText: "CreateSession: 403 AccessDeniedException: Access Denied", wantSent: true},
		{name: "session name refused by profile", change: func(o *Options) { o.RoleSessionName = "nope" },
			wantIs: ErrAccessDenied, wantText: "403 AccessDeniedException", wantSent: true},
		{name: "region mismatch", change: func(o *Options) {
			o.ProfileARN = strings.Replace(o.ProfileARN, ":us-east-1:", ":eu-west-1:", 1)
		}, wantIs: ErrRegionMismatch, wantText: "trust anchor and profile regions don't match"},
		{name: "missing role ARN", change: func(o *Options) { o.RoleARN = "" },
			wantIs: ErrInvalidOptions, wantText: "missing role ARN"},
		{name: "not a host folder", change: func(o *Options) { o.Dir = t.TempDir() },
			wantIs: ErrNotHostFolder, wantText: "not enrolled"},
		{name: "missing folder", change: func(o *Options) { o.Dir = filepath.Join(t.TempDir(), "nope") },
			wantIs: ErrNotHostFolder},
		{name: "bad endpoint", change: func(o *Options) { o.Endpoint = "ftp://x" },
			wantIs: ErrInvalidOptions, wantText: "endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := w.opts()
			tt.change(&o)
			var mu sync.Mutex
			sent := 0
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				mu.Lock()
				sent++
				mu.Unlock()
				w.emu.Handler().ServeHTTP(rw, r)
			}))
			defer srv.Close()
			if o.Endpoint == w.emu.URL {
				o.Endpoint = srv.URL
			}
			out, err := Credentials(context.Background(), o)
			if err == nil {
				t.Fatalf("Credentials = %+v, want an error", out)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			if (sent > 0) != tt.wantSent {
				t.Errorf("sent %d requests, want sent=%v", sent, tt.wantSent)
			}
			if tt.wantSent && sent != 1 {
				t.Errorf("a 4xx answer was tried %d times, want 1 (no retry)", sent)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	w := newWorld(t)
	fail := func(status int, code, msg string) http.HandlerFunc {
		return func(rw http.ResponseWriter, _ *http.Request) {
			if code != "" {
				rw.Header().Set("X-Amzn-ErrorType", code)
			}
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(status)
			_ = json.NewEncoder(rw).Encode(map[string]string{"message": msg})
		}
	}
	pass := w.emu.Handler()
	tests := []struct {
		name      string
		answers   []http.Handler // per attempt; the last repeats
		wantErr   error
		wantText  string
		wantTries int
	}{
		{name: "500 twice then 201", answers: []http.Handler{
			fail(500, "InternalServerException", "boom"), fail(500, "InternalServerException", "boom"), pass}, wantTries: 3},
		{name: "503 once", answers: []http.Handler{fail(503, "", "unavailable"), pass}, wantTries: 2},
		{name: "throttled once", answers: []http.Handler{fail(429, "ThrottlingException", "Rate exceeded"), pass}, wantTries: 2},
		{name: "500 always", answers: []http.Handler{fail(500, "InternalServerException", "boom")},
			wantTries: 3, wantText: "CreateSession: 500 InternalServerException: boom (gave up after 3 attempts)"},
		{name: "throttled always", answers: []http.Handler{fail(400, "ThrottlingException", "Rate exceeded")},
			wantTries: 3, wantErr: ErrThrottled},
		{name: "403 not retried", answers: []http.Handler{fail(403, "AccessDeniedException", "Invalid signature"), pass},
			wantTries: 1, wantErr: ErrAccessDenied, wantText: "CreateSession: 403 AccessDeniedException: Invalid signature"},
		{name: "400 not retried", answers: []http.Handler{fail(400, "ValidationException", "bad"), pass},
			wantTries: 1, wantText: "CreateSession: 400 ValidationException: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []*http.Request
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n := len(seen)
				seen = append(seen, r.Clone(context.Background()))
				mu.Unlock()
				tt.answers[min(n, len(tt.answers)-1)].ServeHTTP(rw, r)
			}))
			defer srv.Close()
			o := w.opts()
			o.Endpoint = srv.URL
			out, err := Credentials(context.Background(), o)
			if len(seen) != tt.wantTries {
				t.Errorf("%d attempts, want %d", len(seen), tt.wantTries)
			}
			wantOK := tt.wantErr == nil && tt.wantText == ""
			if wantOK {
				if err != nil || out == nil || out.AccessKeyId == "" {
					t.Fatalf("Credentials = %+v, %v; want credentials", out, err)
				}
			} else {
				if err == nil {
					t.Fatalf("Credentials = %+v, want an error", out)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %q is not %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("error %q does not contain %q", err, tt.wantText)
				}
			}
			// Every attempt is signed anew and numbered like the SDK's.
			inv := ""
			for i, r := range seen {
				if got, want := r.Header.Get("Amz-Sdk-Request"), "attempt="+string(rune('1'+i))+"; max=3"; got != want {
					t.Errorf("attempt %d: amz-sdk-request %q, want %q", i+1, got, want)
				}
				if i == 0 {
					inv = r.Header.Get("Amz-Sdk-Invocation-Id")
				} else if r.Header.Get("Amz-Sdk-Invocation-Id") != inv {
					t.Errorf("attempt %d: invocation id changed", i+1)
				}
				a, err := x509sigv4.ParseAuthorization(r.Header.Get("Authorization"))
				if err != nil || !a.Signs("amz-sdk-request") || !a.Signs("amz-sdk-invocation-id") || !a.Signs("content-type") {
					t.Errorf("attempt %d: Authorization %v (%v) does not sign the SDK headers", i+1, a, err)
				}
			}
		})
	}
}

func TestRequestShape(t *testing.T) {
	w := newWorld(t)
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		body, _ = io.ReadAll(r.Body)
		rw.WriteHeader(201)
		_, _ = rw.Write([]byte(`{"credentialSet":[{"credentials":{"accessKeyId":"A","secretAccessKey":"S","sessionToken":"T","expiration":"2026-11-23T12:35:12Z"}}]}`))
	}))
	defer srv.Close()
	o := w.opts()
	o.Endpoint = srv.URL + "/prefix"
	o.RoleSessionName = "my-sess"
	out, err := Credentials(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if out.Expiration != "2026-11-23T12:35:12Z" {
		t.Errorf("expiration %q not passed through verbatim", out.Expiration)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/prefix/sessions" {
		t.Errorf("request %s %s, want POST /prefix/sessions", got.Method, got.URL.Path)
	}
	if q := got.URL.Query(); q.Get("profileArn") != w.profile || q.Get("roleArn") != roleARN || q.Get("trustAnchorArn") != w.anchor {
		t.Errorf("query %q lacks the ARNs", got.URL.RawQuery)
	}
	if string(body) != `{"durationSeconds":3600,"roleSessionName":"my-sess"}` {
		t.Errorf("body %s", body)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if !regexp.MustCompile(`^AWS4-X509-ECDSA-SHA256 Credential=\d+/\d{8}/us-east-1/rolesanywhere/aws4_request, SignedHeaders=amz-sdk-invocation-id;amz-sdk-request;content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain, Signature=[0-9a-f]+$`).
		MatchString(got.Header.Get("Authorization")) {
		t.Errorf("Authorization %q", got.Header.Get("Authorization"))
	}
}

func TestMalformedSuccess(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name string
		body string
	}{
		{"empty credential set", `{"credentialSet":[]}`},
		{"no credentials", `{"credentialSet":[{}]}`},
		{"missing session token", `{"credentialSet":[{"credentials":{"accessKeyId":"A","secretAccessKey":"S","expiration":"2026-11-23T12:35:12Z"}}]}`},
		{"bad expiration", `{"credentialSet":[{"credentials":{"accessKeyId":"A","secretAccessKey":"S","sessionToken":"T","expiration":"tomorrow"}}]}`},
		{"not JSON", `<html>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
				rw.WriteHeader(201)
				_, _ = rw.Write([]byte(tt.body))
			}))
			defer srv.Close()
			o := w.opts()
			o.Endpoint = srv.URL
			if _, err := Credentials(context.Background(), o); !errors.Is(err, ErrNoCredentials) {
				t.Errorf("error %v, want ErrNoCredentials", err)
			}
		})
	}
}

func TestParseAPIError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header string
		body   string
		want   string
		denied bool
	}{
		{"header code", 403, "AccessDeniedException", `{"message":"Untrusted signing certificate"}`,
			"CreateSession: 403 AccessDeniedException: Untrusted signing certificate", true},
		{"header with URL suffix", 403, "AccessDeniedException:http://internal.amazon.com/coral/", `{"message":"Invalid signature"}`,
			"CreateSession: 403 AccessDeniedException: Invalid signature", true},
		{"__type with namespace", 400, "", `{"__type":"com.amazonaws.rolesanywhere#ValidationException","message":"bad duration"}`,
			"CreateSession: 400 ValidationException: bad duration", false},
		{"code and Message", 404, "", `{"code":"ResourceNotFoundException","Message":"Profile not found"}`,
			"CreateSession: 404 ResourceNotFoundException: Profile not found", false},
		{"plain text body", 502, "", "<html>\n Bad   gateway\n</html>", "CreateSession: 502 Bad Gateway: <html> Bad gateway </html>", false},
		{"empty body", 403, "", "", "CreateSession: 403 Forbidden", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
			if tt.header != "" {
				resp.Header.Set("X-Amzn-ErrorType", tt.header)
			}
			e := parseAPIError(resp, []byte(tt.body))
			if e.Error() != tt.want {
				t.Errorf("Error() = %q, want %q", e.Error(), tt.want)
			}
			if errors.Is(e, ErrAccessDenied) != tt.denied {
				t.Errorf("Is(ErrAccessDenied) = %v, want %v", !tt.denied, tt.denied)
			}
		})
	}
}

func TestTransport(t *testing.T) {
	w := newWorld(t)
	tlsEmu := emulator.NewServer(emulator.Options{TLS: true})
	t.Cleanup(tlsEmu.Close)
	anchor, profile, err := tlsEmu.Seed(w.ca.Authority.Roots(), roleARN)
	if err != nil {
		t.Fatal(err)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	tests := []struct {
		name     string
		endpoint string
		client   *http.Client
		wantOK   bool
		wantText []string
		noText   string
	}{
		{name: "TLS emulator trusted", endpoint: tlsEmu.URL, client: tlsEmu.Client(), wantOK: true},
		{name: "TLS emulator untrusted: no retry", endpoint: tlsEmu.URL, client: &http.Client{},
			wantText: []string{"certificate"}, noText: "gave up"},
		{name: "connection refused: retried", endpoint: closedURL,
			wantText: []string{"connection refused", "gave up after 3 attempts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := w.opts()
			o.TrustAnchorARN, o.ProfileARN, o.Endpoint, o.HTTPClient = anchor, profile, tt.endpoint, tt.client
			out, err := Credentials(context.Background(), o)
			if tt.wantOK {
				if err != nil || out.AccessKeyId == "" {
					t.Fatalf("Credentials = %+v, %v", out, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Credentials = %+v, want an error", out)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.noText != "" && strings.Contains(err.Error(), tt.noText) {
				t.Errorf("error %q contains %q", err, tt.noText)
			}
		})
	}
}
