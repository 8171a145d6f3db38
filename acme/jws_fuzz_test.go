package acme_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.step.sm/crypto/jose"

	"github.com/lanyard/lanyard/internal/testca"
)

// acmeHost is the Host the fuzz requests name; the server builds every
// URL it checks from it.
const acmeHost = "ca.fuzz.example"

// acmeFixture drives the ACME handler of a real test CA directly (no
// TLS): the handler is the one `lanyard serve` mounts.
type acmeFixture struct {
	h    http.Handler
	base string
	key  *ecdsa.PrivateKey
	kid  string
}

func (fx *acmeFixture) do(method, url string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, url, bytes.NewReader(body))
	r.Host = acmeHost
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/jose+json")
	}
	w := httptest.NewRecorder()
	fx.h.ServeHTTP(w, r)
	return w
}

func (fx *acmeFixture) nonce(tb testing.TB) string {
	n := fx.do(http.MethodHead, fx.base+"/new-nonce", nil).Header().Get("Replay-Nonce")
	if n == "" {
		tb.Fatal("no Replay-Nonce")
	}
	return n
}

// sign makes the flattened JWS an ACME client sends: ES256 by fx.key,
// with kid (or the embedded key when kid is empty), nonce and url.
func (fx *acmeFixture) sign(tb testing.TB, url, nonce, kid string, payload []byte) []byte {
	opts := (&jose.SignerOptions{}).WithHeader("nonce", nonce).WithHeader("url", url)
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	} else {
		opts.EmbedJWK = true
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: fx.key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(jws.FullSerialize())
}

// newAcmeFixture registers an account with an EAB key on the covalent
// profile.
func newAcmeFixture(tb testing.TB) *acmeFixture {
	c := testca.Start(tb, testca.Options{})
	fx := &acmeFixture{h: c.App.ACME, base: "https://" + acmeHost + "/acme/covalent"}
	fx.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	eabKID, hmacKey, err := c.App.ACME.CreateEAB(context.Background(), "covalent", "", true, "admin:fuzz")
	if err != nil {
		tb.Fatal(err)
	}
	mac, _ := base64.RawURLEncoding.DecodeString(hmacKey)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: fx.key.Public()})
	eabSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: mac},
		(&jose.SignerOptions{}).WithHeader("kid", eabKID).WithHeader("url", fx.base+"/new-account"))
	if err != nil {
		tb.Fatal(err)
	}
	eab, err := eabSigner.Sign(jwk)
	if err != nil {
		tb.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"termsOfServiceAgreed": true, "externalAccountBinding": json.RawMessage(eab.FullSerialize())})
	w := fx.do(http.MethodPost, fx.base+"/new-account", fx.sign(tb, fx.base+"/new-account", fx.nonce(tb), "", payload))
	if w.Code != http.StatusCreated || w.Header().Get("Location") == "" {
		tb.Fatalf("new-account: %d %s", w.Code, w.Body)
	}
	fx.kid = w.Header().Get("Location")
	return fx
}

var acmeIDRE = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

// acmeOps are the resources a fuzz request goes to (account is the
// fixture's own, the ids of the others are the fuzzer's).
var acmeOps = []string{"account", "new-order", "new-account", "revoke-cert", "order", "finalize", "authz", "cert", "chall", "key-change"}

// FuzzJWSRequest sends ACME requests built from random parts: a resource,
// a payload (the request object the handler decodes), signed by the
// account key (kid) or with the key embedded (jwk), with a fresh nonce
// and the right url; then, by mode, sent as it is, with one byte changed,
// with bytes spliced in, or replaced by raw bytes. Whatever it is:
//   - the answer is a well-formed RFC 8555 answer: a problem document
//     (application/problem+json, an ACME error type, its status the HTTP
//     status) or JSON, never a server error, always a fresh nonce;
//   - an answer that accepted the request (2xx) was for a JWS that
//     verifies with the account key, over the payload that was signed,
//     with the nonce and url that were signed: nothing unsigned or
//     altered is acted on;
//   - the same bytes sent again are never accepted, and if the first
//     answer accepted them the second is badNonce (single-use nonces);
//   - an unaltered POST-as-GET of the account succeeds (the oracle is
//     not vacuous).
func FuzzJWSRequest(f *testing.F) {
	fx := newAcmeFixture(f)
	f.Add(uint8(0), []byte(""), true, uint8(0), uint16(0), byte(0), []byte(nil), "")
	f.Add(uint8(0), []byte("{}"), true, uint8(1), uint16(40), byte(1), []byte(nil), "")
	f.Add(uint8(1), []byte(`{"identifiers":[{"type":"dns","value":"web-1.covalent.example.net"}]}`), true, uint8(0), uint16(0), byte(0), []byte(nil), "")
	f.Add(uint8(1), []byte(`{"identifiers":[{"type":"dns","value":"web-1.covalent.example.net"}],"replaces":"AAAA.AAAA"}`), true, uint8(0), uint16(0), byte(0), []byte(nil), "")
	f.Add(uint8(2), []byte(`{"onlyReturnExisting":true}`), false, uint8(0), uint16(0), byte(0), []byte(nil), "")
	f.Add(uint8(3), []byte(`{"certificate":"MIIB","reason":1}`), false, uint8(0), uint16(0), byte(0), []byte(nil), "")
	f.Add(uint8(5), []byte(`{"csr":"MIIB"}`), true, uint8(0), uint16(0), byte(0), []byte(nil), "nope")
	f.Add(uint8(0), []byte("{}"), true, uint8(2), uint16(0), byte(0), []byte(`{"protected":"eyJhbGciOiJub25lIn0","payload":"e30","signature":""}`), "")
	f.Add(uint8(0), []byte("{}"), true, uint8(3), uint16(12), byte(0), []byte(`,"header":{"alg":"none"}`), "")
	f.Add(uint8(0), []byte("{}"), false, uint8(0), uint16(0), byte(0), []byte(nil), "")
	f.Fuzz(func(t *testing.T, op uint8, payload []byte, useKid bool, mode uint8, pos uint16, val byte, raw []byte, id string) {
		name := acmeOps[int(op)%len(acmeOps)]
		if name == "account" {
			// The fixture's own account: deactivating it would end the
			// campaign's coverage of every kid request.
			id = fx.kid[strings.LastIndex(fx.kid, "/")+1:]
			if bytes.Contains(payload, []byte("deactivated")) {
				payload = []byte("{}")
			}
		}
		url := fx.base + "/" + name
		if acmeIDRE.MatchString(id) { // an id a client could put in the path
			url += "/" + id
		}
		nonce := fx.nonce(t)
		kid := ""
		if useKid {
			kid = fx.kid
		}
		signed := fx.sign(t, url, nonce, kid, payload)
		body := append([]byte(nil), signed...)
		switch mode % 4 {
		case 1:
			if len(body) > 0 {
				body[int(pos)%len(body)] ^= val | 1
			}
		case 2:
			body = raw
		case 3:
			i := int(pos) % (len(body) + 1)
			body = append(append(append([]byte(nil), body[:i]...), raw...), body[i:]...)
		}
		altered := !bytes.Equal(body, signed)

		check := func(w *httptest.ResponseRecorder) (int, string) {
			t.Helper()
			if w.Header().Get("Replay-Nonce") == "" {
				t.Fatalf("answer %d without a Replay-Nonce", w.Code)
			}
			if w.Code >= 500 {
				t.Fatalf("%s: server error %d: %s", name, w.Code, w.Body)
			}
			if w.Code < 300 {
				if ct := w.Header().Get("Content-Type"); ct != "application/json" && ct != "application/pem-certificate-chain" {
					t.Fatalf("%s: success with content type %q", name, ct)
				}
				return w.Code, ""
			}
			var p struct {
				Type   string
				Detail string
				Status int
			}
			if w.Header().Get("Content-Type") != "application/problem+json" || json.Unmarshal(w.Body.Bytes(), &p) != nil ||
				!strings.HasPrefix(p.Type, "urn:ietf:params:acme:error:") || p.Status != w.Code || p.Detail == "" {
				t.Fatalf("%s: %d answer is not an ACME problem: %q %s", name, w.Code, w.Header().Get("Content-Type"), w.Body)
			}
			return w.Code, strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:")
		}
		code, _ := check(fx.do(http.MethodPost, url, body))
		if code < 300 && altered {
			// Accepted although changed: only if it is still the request
			// that was signed, by the account key.
			jws, err := jose.ParseJWS(string(body))
			if err != nil || len(jws.Signatures) != 1 {
				t.Fatalf("%s: accepted an altered body that is not one JWS: %v", name, err)
			}
			got, err := jws.Verify(fx.key.Public())
			h := jws.Signatures[0].Protected
			if err != nil || !bytes.Equal(got, payload) || h.Nonce != nonce || h.ExtraHeaders["url"] != url {
				t.Fatalf("%s: accepted an altered request: verify %v, payload %q (signed %q), nonce %q, url %v", name, err, got, payload, h.Nonce, h.ExtraHeaders["url"])
			}
		}
		if name == "account" && !altered && useKid && code != http.StatusOK {
			t.Fatalf("POST-as-GET of the account answered %d", code)
		}
		again, typ := check(fx.do(http.MethodPost, url, body))
		if again < 300 {
			t.Fatalf("%s: the same request was accepted twice", name)
		}
		if code < 300 && typ != "badNonce" {
			t.Fatalf("%s: a replay answered %s, want badNonce", name, typ)
		}
	})
}
