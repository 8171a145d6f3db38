package server_test

import (
	"context"
	"math/big"
	"reflect"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/lanyard/lanyard/anchors"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
)

// TestGetAnchorStatus: the admin credential reads, over loopback TLS, the
// trust-anchor status the sync recorded in the store (the one source:
// the answer is what the store holds), a revocation's CRL number shows
// once it reached the (emulated) trust anchor; a caller without a
// certificate and a host certificate are refused; without a sync it is
// FailedPrecondition.
func TestGetAnchorStatus(t *testing.T) {
	acfg, emu := testca.EmulatedAnchors(t)
	c := testca.Start(t, testca.Options{Anchors: acfg})
	ctx := context.Background()
	b, key := enroll(t, c, "anchored.covalent.example.net")
	res, err := c.Revocation.Revoke(ctx, revocation.Request{Serial: b.GetSerial(), Reason: revocation.ReasonKeyCompromise, By: "admin:test"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.App.Anchors.WaitCRL(wctx, res.CRLNumber); err != nil {
		t.Fatalf("CRL %d did not reach the emulated trust anchor: %v", res.CRLNumber, err)
	}

	resp, err := c.Admin.Admin.GetAnchorStatus(ctx, connect.NewRequest(&v1.GetAnchorStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Msg.GetTargets()
	if len(got) != 1 {
		t.Fatalf("%d targets, want the default one", len(got))
	}
	st := got[0]
	anchorsList := emu.TrustAnchors()
	if !st.GetRecorded() || st.GetTarget() != "" || len(anchorsList) != 1 || st.GetTrustAnchorArn() != anchorsList[0].Arn ||
		st.GetCrlNumber() < res.CRLNumber || st.GetCrlPushedAt() == nil || st.GetCrlError() != "" || st.GetLastSync() == nil ||
		len(st.GetBundle()) != 1 || st.GetBundle()[0].GetSubject() != c.Authority.Roots()[0].Subject.String() {
		t.Fatalf("status %v, want the emulator's anchor %v holding CRL %d and the CA's root", st, anchorsList, res.CRLNumber)
	}
	stored, err := anchors.LoadStatus(c.Store)
	if err != nil {
		t.Fatal(err)
	}
	if want := server.AnchorStatusPB("", stored); !proto.Equal(st, want) {
		t.Fatalf("the RPC answers\n%v\nthe store holds\n%v", st, want)
	}

	host := tlsCert(t, b, key)
	for name, cl := range map[string]func() error{
		"no certificate": func() error {
			_, err := c.Anonymous.Admin.GetAnchorStatus(ctx, connect.NewRequest(&v1.GetAnchorStatusRequest{}))
			return err
		},
		"host certificate": func() error {
			_, err := c.Client(t, host).Admin.GetAnchorStatus(ctx, connect.NewRequest(&v1.GetAnchorStatusRequest{}))
			return err
		},
	} {
		if err := cl(); connect.CodeOf(err) != connect.CodeUnauthenticated && connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s: GetAnchorStatus answered %v, want it refused", name, err)
		}
	}

	plain := testca.Start(t, testca.Options{})
	if _, err := plain.Admin.Admin.GetAnchorStatus(ctx, connect.NewRequest(&v1.GetAnchorStatusRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("without a sync: %v, want FailedPrecondition", err)
	}
}

// TestAnchorStatusPBCarriesEveryField: every field of anchors.Status
// reaches the wire, so the CLI and the page show what the store holds.
func TestAnchorStatusPBCarriesEveryField(t *testing.T) {
	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	cert := anchors.CertInfo{Subject: "CN=root", SHA256: "00ff", NotAfter: at}
	st := &anchors.Status{
		TrustAnchorARN: "ta", ProfileARN: "p", RoleARN: "r", Created: true, LastSync: at, LastResult: "updated", LastError: "e",
		Drift: "d", Bundle: []anchors.CertInfo{cert}, Foreign: []anchors.CertInfo{cert}, KillSwitch: "k",
		Changes: []anchors.Change{{Resource: "profile", Field: "durationSeconds", From: "1", To: "2"}},
		Subjects: &anchors.SubjectsSummary{At: at, Seen: 1, Total: 1, Err: "e",
			Findings: []anchors.Finding{{Kind: "k", Subject: "s", Serial: big.NewInt(1), SeenAt: at, Detail: "d"}}},
		CRLArn: "crl", CRLNumber: 7, CRLEntries: 3, CRLNextUpdate: at, CRLPushedAt: at, CRLError: "e", CRLErrorNumber: 8, CRLErrorAt: at,
	}
	v := reflect.ValueOf(*st)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("the test leaves anchors.Status.%s zero: set it", v.Type().Field(i).Name)
		}
	}
	pb := server.AnchorStatusPB("eu", st)
	var unset []string
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if !m.Has(fd) {
				unset = append(unset, string(fd.FullName()))
				continue
			}
			switch {
			case fd.IsList() && fd.Message() != nil:
				for j := range m.Get(fd).List().Len() {
					walk(m.Get(fd).List().Get(j).Message())
				}
			case fd.Message() != nil && fd.Message().FullName() != "google.protobuf.Timestamp":
				walk(m.Get(fd).Message())
			}
		}
	}
	walk(pb.ProtoReflect())
	if len(unset) > 0 {
		t.Fatalf("AnchorStatusPB leaves %v unset", unset)
	}
	if n, want := pb.ProtoReflect().Descriptor().Fields().Len(), v.NumField()+2; n != want {
		t.Fatalf("lanyard.v1.AnchorStatus has %d fields, anchors.Status %d (+ target, recorded): one side lacks a field", n, v.NumField())
	}
}
