package acme

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

func (s *Server) finalize(ctx context.Context, req *request) (int, any, *Problem) {
	o, stored, p := s.loadOrder(req)
	if p != nil {
		return 0, nil, p
	}
	var a authz
	if s.get("authz", o.Authz, &a) != nil || a.Status != "valid" || o.Status == "invalid" {
		return 0, nil, prob(403, "orderNotReady", "the order's authorization is not valid")
	}
	if o.Status == "valid" {
		return 0, nil, prob(403, "orderNotReady", "the order is already finalized")
	}
	var in struct {
		CSR string `json:"csr"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a finalize object")
	}
	der, err := base64.RawURLEncoding.DecodeString(in.CSR)
	if err != nil {
		return 0, nil, prob(400, "badCSR", "csr is not base64url")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return 0, nil, prob(400, "badCSR", "csr does not parse")
	}
	// lego and certbot put the identifier in the SANs and may leave the CN
	// empty; the certificate's CN is the order's, its SANs none or the CN.
	for _, n := range csr.DNSNames {
		if !strings.EqualFold(n, o.CN) {
			return 0, nil, prob(400, "badCSR", "csr names %q, which the order does not", n)
		}
	}
	if csr.Subject.CommonName != "" && !strings.EqualFold(csr.Subject.CommonName, o.CN) {
		return 0, nil, prob(400, "badCSR", "csr CN %q is not the order's %q", csr.Subject.CommonName, o.CN)
	}
	var dns []string
	if len(csr.DNSNames) > 0 {
		dns = []string{o.CN}
	}
	replaced := ""
	if o.Replaces != "" {
		if replaced, p = s.replacedSerial(o.Replaces); p != nil {
			return 0, nil, p
		}
	}
	// The order (as stored, unfinalized) becomes valid with the serial,
	// and the serial names its account, in the transaction that records
	// the certificate: a second finalize, on any replica, conflicts.
	consume := func(serial string) []store.MetaWrite {
		done := *o
		done.Status, done.Serial = "valid", serial
		w := []store.MetaWrite{
			{Key: key("order", o.ID), If: stored, Value: &done},
			{Key: key("cert", serial), IfAbsent: true, Value: o.Account},
		}
		if replaced != "" { // RFC 9773 section 5: a certificate is replaced once
			w = append(w, store.MetaWrite{Key: key("replaced", replaced), IfAbsent: true, Value: serial})
		}
		return w
	}
	// An order that replaces a certificate is its renewal in lanyard's
	// lineage (revoking either revokes both), unless that certificate is
	// revoked (its lineage with it): the client renews because ARI said
	// "now", and the order, validated on its own, is a fresh certificate.
	prev := replaced
	var iss *issuance.Issued
	for iss == nil {
		g, err := s.cfg.Issuer.AuthorizeOrder(o.Profile, o.CN, dns, "acme:"+o.Account, prev, consume)
		if err == nil {
			iss, err = s.cfg.Issuer.Issue(ctx, g, der)
		} else if !errors.Is(err, issuance.ErrRevoked) && !errors.Is(err, store.ErrUnavailable) {
			return 0, nil, prob(400, "rejectedIdentifier", "%v", err)
		}
		switch {
		case prev != "" && errors.Is(err, issuance.ErrRevoked):
			prev = ""
		case errors.Is(err, store.ErrConflict):
			var by string
			if replaced != "" && s.get("replaced", replaced, &by) == nil {
				return 0, nil, prob(409, "alreadyReplaced", "certificate %s was replaced by %s meanwhile", replaced, by)
			}
			return 0, nil, prob(403, "orderNotReady", "the order was finalized by another request")
		case errors.Is(err, issuance.ErrBadCSR) || errors.Is(err, issuance.ErrNameNotAllowed) || errors.Is(err, issuance.ErrKeyType):
			return 0, nil, prob(400, "badCSR", "%v", err)
		case errors.Is(err, store.ErrUnavailable):
			return 0, nil, storeProblem(err)
		case err != nil:
			return 0, nil, prob(500, "serverInternal", "issue: %v", err)
		}
	}
	o.Status, o.Serial = "valid", iss.Record.Serial
	req.wHeader("Location", req.base+"/order/"+o.ID)
	return 200, s.orderJSON(o, req), nil
}

func (s *Server) certificate(w http.ResponseWriter, _ context.Context, req *request) {
	o, _, p := s.loadOrder(req)
	if p == nil && o.Serial == "" {
		p = prob(404, "malformed", "order has no certificate")
	}
	if p != nil {
		s.fail(w, p)
		return
	}
	rec, err := s.cfg.Store.GetCert(o.Serial)
	if err != nil {
		s.fail(w, prob(500, "serverInternal", "certificate record: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: rec.DER})
	_, _ = w.Write(s.cfg.ChainPEM)
}

// revokeCert revokes through the revocation service, for the account
// whose order got the certificate, or for the certificate's own key.
func (s *Server) revokeCert(ctx context.Context, req *request) (int, any, *Problem) {
	var in struct {
		Certificate string `json:"certificate"`
		Reason      int    `json:"reason"`
	}
	if err := json.Unmarshal(req.payload, &in); err != nil {
		return 0, nil, prob(400, "malformed", "payload is not a revokeCert object")
	}
	der, err := base64.RawURLEncoding.DecodeString(in.Certificate)
	if err != nil {
		return 0, nil, prob(400, "malformed", "certificate is not base64url")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return 0, nil, prob(400, "malformed", "certificate does not parse")
	}
	serial := lanyardv1.FormatSerial(cert.SerialNumber)
	rec, err := s.cfg.Store.GetCert(serial)
	if err != nil || !hmac.Equal(rec.DER, der) {
		return 0, nil, prob(404, "malformed", "not a certificate of this CA")
	}
	by := ""
	switch {
	case req.acct != nil:
		if rec.Profile != req.acct.Profile || !s.accountOrdered(req.acct.ID, serial) {
			return 0, nil, prob(403, "unauthorized", "this account did not order the certificate")
		}
		by = "acme:" + req.acct.ID
	case req.jwk != nil:
		if !keyEqual(req.jwk.Key, cert.PublicKey) {
			return 0, nil, prob(403, "unauthorized", "jwk is not the certificate's key")
		}
		by = "acme-certkey:" + serial
	}
	if rec.Revocation != nil {
		return 0, nil, prob(400, "alreadyRevoked", "certificate already revoked")
	}
	if _, err := s.cfg.Revocation.Revoke(ctx, revocation.Request{Serial: serial, Reason: in.Reason, By: by}); err != nil {
		if errors.Is(err, revocation.ErrBadRequest) {
			return 0, nil, prob(400, "badRevocationReason", "%v", err)
		}
		return 0, nil, prob(500, "serverInternal", "revoke: %v", err)
	}
	return 200, struct{}{}, nil
}

func keyEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// accountOrdered reports whether the account's order produced serial
// (finalize records serial → account).
func (s *Server) accountOrdered(acct, serial string) bool {
	var got string
	return s.get("cert", serial, &got) == nil && got == acct
}
