package acme_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/store"
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
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			return "not a problem document: " + ct
		}
		return p.Type
	}
	// use the nonce once, so that it is replayed below
	post(base+"/new-account", sign(base+"/new-account", replayed, "", []byte(`{}`)))
	before := storeState(t, c)
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
		// past the server's body limit (server.limitBody answers first), still a problem document
		{"oversized", base + "/new-account", []byte(strings.Repeat("x", 70<<10)), "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := "urn:ietf:params:acme:error:" + tc.want
			if got := post(tc.url, tc.body); got != want {
				t.Errorf("problem %q, want %s", got, tc.want)
			}
		})
	}
	if after := storeState(t, c); after != before {
		t.Errorf("refused requests wrote to the store: before %s, after %s", before, after)
	}
}

// storeState summarises what a request could have written: every ACME
// record (but the nonce key, made once), the audit log and certificates.
func storeState(t *testing.T, c *testca.CA) string {
	t.Helper()
	meta, err := c.Store.ListMeta("acme/")
	if err != nil {
		t.Fatal(err)
	}
	delete(meta, "acme/nonce-key")
	keys := make([]string, 0, len(meta))
	for k, v := range meta {
		keys = append(keys, k+"="+string(v))
	}
	sort.Strings(keys)
	evs, _, err := c.Store.ListAudit(store.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	certs, _, err := c.Store.ListCerts(store.CertQuery{Now: time.Now(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("meta %v, %d audit events, %d certificates", keys, len(evs), len(certs))
}

// TestEABOfAnotherProfileRefused: a key minted for one profile opens no
// account at another profile's directory, and the refusal writes nothing
// (the key stays unused and works where it belongs).
func TestEABOfAnotherProfileRefused(t *testing.T) {
	profiles := testca.DefaultProfiles()
	profiles["other"] = issuance.ProfileConfig{CN: []string{"*.other.example.org"}}
	c := testca.Start(t, testca.Options{Profiles: profiles})
	ctx := context.Background()
	kid, hk, err := c.App.ACME.CreateEAB(ctx, "other", "", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	register := func(profile string) error {
		cl, u := newLegoClient(t, c, profile)
		return registerEAB(cl, u, kid, hk)
	}
	before := storeState(t, c)
	if err := register("covalent"); err == nil || !strings.Contains(err.Error(), "another profile") {
		t.Fatalf("EAB key of profile other at covalent: %v, want refused (another profile)", err)
	}
	if after := storeState(t, c); after != before {
		t.Fatalf("the refusal wrote to the store: before %s, after %s", before, after)
	}
	if err := register("other"); err != nil {
		t.Fatalf("the key at its own profile: %v", err)
	}
	if after := storeState(t, c); after == before {
		t.Fatal("opening an account wrote nothing")
	}
}
