package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lanyard/lanyard/admin"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/api/lanyard/v1/lanyardv1connect"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

type certificateService struct {
	lanyardv1connect.UnimplementedCertificateServiceHandler
	s *Server
}

func (h *certificateService) bundle(iss *issuance.Issued) *v1.Bundle {
	return &v1.Bundle{
		CertificatePem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.DER})),
		ChainPem:       h.s.chainPEM,
		Serial:         iss.Record.Serial,
		NotBefore:      timestamppb.New(iss.Cert.NotBefore),
		NotAfter:       timestamppb.New(iss.Cert.NotAfter),
	}
}

func windowPB(w schedule.Window) *v1.RenewalInfo {
	return &v1.RenewalInfo{WindowStart: timestamppb.New(w.Start), WindowEnd: timestamppb.New(w.End), Reason: w.Reason}
}

func (h *certificateService) Enroll(ctx context.Context, req *connect.Request[v1.EnrollRequest]) (*connect.Response[v1.EnrollResponse], error) {
	const proc = "Enroll"
	iss, err := h.s.opts.Issuance.Enroll(ctx, req.Msg.GetToken(), req.Msg.GetCsr())
	if err != nil {
		return nil, toConnect(h.s.log, proc, err)
	}
	h.s.metrics.issued.WithLabelValues("enroll", iss.Record.Profile).Inc()
	return connect.NewResponse(&v1.EnrollResponse{
		Bundle:      h.bundle(iss),
		RenewalInfo: windowPB(schedule.Scheduled(iss.Cert.NotBefore, iss.Cert.NotAfter)),
	}), nil
}

func (h *certificateService) Renew(ctx context.Context, req *connect.Request[v1.RenewRequest]) (*connect.Response[v1.RenewResponse], error) {
	const proc = "Renew"
	cur := ClientCert(ctx)
	if cur == nil {
		if err := clientCertError(ctx); err != nil {
			return nil, toConnect(h.s.log, proc, err)
		}
		return nil, toConnect(h.s.log, proc, errNoClientCert)
	}
	if ca.IsAdminCertificate(cur) {
		return h.renewAdmin(ctx, cur, req.Msg.GetCsr())
	}
	r, err := h.s.opts.Issuance.Renew(ctx, cur, req.Msg.GetCsr())
	if err != nil {
		return nil, toConnect(h.s.log, proc, err)
	}
	h.s.metrics.issued.WithLabelValues("renew", r.Record.Profile).Inc()
	return connect.NewResponse(&v1.RenewResponse{
		Bundle: h.bundle(r.Issued), RenewalInfo: windowPB(r.Window), PreviousSerial: r.Previous,
	}), nil
}

// renewAdmin renews the admin credential over mTLS like a host's
// certificate, under the admin checks (admincred.Service.Renew).
func (h *certificateService) renewAdmin(ctx context.Context, cur *x509.Certificate, csr []byte) (*connect.Response[v1.RenewResponse], error) {
	cert, rec, err := h.s.admin.Renew(ctx, cur, csr)
	if err != nil {
		return nil, toConnect(h.s.log, "Renew", err)
	}
	h.s.metrics.issued.WithLabelValues("renew", rec.Profile).Inc()
	return connect.NewResponse(&v1.RenewResponse{
		Bundle:      h.bundle(&issuance.Issued{Cert: cert, DER: rec.DER, Record: rec}),
		RenewalInfo: windowPB(schedule.Scheduled(cert.NotBefore, cert.NotAfter)), PreviousSerial: rec.PreviousSerial,
	}), nil
}

func (h *certificateService) GetRoots(context.Context, *connect.Request[v1.GetRootsRequest]) (*connect.Response[v1.GetRootsResponse], error) {
	return connect.NewResponse(&v1.GetRootsResponse{
		RootsPem: h.s.rootsPEM, ChainPem: h.s.chainPEM,
	}), nil
}

func (h *certificateService) GetRenewalInfo(_ context.Context, req *connect.Request[v1.GetRenewalInfoRequest]) (*connect.Response[v1.GetRenewalInfoResponse], error) {
	w, err := h.s.opts.Issuance.RenewalInfo(req.Msg.GetSerial())
	if err != nil {
		return nil, toConnect(h.s.log, "GetRenewalInfo", err)
	}
	return connect.NewResponse(&v1.GetRenewalInfoResponse{RenewalInfo: windowPB(w)}), nil
}

func (h *certificateService) RevokeSelf(ctx context.Context, req *connect.Request[v1.RevokeSelfRequest]) (*connect.Response[v1.RevokeSelfResponse], error) {
	const proc = "RevokeSelf"
	cur := ClientCert(ctx)
	if cur == nil {
		if err := clientCertError(ctx); err != nil {
			return nil, toConnect(h.s.log, proc, err)
		}
		return nil, toConnect(h.s.log, proc, errNoClientCert)
	}
	reason := int(req.Msg.GetReason())
	if reason == 0 {
		reason = revocation.ReasonKeyCompromise // the holder asks because its key is no longer safe
	}
	serial := v1.FormatSerial(cur.SerialNumber)
	res, err := h.s.opts.Revocation.Revoke(ctx, revocation.Request{Serial: serial, Reason: reason, Comment: "revoked by its holder", By: "cert:" + serial})
	if err != nil {
		return nil, toConnect(h.s.log, proc, err)
	}
	out := &v1.RevokeSelfResponse{}
	for _, c := range res.Certificates {
		if c.Serial == serial {
			out.Certificate = certPB(c, h.s.opts.Now(), false)
		}
	}
	return connect.NewResponse(out), nil
}

type adminService struct {
	lanyardv1connect.UnimplementedAdminServiceHandler
	s *Server
}

func adminName(ctx context.Context) string {
	if c := ClientCert(ctx); c != nil {
		return "admin:cert:" + v1.FormatSerial(c.SerialNumber)
	}
	return "admin"
}

func (h *adminService) CreateEnrollmentToken(ctx context.Context, req *connect.Request[v1.CreateEnrollmentTokenRequest]) (*connect.Response[v1.CreateEnrollmentTokenResponse], error) {
	m := req.Msg
	secret, tok, err := h.s.opts.AdminAPI.CreateToken(ctx, issuance.TokenRequest{
		CN: m.GetCn(), Profile: m.GetProfile(), DNSNames: m.GetDnsNames(),
		TTL: time.Duration(m.GetTtlSeconds()) * time.Second, By: adminName(ctx),
	})
	if err != nil {
		return nil, toConnect(h.s.log, "CreateEnrollmentToken", err)
	}
	return connect.NewResponse(&v1.CreateEnrollmentTokenResponse{Token: secret, TokenId: tok.ID, ExpiresAt: timestamppb.New(tok.ExpiresAt)}), nil
}

func (h *adminService) ListEnrollmentTokens(context.Context, *connect.Request[v1.ListEnrollmentTokensRequest]) (*connect.Response[v1.ListEnrollmentTokensResponse], error) {
	toks, err := h.s.opts.AdminAPI.ListTokens()
	if err != nil {
		return nil, toConnect(h.s.log, "ListEnrollmentTokens", err)
	}
	out := &v1.ListEnrollmentTokensResponse{}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, &v1.EnrollmentToken{TokenId: t.ID, Cn: t.CN, Profile: t.Profile, DnsNames: t.DNSNames,
			CreatedAt: timestamppb.New(t.CreatedAt), ExpiresAt: timestamppb.New(t.ExpiresAt)})
	}
	return connect.NewResponse(out), nil
}

func (h *adminService) RevokeEnrollmentToken(ctx context.Context, req *connect.Request[v1.RevokeEnrollmentTokenRequest]) (*connect.Response[v1.RevokeEnrollmentTokenResponse], error) {
	if err := h.s.opts.AdminAPI.RevokeToken(ctx, req.Msg.GetTokenId(), adminName(ctx)); err != nil {
		return nil, toConnect(h.s.log, "RevokeEnrollmentToken", err)
	}
	return connect.NewResponse(&v1.RevokeEnrollmentTokenResponse{}), nil
}

func (h *adminService) ListCertificates(_ context.Context, req *connect.Request[v1.ListCertificatesRequest]) (*connect.Response[v1.ListCertificatesResponse], error) {
	m := req.Msg
	certs, next, err := h.s.opts.AdminAPI.ListCertificates(admin.CertQuery{Serial: m.GetSerial(), CNPrefix: m.GetCnPrefix(),
		Profile: m.GetProfile(), Status: m.GetStatus(), After: m.GetPageToken(), Limit: int(m.GetPageSize())})
	if err != nil {
		return nil, toConnect(h.s.log, "ListCertificates", err)
	}
	now := h.s.opts.AdminAPI.Now()
	out := &v1.ListCertificatesResponse{NextPageToken: next}
	for _, c := range certs {
		out.Certificates = append(out.Certificates, certPB(c, now, false))
	}
	return connect.NewResponse(out), nil
}

func (h *adminService) GetCertificate(_ context.Context, req *connect.Request[v1.GetCertificateRequest]) (*connect.Response[v1.GetCertificateResponse], error) {
	c, err := h.s.opts.AdminAPI.GetCertificate(req.Msg.GetSerial())
	if err != nil {
		return nil, toConnect(h.s.log, "GetCertificate", err)
	}
	return connect.NewResponse(&v1.GetCertificateResponse{Certificate: certPB(c, h.s.opts.AdminAPI.Now(), true)}), nil
}

func (h *adminService) RevokeCertificate(ctx context.Context, req *connect.Request[v1.RevokeCertificateRequest]) (*connect.Response[v1.RevokeCertificateResponse], error) {
	m := req.Msg
	res, err := h.s.opts.AdminAPI.Revoke(ctx, revocation.Request{Serial: m.GetSerial(), CN: m.GetCn(), Reason: int(m.GetReason()),
		Comment: m.GetComment(), By: adminName(ctx)})
	if err != nil {
		return nil, toConnect(h.s.log, "RevokeCertificate", err)
	}
	out := &v1.RevokeCertificateResponse{CrlNumber: res.CRLNumber}
	for _, c := range res.Certificates {
		out.Certificates = append(out.Certificates, certPB(c, h.s.opts.AdminAPI.Now(), false))
	}
	return connect.NewResponse(out), nil
}

func (h *adminService) RotateAdminCertificate(ctx context.Context, req *connect.Request[v1.RotateAdminCertificateRequest]) (*connect.Response[v1.RotateAdminCertificateResponse], error) {
	const proc = "RotateAdminCertificate"
	// adminOnly has checked the caller's certificate.
	r, err := h.s.admin.Rotate(ctx, ClientCert(ctx), req.Msg.GetCsr(), int(req.Msg.GetReason()), adminName(ctx))
	if err != nil {
		return nil, toConnect(h.s.log, proc, err)
	}
	h.s.metrics.issued.WithLabelValues("rotate", r.Record.Profile).Inc()
	return connect.NewResponse(&v1.RotateAdminCertificateResponse{
		Bundle:         (&certificateService{s: h.s}).bundle(&issuance.Issued{Cert: r.Cert, DER: r.Record.DER, Record: r.Record}),
		RevokedSerials: r.Revoked, CrlNumber: r.CRLNumber,
	}), nil
}

// certPB converts a store record for the wire (PEM only when asked).
func certPB(c *store.Cert, now time.Time, withPEM bool) *v1.Certificate {
	out := &v1.Certificate{Serial: c.Serial, Cn: c.CN, DnsNames: c.DNSNames, Profile: c.Profile, Status: c.Status(now),
		NotBefore: timestamppb.New(c.NotBefore), NotAfter: timestamppb.New(c.NotAfter), TokenId: c.TokenID,
		PreviousSerial: c.PreviousSerial, NextSerial: c.NextSerial, KeyType: c.KeyType}
	if c.Revocation != nil {
		out.RevokedAt = timestamppb.New(c.Revocation.At)
		out.RevocationReason = int32(c.Revocation.Reason)
		out.RevocationComment = c.Revocation.Comment
	}
	if withPEM {
		out.CertificatePem = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
	}
	return out
}

func (h *adminService) CreateAcmeEabKey(ctx context.Context, req *connect.Request[v1.CreateAcmeEabKeyRequest]) (*connect.Response[v1.CreateAcmeEabKeyResponse], error) {
	m := req.Msg
	kid, key, profile, err := h.s.opts.AdminAPI.CreateEABKey(ctx, admin.EABRequest{Profile: m.GetProfile(), CN: m.GetCn(),
		Reusable: m.GetReusable(), By: adminName(ctx)})
	if err != nil {
		return nil, toConnect(h.s.log, "CreateAcmeEabKey", err)
	}
	return connect.NewResponse(&v1.CreateAcmeEabKeyResponse{KeyId: kid, HmacKey: key, Profile: profile}), nil
}

func (h *adminService) ListAcmeEabKeys(context.Context, *connect.Request[v1.ListAcmeEabKeysRequest]) (*connect.Response[v1.ListAcmeEabKeysResponse], error) {
	keys, err := h.s.opts.AdminAPI.ListEABKeys()
	if err != nil {
		return nil, toConnect(h.s.log, "ListAcmeEabKeys", err)
	}
	out := &v1.ListAcmeEabKeysResponse{}
	for _, k := range keys {
		out.Keys = append(out.Keys, &v1.AcmeEabKey{KeyId: k.ID, Profile: k.Profile, Cn: k.CN, Reusable: k.Reusable,
			Used: k.Used, Revoked: k.Revoked, CreatedAt: timestamppb.New(k.Created)})
	}
	return connect.NewResponse(out), nil
}

func (h *adminService) RevokeAcmeEabKey(ctx context.Context, req *connect.Request[v1.RevokeAcmeEabKeyRequest]) (*connect.Response[v1.RevokeAcmeEabKeyResponse], error) {
	if err := h.s.opts.AdminAPI.RevokeEABKey(ctx, req.Msg.GetKeyId(), adminName(ctx)); err != nil {
		return nil, toConnect(h.s.log, "RevokeAcmeEabKey", err)
	}
	return connect.NewResponse(&v1.RevokeAcmeEabKeyResponse{}), nil
}
