package acme

import (
	"context"
	"crypto"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"go.step.sm/crypto/jose"

	"github.com/lanyard/lanyard/store"
)

func (s *Server) acctURL(req *request, id string) string { return req.base + "/account/" + id }

func (s *Server) newAccount(ctx context.Context, req *request) (int, any, *Problem) {
	var in struct {
		Contact              []string        `json:"contact"`
		TermsOfServiceAgreed bool            `json:"termsOfServiceAgreed"`
		OnlyReturnExisting   bool            `json:"onlyReturnExisting"`
		EAB                  json.RawMessage `json:"externalAccountBinding"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a newAccount object")
	}
	if req.jwk == nil {
		return 0, nil, prob(400, "malformed", "newAccount must be signed with jwk")
	}
	thumb, err := req.jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return 0, nil, prob(400, "badPublicKey", "cannot hash the key")
	}
	acctID := base64.RawURLEncoding.EncodeToString(thumb)
	if existing := s.accountByKey(acctID); existing != nil && existing.Profile == req.profile {
		req.wHeader("Location", s.acctURL(req, existing.ID))
		return 200, acctJSON(existing, req), nil
	}
	if in.OnlyReturnExisting {
		return 0, nil, prob(400, "accountDoesNotExist", "no account for this key")
	}
	if len(in.EAB) == 0 {
		return 0, nil, prob(401, "externalAccountRequired", "an external account binding is required")
	}
	eab, err := jose.ParseJWS(string(in.EAB))
	if err != nil || len(eab.Signatures) != 1 {
		return 0, nil, prob(400, "malformed", "externalAccountBinding is not a JWS")
	}
	eh := eab.Signatures[0].Protected
	if eh.Algorithm != "HS256" && eh.Algorithm != "HS384" && eh.Algorithm != "HS512" {
		return 0, nil, prob(400, "malformed", "externalAccountBinding must be HMAC-signed")
	}
	if u, _ := eh.ExtraHeaders["url"].(string); u != req.base+"/new-account" {
		return 0, nil, prob(401, "unauthorized", "externalAccountBinding url is not the newAccount URL")
	}
	var k eabKey
	if eh.KeyID == "" || s.get("eab", eh.KeyID, &k) != nil || k.Revoked || (k.Used && !k.Reusable) {
		return 0, nil, prob(401, "unauthorized", "external account key unknown, revoked or used")
	}
	if k.Profile != req.profile {
		return 0, nil, prob(401, "unauthorized", "external account key belongs to another profile")
	}
	bound, err := eab.Verify(k.Key)
	if err != nil {
		return 0, nil, prob(401, "unauthorized", "externalAccountBinding signature does not verify")
	}
	jwkJSON, _ := req.jwk.MarshalJSON()
	var a, b any
	if json.Unmarshal(bound, &a) != nil || json.Unmarshal(jwkJSON, &b) != nil || !jsonEqual(a, b) {
		return 0, nil, prob(401, "unauthorized", "externalAccountBinding does not bind the account key")
	}
	acct := &account{ID: acctID, Profile: req.profile, JWK: jwkJSON, EABKey: k.ID, Status: "valid"}
	// One transaction, on any replica: the key is still as read (unused,
	// unrevoked) and becomes used, and the account is new.
	used := k
	used.Used = true
	err = s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{
		{Key: key("eab", k.ID), If: &k, Value: &used},
		{Key: key("account", acctID), IfAbsent: true, Value: acct},
		{Key: key("acctkey", acctID), IfAbsent: true, Delete: true}, // no account rolled over to this key
	}, &store.AuditEvent{At: s.cfg.Now(), Actor: "acme-eab:" + k.ID, Action: store.ActionACMEAccount, Subject: acctID,
		Detail: "profile=" + req.profile})
	if errors.Is(err, store.ErrConflict) {
		return 0, nil, prob(401, "unauthorized", "external account key used or revoked meanwhile, or the account exists; retry")
	}
	if err != nil {
		return 0, nil, storeProblem(err)
	}
	req.wHeader("Location", s.acctURL(req, acctID))
	return 201, acctJSON(acct, req), nil
}

// accountByKey finds the account whose current key has thumbprint thumb:
// through the index a keyChange writes, else the account the key opened
// (its ID is the thumbprint of its first key) if that is still its key.
func (s *Server) accountByKey(thumb string) *account {
	var id string
	if s.get("acctkey", thumb, &id) != nil {
		id = thumb
	}
	var a account
	if s.get("account", id, &a) != nil || jwkThumb(a.JWK) != thumb {
		return nil
	}
	return &a
}

// jwkThumb is the base64url RFC 7638 thumbprint of a stored key ("" if
// it does not parse).
func jwkThumb(raw json.RawMessage) string {
	var k jose.JSONWebKey
	if k.UnmarshalJSON(raw) != nil {
		return ""
	}
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(t)
}

// keyChange replaces the account's key (RFC 8555 section 7.3.5): the
// outer JWS is signed by the current key (kid), the inner one by the new
// key (jwk) over {account, oldKey}. The account keeps its URL; an index
// from the new key's thumbprint finds it for newAccount.
func (s *Server) keyChange(ctx context.Context, req *request) (int, any, *Problem) {
	if req.acct == nil {
		return 0, nil, prob(400, "malformed", "keyChange must be signed by the account's current key (kid)")
	}
	inner, err := jose.ParseJWS(string(req.payload))
	if err != nil || len(inner.Signatures) != 1 {
		return 0, nil, prob(400, "malformed", "keyChange payload is not a JWS with one signature")
	}
	ih := inner.Signatures[0].Protected
	if ih.JSONWebKey == nil || ih.KeyID != "" || !ih.JSONWebKey.Valid() || !ih.JSONWebKey.IsPublic() {
		return 0, nil, prob(400, "malformed", "the inner JWS must carry the new public key as jwk")
	}
	if u, _ := ih.ExtraHeaders["url"].(string); u != req.base+"/key-change" {
		return 0, nil, prob(400, "malformed", "the inner JWS url is not the keyChange URL")
	}
	payload, err := inner.Verify(ih.JSONWebKey)
	if err != nil {
		return 0, nil, prob(400, "malformed", "the inner JWS signature does not verify with the new key")
	}
	var kc struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if json.Unmarshal(payload, &kc) != nil || kc.Account != s.acctURL(req, req.acct.ID) {
		return 0, nil, prob(400, "malformed", "keyChange names another account")
	}
	oldThumb := jwkThumb(req.acct.JWK)
	if jwkThumb(kc.OldKey) != oldThumb || oldThumb == "" {
		return 0, nil, prob(400, "malformed", "oldKey is not the account's current key")
	}
	newJWK, _ := ih.JSONWebKey.MarshalJSON()
	newThumb := jwkThumb(newJWK)
	if newThumb == oldThumb {
		return 0, nil, prob(400, "malformed", "the new key is the current key")
	}
	if other := s.accountByKey(newThumb); other != nil {
		req.wHeader("Location", s.acctURL(req, other.ID))
		return 0, nil, prob(409, "malformed", "the new key belongs to another account")
	}
	old := *req.acct
	req.acct.JWK = newJWK
	writes := []store.MetaWrite{
		{Key: key("account", req.acct.ID), If: &old, Value: req.acct},
		{Key: key("acctkey", newThumb), IfAbsent: true, Value: req.acct.ID},
	}
	if oldThumb != req.acct.ID {
		writes = append(writes, store.MetaWrite{Key: key("acctkey", oldThumb), Delete: true})
	}
	err = s.cfg.Store.SwapMeta(ctx, writes, &store.AuditEvent{At: s.cfg.Now(), Actor: "acme:" + req.acct.ID,
		Action: store.ActionACMEKeyChange, Subject: req.acct.ID, Detail: "old=" + oldThumb + " new=" + newThumb})
	if errors.Is(err, store.ErrConflict) {
		return 0, nil, prob(409, "malformed", "the account or the new key changed meanwhile; retry")
	}
	if err != nil {
		return 0, nil, storeProblem(err)
	}
	req.wHeader("Location", s.acctURL(req, req.acct.ID))
	return 200, acctJSON(req.acct, req), nil
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return subtle.ConstantTimeCompare(x, y) == 1
}

func acctJSON(a *account, req *request) map[string]any {
	return map[string]any{"status": a.Status, "orders": req.base + "/orders/" + a.ID}
}

func (s *Server) accountOp(ctx context.Context, req *request) (int, any, *Problem) {
	if req.id != req.acct.ID {
		return 0, nil, prob(403, "unauthorized", "not your account")
	}
	var in struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(req.payload, &in)
	if in.Status == "deactivated" && req.acct.Status != "deactivated" {
		old := *req.acct
		req.acct.Status = "deactivated"
		if err := s.swap(ctx, "account", req.acct.ID, &old, req.acct, nil); err != nil {
			return 0, nil, storeProblem(err)
		}
	}
	return 200, acctJSON(req.acct, req), nil
}

// Account describes an ACME account, without its key.
type Account struct {
	ID      string
	Profile string
	// EABKey is the EAB key the account was opened with.
	EABKey string
	// Status is valid or deactivated ("" if the account record is gone).
	Status string
}

// CertAccount returns the ACME account whose order got the certificate
// serial (finalize records serial → account; Tidy forgets it once the
// certificate has expired), or nil if no ACME order did.
func (s *Server) CertAccount(serial string) (*Account, error) {
	var id string
	if err := s.get("cert", serial, &id); errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("ACME account of %s: %w", serial, err)
	}
	var a account
	if err := s.get("account", id, &a); errors.Is(err, store.ErrNotFound) {
		return &Account{ID: id}, nil
	} else if err != nil {
		return nil, fmt.Errorf("ACME account %s: %w", id, err)
	}
	return &Account{ID: a.ID, Profile: a.Profile, EABKey: a.EABKey, Status: a.Status}, nil
}
