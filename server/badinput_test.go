package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
)

// badEnv is the running CA and the fixtures the hostile requests use, all
// made before the store snapshot.
type badEnv struct {
	c                                   *testca.CA
	anon, admin, host, expired, foreign *http.Client
	revoked                             *http.Client
	token, tokenWithSAN, usedToken      string
	expiredToken                        string
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func httpClientWith(c *testca.CA, cert *tls.Certificate) *http.Client {
	return c.Client(&testing.T{}, cert).HTTP
}

func selfSignedClient(t *testing.T) *tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "evil.covalent.example.net"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func newBadEnv(t *testing.T) *badEnv {
	clk := clock.NewFake(time.Now())
	profiles := testca.DefaultProfiles()
	profiles["short"] = issuance.ProfileConfig{CN: []string{"*.short.example.net"}, DefaultTTL: 5 * time.Minute, MaxTTL: 5 * time.Minute}
	c := testca.Start(t, testca.Options{Clock: clk, Profiles: profiles, Server: func(o *server.Options) {
		o.ReadTimeout = 2 * time.Second
	}})
	e := &badEnv{c: c, anon: c.Anonymous.HTTP, admin: c.Admin.HTTP}
	ctx := context.Background()
	b, key := enroll(t, c, "good.covalent.example.net")
	e.host = httpClientWith(c, tlsCert(t, b, key))
	rb, rkey := enroll(t, c, "revoked.covalent.example.net")
	if _, err := c.Revocation.Revoke(ctx, revocation.Request{Serial: rb.GetSerial(), Reason: 1, By: "test"}); err != nil {
		t.Fatal(err)
	}
	e.revoked = httpClientWith(c, tlsCert(t, rb, rkey))
	tok, err := c.Admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: "old.short.example.net", Profile: "short"}))
	if err != nil {
		t.Fatal(err)
	}
	ekey := newKey(t)
	er, err := c.Anonymous.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: tok.Msg.GetToken(), Csr: csr(t, ekey, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	e.expired = httpClientWith(c, tlsCert(t, er.Msg.GetBundle(), ekey))
	e.foreign = httpClientWith(c, selfSignedClient(t))
	e.token = c.Token(t, "a.covalent.example.net")
	e.tokenWithSAN = c.Token(t, "s.covalent.example.net", "s.covalent.example.net")
	e.usedToken = c.Token(t, "u.covalent.example.net")
	enrollWith(t, c, e.usedToken)
	exp, err := c.Admin.Admin.CreateEnrollmentToken(ctx, connect.NewRequest(&v1.CreateEnrollmentTokenRequest{Cn: "late.covalent.example.net", TtlSeconds: 60}))
	if err != nil {
		t.Fatal(err)
	}
	e.expiredToken = exp.Msg.GetToken()
	clk.Advance(10 * time.Minute) // the short certificate and the 60 s token are now expired
	return e
}

func enrollWith(t *testing.T, c *testca.CA, tok string) {
	t.Helper()
	if _, err := c.Anonymous.Certificates.Enroll(context.Background(), connect.NewRequest(&v1.EnrollRequest{Token: tok, Csr: csr(t, newKey(t), nil)})); err != nil {
		t.Fatal(err)
	}
}

type badCase struct {
	name   string
	client func(*badEnv) *http.Client
	method string
	path   string
	ctype  string
	body   func(t *testing.T, e *badEnv) io.Reader
	want   int
}

const enrollPath = "/lanyard.v1.CertificateService/Enroll"
const renewPath = "/lanyard.v1.CertificateService/Renew"
const adminToken = "/lanyard.v1.AdminService/CreateEnrollmentToken"
const adminRevoke = "/lanyard.v1.AdminService/RevokeCertificate"

func enrollBody(tok func(*badEnv) string, der func(t *testing.T) []byte) func(*testing.T, *badEnv) io.Reader {
	return func(t *testing.T, e *badEnv) io.Reader {
		return jsonBody(map[string]string{"token": tok(e), "csr": b64(der(t))})
	}
}

func goodCSR(t *testing.T) []byte { return csr(t, newKey(t), nil) }
func tokenOf(e *badEnv) string    { return e.token }

func csrWith(tmpl *x509.CertificateRequest) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return csr(t, newKey(t), tmpl) }
}

func rsaCSR(bits int) func(t *testing.T) []byte {
	return func(t *testing.T) []byte {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return csr(t, k, nil)
	}
}

func curveCSR(c elliptic.Curve) func(t *testing.T) []byte {
	return func(t *testing.T) []byte {
		k, _ := ecdsa.GenerateKey(c, rand.Reader)
		return csr(t, k, nil)
	}
}

func anon(e *badEnv) *http.Client { return e.anon }

func badCases() []badCase {
	manySANs := make([]string, 10000)
	for i := range manySANs {
		manySANs[i] = fmt.Sprintf("h%05d.covalent.example.net", i)
	}
	tokenReq := func(cn string) func(*testing.T, *badEnv) io.Reader {
		return func(*testing.T, *badEnv) io.Reader { return jsonBody(map[string]any{"cn": cn}) }
	}
	renewBody := func(der func(t *testing.T) []byte) func(*testing.T, *badEnv) io.Reader {
		return func(t *testing.T, e *badEnv) io.Reader { return jsonBody(map[string]string{"csr": b64(der(t))}) }
	}
	return []badCase{
		// Enrollment: tokens.
		{"no token", anon, "POST", enrollPath, "application/json", enrollBody(func(*badEnv) string { return "" }, goodCSR), 401},
		{"malformed token", anon, "POST", enrollPath, "application/json", enrollBody(func(*badEnv) string { return "lyt1_zz" }, goodCSR), 401},
		{"unknown token", anon, "POST", enrollPath, "application/json", enrollBody(func(*badEnv) string { s, _ := issuance.NewTokenSecret(); return s }, goodCSR), 401},
		{"used token", anon, "POST", enrollPath, "application/json", enrollBody(func(e *badEnv) string { return e.usedToken }, goodCSR), 401},
		{"expired token", anon, "POST", enrollPath, "application/json", enrollBody(func(e *badEnv) string { return e.expiredToken }, goodCSR), 401},
		{"token with NUL", anon, "POST", enrollPath, "application/json", enrollBody(func(e *badEnv) string { return e.token + "\x00" }, goodCSR), 401},
		// Enrollment: CSRs.
		{"empty CSR", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, func(*testing.T) []byte { return nil }), 400},
		{"garbage DER", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, func(*testing.T) []byte { return []byte{0x30, 0x82, 0xff, 0xff, 1, 2, 3} }), 400},
		{"truncated DER", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, func(t *testing.T) []byte { d := goodCSR(t); return d[:len(d)/2] }), 400},
		{"PEM instead of DER", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: goodCSR(t)})
		}), 400},
		{"truncated PEM", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, func(t *testing.T) []byte {
			p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: goodCSR(t)})
			return p[:40]
		}), 400},
		{"bad CSR signature", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, func(t *testing.T) []byte { d := goodCSR(t); d[len(d)-5] ^= 0x5a; return d }), 400},
		{"RSA 512", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, rsaCSR(512)), 400},
		{"RSA 1024", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, rsaCSR(1024)), 400},
		{"unknown curve P-224", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, curveCSR(elliptic.P224())), 400},
		{"curve P-521 not allowed", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, curveCSR(elliptic.P521())), 400},
		{"CSR asks other CN", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, csrWith(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin.covalent.example.net"}})), 403},
		{"CSR CN with NUL", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, csrWith(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "a.covalent.example.net\x00.evil"}})), 403},
		{"CSR CN with newline", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, csrWith(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "a.covalent.example.net\nCN=root"}})), 403},
		{"CSR extra SAN", anon, "POST", enrollPath, "application/json", enrollBody(func(e *badEnv) string { return e.tokenWithSAN }, csrWith(&x509.CertificateRequest{DNSNames: []string{"s.covalent.example.net", "t.covalent.example.net"}})), 403},
		{"CSR IP SAN", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, csrWith(&x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})), 403},
		{"CSR email SAN", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, csrWith(&x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}})), 403},
		{"CSR with 10,000 SANs", anon, "POST", enrollPath, "application/json", enrollBody(tokenOf, csrWith(&x509.CertificateRequest{DNSNames: manySANs})), 413},
		// Transport-level abuse.
		{"10 MB body", anon, "POST", enrollPath, "application/json", func(*testing.T, *badEnv) io.Reader { return bytes.NewReader(make([]byte, 10<<20)) }, 413},
		{"invalid JSON", anon, "POST", enrollPath, "application/json", func(*testing.T, *badEnv) io.Reader { return strings.NewReader(`{"token":`) }, 400},
		{"JSON wrong types", anon, "POST", enrollPath, "application/json", func(*testing.T, *badEnv) io.Reader { return strings.NewReader(`{"token":12,"csr":[1,2]}`) }, 400},
		{"unknown JSON field", anon, "POST", enrollPath, "application/json", func(*testing.T, *badEnv) io.Reader { return strings.NewReader(`{"tokenz":"x"}`) }, 401}, // protobuf JSON ignores unknown fields; the token is then missing,
		{"wrong content type", anon, "POST", enrollPath, "text/plain", func(*testing.T, *badEnv) io.Reader { return strings.NewReader("hello") }, 415},
		{"garbage protobuf", anon, "POST", enrollPath, "application/proto", func(*testing.T, *badEnv) io.Reader { return bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}) }, 400},
		{"GET on a POST procedure", anon, "GET", enrollPath, "", nil, 405},
		{"unknown procedure", anon, "POST", "/lanyard.v1.CertificateService/Steal", "application/json", func(*testing.T, *badEnv) io.Reader { return strings.NewReader("{}") }, 404},
		{"unknown service", anon, "POST", "/lanyard.v2.Nope/Enroll", "application/json", func(*testing.T, *badEnv) io.Reader { return strings.NewReader("{}") }, 404},
		// Renewal: who is asking.
		{"renew without client cert", anon, "POST", renewPath, "application/json", renewBody(goodCSR), 401},
		{"renew with foreign cert", func(e *badEnv) *http.Client { return e.foreign }, "POST", renewPath, "application/json", renewBody(goodCSR), 401},
		{"renew with expired cert", func(e *badEnv) *http.Client { return e.expired }, "POST", renewPath, "application/json", renewBody(goodCSR), 401},
		{"renew with revoked cert", func(e *badEnv) *http.Client { return e.revoked }, "POST", renewPath, "application/json", renewBody(goodCSR), 403},
		{"renew garbage CSR", func(e *badEnv) *http.Client { return e.host }, "POST", renewPath, "application/json", renewBody(func(*testing.T) []byte { return []byte("x") }), 400},
		{"renew changes CN", func(e *badEnv) *http.Client { return e.host }, "POST", renewPath, "application/json", renewBody(csrWith(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "other.covalent.example.net"}})), 403},
		{"renew to a key type the profile refuses", func(e *badEnv) *http.Client { return e.host }, "POST", renewPath, "application/json", renewBody(curveCSR(elliptic.P521())), 400},
		// Admin calls.
		{"token without admin cert", anon, "POST", adminToken, "application/json", tokenReq("x.covalent.example.net"), 401},
		{"token with host cert", func(e *badEnv) *http.Client { return e.host }, "POST", adminToken, "application/json", tokenReq("x.covalent.example.net"), 403},
		{"token with foreign cert", func(e *badEnv) *http.Client { return e.foreign }, "POST", adminToken, "application/json", tokenReq("x.covalent.example.net"), 401},
		{"token CN outside profile", func(e *badEnv) *http.Client { return e.admin }, "POST", adminToken, "application/json", tokenReq("evil.example.com"), 403},
		{"token CN with NUL", func(e *badEnv) *http.Client { return e.admin }, "POST", adminToken, "application/json", tokenReq("x\x00.covalent.example.net"), 403},
		{"token CN with newline", func(e *badEnv) *http.Client { return e.admin }, "POST", adminToken, "application/json", tokenReq("x\n.covalent.example.net"), 403},
		{"token CN unicode confusable", func(e *badEnv) *http.Client { return e.admin }, "POST", adminToken, "application/json", tokenReq("хост.covalent.example.net"), 403},
		{"token unknown profile", func(e *badEnv) *http.Client { return e.admin }, "POST", adminToken, "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"cn": "x.covalent.example.net", "profile": "nope"})
		}, 400},
		{"token negative ttl", func(e *badEnv) *http.Client { return e.admin }, "POST", adminToken, "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"cn": "x.covalent.example.net", "ttlSeconds": "-5"})
		}, 400},
		{"token 10,000 SANs", func(e *badEnv) *http.Client { return e.admin }, "POST", adminToken, "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"cn": "x.covalent.example.net", "dnsNames": manySANs})
		}, 413},
		{"revoke unknown serial", func(e *badEnv) *http.Client { return e.admin }, "POST", adminRevoke, "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"serial": "00112233445566778899aabbccddeeff", "reason": 1})
		}, 404},
		{"revoke non-hex serial", func(e *badEnv) *http.Client { return e.admin }, "POST", adminRevoke, "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"serial": "../../etc/passwd", "reason": 1})
		}, 400},
		{"revoke unknown reason", func(e *badEnv) *http.Client { return e.admin }, "POST", adminRevoke, "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"serial": "00112233445566778899aabbccddeeff", "reason": 77})
		}, 400},
		{"revoke without admin cert", anon, "POST", adminRevoke, "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"cn": "good.covalent.example.net", "reason": 1})
		}, 401},
		{"get certificate bad serial", func(e *badEnv) *http.Client { return e.admin }, "POST", "/lanyard.v1.AdminService/GetCertificate", "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"serial": "zz"})
		}, 404},
		{"list with garbage page token", func(e *badEnv) *http.Client { return e.admin }, "POST", "/lanyard.v1.AdminService/ListCertificates", "application/json", func(*testing.T, *badEnv) io.Reader {
			return jsonBody(map[string]any{"pageToken": "not-hex"})
		}, 404},
		// Plain routes.
		{"path traversal", anon, "GET", "/roots.pem/../../../etc/passwd", "", nil, 404},
		{"encoded traversal", anon, "GET", "/admin/..%2f..%2fetc%2fpasswd", "", nil, 404},
		{"unknown path", anon, "GET", "/etc/passwd", "", nil, 404},
		{"POST to roots", anon, "POST", "/roots.pem", "text/plain", func(*testing.T, *badEnv) io.Reader { return strings.NewReader("x") }, 405},
	}
}

// TestBadInputSuite sends every hostile request to a running server: each
// gets its documented 4xx, nothing answers 5xx, and the store is
// byte-for-byte the same afterwards.
func TestBadInputSuite(t *testing.T) {
	e := newBadEnv(t)
	dir := t.TempDir()
	before, after := filepath.Join(dir, "before.db"), filepath.Join(dir, "after.db")
	if err := e.c.Store.Backup(before); err != nil {
		t.Fatal(err)
	}
	cases := badCases()
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = tc.body(t, e)
			}
			req, err := http.NewRequest(tc.method, e.c.URL+tc.path, body)
			if err != nil {
				// Some paths are refused by the client itself; send them raw.
				t.Fatalf("request: %v", err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := tc.client(e).Do(req)
			if err != nil {
				t.Fatalf("transport error: %v", err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("server error %d: %s", resp.StatusCode, msg)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, msg)
			}
		})
	}
	t.Run("slow body (slowloris)", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(e.c.URL, "https://"), &tls.Config{RootCAs: e.c.Server.RootPool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", enrollPath)
		deadline := time.Now().Add(8 * time.Second)
		closed := false
		for time.Now().Before(deadline) {
			if _, err := conn.Write([]byte(" ")); err != nil {
				closed = true
				break
			}
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 512)
			if n, err := conn.Read(buf); n > 0 || (err != nil && !isTimeout(err)) {
				if n > 0 && bytes.Contains(buf[:n], []byte(" 5")) && bytes.HasPrefix(buf, []byte("HTTP/1.1 5")) {
					t.Fatalf("server answered 5xx: %s", buf[:n])
				}
				closed = true
				break
			}
		}
		if !closed {
			t.Fatal("server kept a slow body open past its read timeout")
		}
	})
	if err := e.c.Store.Backup(after); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(before)
	b, _ := os.ReadFile(after)
	if !bytes.Equal(a, b) {
		t.Fatal("bad input changed the store")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
