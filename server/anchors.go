package server

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lanyard/lanyard/anchors"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
)

// GetAnchorStatus answers with admin.Service.AnchorStatus: what the
// trust-anchor sync of every target recorded in the store.
func (h *adminService) GetAnchorStatus(context.Context, *connect.Request[v1.GetAnchorStatusRequest]) (*connect.Response[v1.GetAnchorStatusResponse], error) {
	targets, err := h.s.opts.AdminAPI.AnchorStatus()
	if err != nil {
		return nil, toConnect(h.s.log, "GetAnchorStatus", err)
	}
	out := &v1.GetAnchorStatusResponse{}
	for _, t := range targets {
		out.Targets = append(out.Targets, AnchorStatusPB(t.Target, t.Status))
	}
	return connect.NewResponse(out), nil
}

// AnchorStatusPB converts the recorded status of one trust-anchor target
// for the wire (st nil: nothing recorded yet). lanyardv1's AnchorStatus
// and package anchors' Status carry the same fields.
func AnchorStatusPB(target string, st *anchors.Status) *v1.AnchorStatus {
	out := &v1.AnchorStatus{Target: target}
	if st == nil {
		return out
	}
	out.Recorded = true
	out.TrustAnchorArn, out.ProfileArn, out.RoleArn, out.Created = st.TrustAnchorARN, st.ProfileARN, st.RoleARN, st.Created
	out.LastSync, out.LastResult, out.LastError, out.Drift = tsPB(st.LastSync), st.LastResult, st.LastError, st.Drift
	out.Bundle, out.Foreign = certInfosPB(st.Bundle), certInfosPB(st.Foreign)
	out.KillSwitch = st.KillSwitch
	for _, c := range st.Changes {
		out.Changes = append(out.Changes, &v1.AnchorChange{Resource: c.Resource, Field: c.Field, From: c.From, To: c.To})
	}
	if sum := st.Subjects; sum != nil {
		out.Subjects = &v1.AnchorSubjects{At: tsPB(sum.At), Seen: int64(sum.Seen), Total: int64(sum.Total), Error: sum.Err}
		for _, f := range sum.Findings {
			pf := &v1.AnchorFinding{Kind: f.Kind, Subject: f.Subject, SeenAt: tsPB(f.SeenAt), Detail: f.Detail}
			if f.Serial != nil {
				pf.Serial = v1.FormatSerial(f.Serial)
			}
			out.Subjects.Findings = append(out.Subjects.Findings, pf)
		}
	}
	out.CrlArn, out.CrlNumber, out.CrlEntries = st.CRLArn, st.CRLNumber, int64(st.CRLEntries)
	out.CrlNextUpdate, out.CrlPushedAt = tsPB(st.CRLNextUpdate), tsPB(st.CRLPushedAt)
	out.CrlError, out.CrlErrorNumber, out.CrlErrorAt = st.CRLError, st.CRLErrorNumber, tsPB(st.CRLErrorAt)
	return out
}

func certInfosPB(certs []anchors.CertInfo) []*v1.AnchorCertificate {
	var out []*v1.AnchorCertificate
	for _, c := range certs {
		out = append(out, &v1.AnchorCertificate{Subject: c.Subject, Sha256: c.SHA256, NotAfter: tsPB(c.NotAfter)})
	}
	return out
}

// tsPB is t on the wire, unset for the zero time ("never").
func tsPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
