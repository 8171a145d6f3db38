package acme

import (
	"io"
	"net/http"
	"strings"

	"go.step.sm/crypto/jose"
)

// request is a verified JWS request.
type request struct {
	payload           []byte
	jwk               *jose.JSONWebKey // embedded key (new-account, revoke-cert by key)
	acct              *account
	profile, base, id string
	w                 http.ResponseWriter
}

// verify checks the JWS: size, form, nonce (single use), url, signature
// by the account key (kid) or the embedded key (jwk, only where allowed).
func (s *Server) verify(r *http.Request, url string, jwkAllowed bool) (*request, *Problem) {
	if ct := r.Header.Get("Content-Type"); ct != "application/jose+json" {
		return nil, prob(415, "malformed", "content type must be application/jose+json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBody))
	if err != nil {
		return nil, prob(413, "malformed", "request body over %d bytes, or unreadable", MaxBody)
	}
	jws, err := jose.ParseJWS(string(body))
	if err != nil || len(jws.Signatures) != 1 {
		return nil, prob(400, "malformed", "not a flattened JWS with one signature")
	}
	h := jws.Signatures[0].Protected
	switch h.Algorithm {
	case "RS256", "ES256", "ES384", "ES512", "EdDSA", "PS256":
	default:
		return nil, prob(400, "badSignatureAlgorithm", "algorithm %q not accepted", h.Algorithm)
	}
	if !s.useNonce(h.Nonce) {
		return nil, prob(400, "badNonce", "nonce unknown, expired or already used")
	}
	if u, _ := h.ExtraHeaders["url"].(string); u != url {
		return nil, prob(401, "unauthorized", "JWS url %q is not the request URL %q", u, url)
	}
	req := &request{}
	var verifyKey any
	switch {
	case h.JSONWebKey != nil && h.KeyID == "":
		if !jwkAllowed {
			return nil, prob(400, "malformed", "this request must be signed by an account key (kid)")
		}
		if !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
			return nil, prob(400, "badPublicKey", "jwk is not a valid public key")
		}
		req.jwk, verifyKey = h.JSONWebKey, h.JSONWebKey
	case h.KeyID != "" && h.JSONWebKey == nil:
		prefix := strings.TrimSuffix(url[:strings.Index(url, "/acme/")], "/") + "/acme/"
		rest := strings.TrimPrefix(h.KeyID, prefix)
		parts := strings.Split(rest, "/")
		var a account
		if rest == h.KeyID || len(parts) != 3 || parts[1] != "account" || s.get("account", parts[2], &a) != nil {
			return nil, prob(400, "accountDoesNotExist", "no account %q", h.KeyID)
		}
		if a.Status != "valid" {
			return nil, prob(401, "unauthorized", "account is %s", a.Status)
		}
		if !strings.HasPrefix(url, prefix+a.Profile+"/") {
			return nil, prob(401, "unauthorized", "account belongs to another profile")
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(a.JWK); err != nil {
			return nil, prob(500, "serverInternal", "stored account key unreadable")
		}
		req.acct, verifyKey = &a, &k
	default:
		return nil, prob(400, "malformed", "exactly one of jwk and kid must be given")
	}
	payload, err := jws.Verify(verifyKey)
	if err != nil {
		return nil, prob(400, "malformed", "JWS signature does not verify")
	}
	req.payload = payload
	return req, nil
}

func (r *request) wHeader(k, v string) { r.w.Header().Set(k, v) }
