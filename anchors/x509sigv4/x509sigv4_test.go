package x509sigv4

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/testpki"
)

func TestParseAuthorization(t *testing.T) {
	const sig = "3046022100aa"
	tests := []struct {
		name    string
		in      string
		want    *Authorization
		wantErr string
	}{
		{
			name: "helper v1.5 ECDSA",
			in:   "AWS4-X509-ECDSA-SHA256 Credential=305441741/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=amz-sdk-invocation-id;amz-sdk-request;content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain, Signature=" + sig,
			want: &Authorization{Algorithm: AlgorithmECDSA, Serial: "305441741", Date: "20261123", Region: "us-east-1", Service: "rolesanywhere",
				SignedHeaders: []string{"amz-sdk-invocation-id", "amz-sdk-request", "content-type", "host", "x-amz-date", "x-amz-x509", "x-amz-x509-chain"},
				Signature:     []byte{0x30, 0x46, 0x02, 0x21, 0x00, 0xaa}},
		},
		{
			name: "RSA, components reordered, no spaces",
			in:   "AWS4-X509-RSA-SHA256 Signature=00ff,SignedHeaders=host;x-amz-date;x-amz-x509,Credential=0/20240229/eu-west-3/rolesanywhere/aws4_request",
			want: &Authorization{Algorithm: AlgorithmRSA, Serial: "0", Date: "20240229", Region: "eu-west-3", Service: "rolesanywhere",
				SignedHeaders: []string{"host", "x-amz-date", "x-amz-x509"}, Signature: []byte{0, 0xff}},
		},
		{name: "empty", in: "", wantErr: "missing credential"},
		{name: "HMAC SigV4", in: "AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "unsupported algorithm"},
		{name: "ML-DSA not supported", in: "AWS4-X509-MLDSA Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "unsupported algorithm"},
		{name: "hex serial", in: "AWS4-X509-RSA-SHA256 Credential=1234abcd/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "decimal"},
		{name: "negative serial", in: "AWS4-X509-RSA-SHA256 Credential=-5/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "decimal"},
		{name: "serial too long", in: "AWS4-X509-RSA-SHA256 Credential=" + strings.Repeat("9", 50) + "/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "decimal"},
		{name: "bad date", in: "AWS4-X509-RSA-SHA256 Credential=1/20261332/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "valid date"},
		{name: "short date", in: "AWS4-X509-RSA-SHA256 Credential=1/2026112/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "YYYYMMDD"},
		{name: "four scope parts", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/aws4_request, SignedHeaders=host, Signature=00", wantErr: "serial/date"},
		{name: "bad terminator", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws5_request, SignedHeaders=host, Signature=00", wantErr: "aws4_request"},
		{name: "empty region", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123//rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "region"},
		{name: "uppercase header", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=Host, Signature=00", wantErr: "bad signed header"},
		{name: "empty header name", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host;;x-amz-date, Signature=00", wantErr: "bad signed header"},
		{name: "duplicate header", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host;host, Signature=00", wantErr: "twice"},
		{name: "empty signed headers", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=, Signature=00", wantErr: "empty SignedHeaders"},
		{name: "odd hex", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=abc", wantErr: "not hex"},
		{name: "empty signature", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=", wantErr: "empty Signature"},
		{name: "missing signature", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host", wantErr: "missing Signature"},
		{name: "missing credential", in: "AWS4-X509-RSA-SHA256 SignedHeaders=host, Signature=00", wantErr: "missing Credential"},
		{name: "duplicate credential", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00", wantErr: "duplicate Credential"},
		{name: "unknown component", in: "AWS4-X509-RSA-SHA256 Credential=1/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00, Foo=bar", wantErr: "unknown component"},
		{name: "no equals", in: "AWS4-X509-RSA-SHA256 Credential", wantErr: "malformed component"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuthorization(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAuthorization() error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAuthorization() error = %v", err)
			}
			if !reflect.DeepEqual(got, *tt.want) {
				t.Fatalf("ParseAuthorization() = %+v, want %+v", got, *tt.want)
			}
			again, err := ParseAuthorization(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip of %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestStripExcessSpaces(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a:b", "a:b"},
		{"  a:b  ", "a:b"},
		{"a:  b   c ", "a: b c"},
		{"a:\tb", "a:\tb"},
		{"amz-sdk-request:attempt=1; max=3", "amz-sdk-request:attempt=1; max=3"},
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		if got := stripExcessSpaces(tt.in); got != tt.want {
			t.Errorf("stripExcessSpaces(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCanonicalRequest(t *testing.T) {
	req := httptest.NewRequest("POST", "/prefix/sessions?roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr&profileArn=a+b", nil)
	req.Host = "127.0.0.1:18443"
	req.Header.Set("X-Amz-Date", "20261123T113512Z")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "  two   three ")
	got, err := CanonicalRequest(req, []string{"host", "x-amz-date", "x-multi"}, "abc")
	if err != nil {
		t.Fatal(err)
	}
	want := "POST\n/sessions\nprofileArn=a%20b&roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr\n" +
		"host:127.0.0.1:18443\nx-amz-date:20261123T113512Z\nx-multi:one, two three\n\n" +
		"host;x-amz-date;x-multi\nabc"
	if got != want {
		t.Fatalf("CanonicalRequest =\n%q\nwant\n%q", got, want)
	}
	if _, err := CanonicalRequest(req, []string{"host", "x-amz-x509"}, "abc"); err == nil {
		t.Fatal("missing signed header accepted")
	}
	sts := StringToSign(AlgorithmECDSA, "20261123T113512Z", "20261123/us-east-1/rolesanywhere/aws4_request", want)
	if !strings.HasPrefix(sts, "AWS4-X509-ECDSA-SHA256\n20261123T113512Z\n20261123/us-east-1/rolesanywhere/aws4_request\n") || len(sts) != len("AWS4-X509-ECDSA-SHA256\n20261123T113512Z\n20261123/us-east-1/rolesanywhere/aws4_request\n")+64 {
		t.Fatalf("StringToSign = %q", sts)
	}
}

// verifyRequest is what a verifier does with a signed request.
func verifyRequest(t *testing.T, req *http.Request, body []byte) (Authorization, string, string) {
	t.Helper()
	auth, err := ParseAuthorization(req.Header.Get(HeaderAuthorization))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := DecodeCertificate(req.Header.Get(HeaderX509))
	if err != nil {
		t.Fatal(err)
	}
	if auth.Serial != leaf.SerialNumber.String() {
		t.Fatalf("Credential serial %s, leaf serial %s", auth.Serial, leaf.SerialNumber)
	}
	creq, err := CanonicalRequest(req, auth.SignedHeaders, PayloadHash(body))
	if err != nil {
		t.Fatal(err)
	}
	sts := StringToSign(auth.Algorithm, req.Header.Get(HeaderDate), auth.Scope(), creq)
	if err := VerifySignature(leaf.PublicKey, auth.Algorithm, sts, auth.Signature); err != nil {
		t.Fatalf("signature: %v\ncanonical request:\n%s", err, creq)
	}
	return auth, creq, sts
}

func TestSignRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 23, 11, 35, 12, 0, time.UTC)
	for _, kind := range []string{"ec", "rsa"} {
		for _, withChain := range []bool{false, true} {
			t.Run(kind+map[bool]string{true: "+chain", false: ""}[withChain], func(t *testing.T) {
				p := newPKI(t, kind)
				body := []byte(`{"durationSeconds":3600}`)
				req, _ := http.NewRequest("POST", "http://127.0.0.1:9/sessions?roleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("User-Agent", "not-signed")
				var chain []*x509.Certificate
				if withChain {
					chain = append(chain, p.inter)
				}
				if err := Sign(req, body, p.leafKey, p.leaf, chain, "us-east-1", now); err != nil {
					t.Fatal(err)
				}
				if _, ok := req.Header[HeaderX509Chain]; ok != withChain {
					t.Fatalf("chain header present = %v, want %v", ok, withChain)
				}
				auth, _, _ := verifyRequest(t, req, body)
				want := "content-type;host;x-amz-date;x-amz-x509"
				if withChain {
					want += ";x-amz-x509-chain"
				}
				if got := strings.Join(auth.SignedHeaders, ";"); got != want {
					t.Fatalf("SignedHeaders = %s, want %s", got, want)
				}
				if auth.Serial != "305441741" || auth.Scope() != "20261123/us-east-1/rolesanywhere/aws4_request" {
					t.Fatalf("credential = %s/%s", auth.Serial, auth.Scope())
				}
				// Tampering with the body, a signed header or the query breaks it.
				creq, _ := CanonicalRequest(req, auth.SignedHeaders, PayloadHash([]byte(`{"durationSeconds":43200}`)))
				sts := StringToSign(auth.Algorithm, req.Header.Get(HeaderDate), auth.Scope(), creq)
				if VerifySignature(p.leaf.PublicKey, auth.Algorithm, sts, auth.Signature) == nil {
					t.Fatal("signature verified over a different body")
				}
			})
		}
	}
}

func TestSignRejectsMismatchedKey(t *testing.T) {
	p := newPKI(t, "ec")
	req, _ := http.NewRequest("POST", "http://127.0.0.1:9/sessions", nil)
	if err := Sign(req, nil, testpki.Key(t, "rsa"), p.leaf, nil, "us-east-1", time.Now()); err == nil {
		t.Fatal("RSA signer accepted for an ECDSA certificate")
	}
	if err := Sign(req, nil, p.leafKey, p.leaf, nil, "", time.Now()); err == nil {
		t.Fatal("empty region accepted")
	}
}

func TestDecodeChain(t *testing.T) {
	p := newPKI(t, "ec")
	got, err := DecodeChain(EncodeChain([]*x509.Certificate{p.inter, p.root}))
	if err != nil || len(got) != 2 || !got[0].Equal(p.inter) || !got[1].Equal(p.root) {
		t.Fatalf("DecodeChain round trip: %v, %v", got, err)
	}
	for _, bad := range []string{"", " ", ",", EncodeCertificate(p.inter) + ",", "!!!"} {
		if _, err := DecodeChain(bad); err == nil {
			t.Errorf("DecodeChain(%q) accepted", bad)
		}
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-X509-ECDSA-SHA256 Credential=305441741/20261123/us-east-1/rolesanywhere/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature=3046022100aa")
	f.Add("AWS4-X509-RSA-SHA256 Signature=00ff,SignedHeaders=host,Credential=0/20240229/eu-west-3/rolesanywhere/aws4_request")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAuthorization(s)
		if err != nil {
			return
		}
		out := a.String()
		b, err := ParseAuthorization(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed %+v into %+v", a, b)
		}
		if hex.EncodeToString(a.Signature) == "" || len(a.SignedHeaders) == 0 || a.Serial == "" {
			t.Fatalf("accepted incomplete header %q", s)
		}
	})
}
