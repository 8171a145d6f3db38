package acme

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/lanyard/lanyard/store"
)

func (s *Server) orderJSON(o *order, req *request) map[string]any {
	m := map[string]any{
		"status": o.Status, "expires": o.Expires.UTC().Format(time.RFC3339),
		"identifiers":    []map[string]string{{"type": "dns", "value": o.CN}},
		"authorizations": []string{req.base + "/authz/" + o.Authz},
		"finalize":       req.base + "/finalize/" + o.ID,
	}
	if o.Serial != "" {
		m["certificate"] = req.base + "/cert/" + o.ID
	}
	if o.Replaces != "" {
		m["replaces"] = o.Replaces
	}
	if o.Error != nil {
		m["error"] = o.Error
	}
	return m
}

func (s *Server) newOrder(ctx context.Context, req *request) (int, any, *Problem) {
	if req.acct == nil {
		return 0, nil, prob(400, "malformed", "newOrder must be signed by an account")
	}
	var in struct {
		Identifiers []struct{ Type, Value string } `json:"identifiers"`
		NotBefore   string                         `json:"notBefore"`
		NotAfter    string                         `json:"notAfter"`
		Replaces    string                         `json:"replaces"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a newOrder object")
	}
	if len(in.Identifiers) != 1 || in.Identifiers[0].Type != "dns" {
		return 0, nil, prob(400, "rejectedIdentifier", "an order names exactly one dns identifier: the certificate's CN")
	}
	if in.NotBefore != "" || in.NotAfter != "" {
		return 0, nil, prob(400, "malformed", "notBefore/notAfter are set by the profile")
	}
	cn := strings.ToLower(in.Identifiers[0].Value)
	p, err := s.cfg.Issuer.Profiles().Get(req.acct.Profile)
	if err != nil || !p.AllowsCN(cn) {
		return 0, nil, prob(400, "rejectedIdentifier", "profile %q does not allow CN %q", req.acct.Profile, cn)
	}
	var k eabKey
	if s.get("eab", req.acct.EABKey, &k) == nil && k.CN != "" && k.CN != cn {
		return 0, nil, prob(400, "rejectedIdentifier", "this account's key is bound to CN %q", k.CN)
	}
	if in.Replaces != "" {
		serial, p := s.replacedSerial(in.Replaces)
		if p != nil {
			return 0, nil, p
		}
		rec, err := s.cfg.Store.GetCert(serial)
		if err != nil || rec.CN != cn || rec.Profile != req.acct.Profile {
			return 0, nil, prob(400, "malformed", "replaces names no certificate of CN %q under profile %q", cn, req.acct.Profile)
		}
		var by string
		if s.get("replaced", serial, &by) == nil {
			return 0, nil, prob(409, "alreadyReplaced", "certificate %s was already replaced by %s", serial, by)
		}
	}
	now := s.cfg.Now()
	o := &order{ID: randID(12), Account: req.acct.ID, Profile: req.acct.Profile, CN: cn, Status: "pending",
		Expires: now.Add(OrderLifetime), Authz: randID(12), Replaces: in.Replaces}
	az := &authz{ID: o.Authz, Account: req.acct.ID, CN: cn, Status: "pending", Token: randID(32), Expires: o.Expires}
	if err := s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{
		{Key: key("authz", az.ID), IfAbsent: true, Value: az},
		{Key: key("order", o.ID), IfAbsent: true, Value: o},
	}, nil); err != nil {
		return 0, nil, storeProblem(err)
	}
	req.wHeader("Location", req.base+"/order/"+o.ID)
	return 201, s.orderJSON(o, req), nil
}

// loadOrder returns the order as the client sees it (its status derived
// from its authorization and expiry) and as stored (the condition of a
// write that changes it).
func (s *Server) loadOrder(req *request) (view, stored *order, p *Problem) {
	var o order
	if req.acct == nil || s.get("order", req.id, &o) != nil || o.Account != req.acct.ID {
		return nil, nil, prob(404, "malformed", "no such order")
	}
	st := o
	if o.Status == "pending" || o.Status == "ready" {
		var a authz
		switch {
		case !s.cfg.Now().Before(o.Expires):
			o.Status = "invalid"
		case s.get("authz", o.Authz, &a) == nil && a.Status == "valid":
			o.Status = "ready"
		case a.Status == "invalid":
			o.Status = "invalid"
		}
	}
	return &o, &st, nil
}

func (s *Server) getOrder(_ context.Context, req *request) (int, any, *Problem) {
	o, _, p := s.loadOrder(req)
	if p != nil {
		return 0, nil, p
	}
	return 200, s.orderJSON(o, req), nil
}

func (s *Server) authzJSON(a *authz, req *request) map[string]any {
	var chs []any
	for _, typ := range challengeTypes {
		chs = append(chs, challengeJSON(a, typ, req))
	}
	return map[string]any{
		"status": a.Status, "expires": a.Expires.UTC().Format(time.RFC3339),
		"identifier": map[string]string{"type": "dns", "value": a.CN},
		"challenges": chs,
	}
}

func (s *Server) loadAuthz(req *request) (*authz, *Problem) {
	var a authz
	if req.acct == nil || s.get("authz", req.id, &a) != nil || a.Account != req.acct.ID {
		return nil, prob(404, "malformed", "no such authorization")
	}
	if a.Status == "pending" && !s.cfg.Now().Before(a.Expires) {
		a.Status = "expired"
	}
	return &a, nil
}

func (s *Server) getAuthz(_ context.Context, req *request) (int, any, *Problem) {
	a, p := s.loadAuthz(req)
	if p != nil {
		return 0, nil, p
	}
	return 200, s.authzJSON(a, req), nil
}
