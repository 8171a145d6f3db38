package acme_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.step.sm/crypto/jose"

	"github.com/lanyard/lanyard/internal/testca"
)

// TestBadInput sends hand-made JWS requests and checks each problem type.
func TestBadInput(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Authority.RootsPEM())
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := c.URL + "/acme/covalent"
	nonce := func() string {
		resp, err := hc.Head(base + "/new-nonce")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Replay-Nonce")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sign := func(url, n, kid string, payload []byte) []byte {
		opts := (&jose.SignerOptions{}).WithHeader("nonce", n).WithHeader("url", url)
		if kid != "" {
			opts = opts.WithHeader("kid", kid)
		} else {
			opts.EmbedJWK = true
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(jws.FullSerialize())
	}
	replayed := nonce()
	post := func(url string, body []byte) string {
		resp, err := hc.Post(url, "application/jose+json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p struct{ Type string }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		if resp.StatusCode == http.StatusRequestEntityTooLarge && p.Type == "" {
			// the server's body limit (server.limitBody) answers first
			return "413"
		}
		return p.Type
	}
	// use the nonce once, so that it is replayed below
	post(base+"/new-account", sign(base+"/new-account", replayed, "", []byte(`{}`)))
	badSig := sign(base+"/new-account", nonce(), "", []byte(`{}`))
	badSig[len(badSig)-5] ^= 1
	for _, tc := range []struct {
		name, url string
		body      []byte
		want      string
	}{
		{"replayed nonce", base + "/new-account", sign(base+"/new-account", replayed, "", []byte(`{}`)), "badNonce"},
		{"wrong url", base + "/new-account", sign(base+"/new-order", nonce(), "", []byte(`{}`)), "unauthorized"},
		{"unknown account", base + "/new-order", sign(base+"/new-order", nonce(), base+"/account/nope", []byte(`{}`)), "accountDoesNotExist"},
		{"no EAB", base + "/new-account", sign(base+"/new-account", nonce(), "", []byte(`{"termsOfServiceAgreed":true}`)), "externalAccountRequired"},
		{"bad signature", base + "/new-account", badSig, "malformed"},
		{"oversized", base + "/new-account", []byte(strings.Repeat("x", 70<<10)), "413"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := "urn:ietf:params:acme:error:" + tc.want
			if tc.want == "413" {
				want = "413"
			}
			if got := post(tc.url, tc.body); got != want {
				t.Errorf("problem %q, want %s", got, tc.want)
			}
		})
	}
}
