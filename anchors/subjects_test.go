package anchors_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
)

// TestSubjectsFlags each of the report's three cases from the emulator's
// ListSubjects/GetSubject: a certificate of another CA that authenticated
// (the anchor trusts that CA too), a revoked certificate presented after
// the CRL reached the anchor, and a valid enrollment never used; a
// certificate used normally is not flagged.
func TestSubjectsFlags(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	other := testca.Start(t, testca.Options{})
	emu, cl, s, _ := syncedEmulator(t, c)
	ctx := context.Background()
	c.Revocation.SetPublisher(s)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := s.WaitCRL(wctx, c.Revocation.Current().Number); err != nil {
		t.Fatal(err)
	}
	// Someone adds another CA's root to the anchor (kept as foreign).
	bundle := string(pemOfCerts(append(c.Authority.Roots(), other.Authority.Roots()...)))
	if _, err := cl.UpdateTrustAnchor(ctx, &ra.UpdateTrustAnchorInput{TrustAnchorId: aws.String(idOfARN(s.TrustAnchorARN())),
		Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle, SourceData: &types.SourceDataMemberX509CertificateData{Value: bundle}}}); err != nil {
		t.Fatal(err)
	}

	used, _ := enroll(t, c, "used.covalent.example.net")
	_, unusedSerial := enroll(t, c, "idle.covalent.example.net")
	revoked, revokedSerial := enroll(t, c, "stolen.covalent.example.net")
	foreign, _ := enroll(t, other, "rogue.covalent.example.net")
	for name, h := range map[string]hostCreds{"used": used, "revoked": revoked, "foreign": foreign} {
		if ok, why := sessionVerdict(t, h, emu.URL, s.TrustAnchorARN(), s.ProfileARN()); !ok {
			t.Fatalf("%s: refused: %s", name, why)
		}
	}
	res, err := c.Revocation.Revoke(ctx, revocation.Request{Serial: revokedSerial, Reason: revocation.ReasonKeyCompromise, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitCRL(wctx, res.CRLNumber); err != nil {
		t.Fatal(err)
	}
	if ok, _ := sessionVerdict(t, revoked, emu.URL, s.TrustAnchorARN(), s.ProfileARN()); ok {
		t.Fatal("revoked certificate granted")
	}

	rep, err := s.Subjects(ctx, anchors.StoreInventory{DB: c.Store})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if len(rep.Seen) != 3 {
		t.Fatalf("%d certificates seen, want 3", len(rep.Seen))
	}
	want := map[string]string{
		anchors.FindingForeign:     foreign.leaf.SerialNumber.Text(16),
		anchors.FindingRevokedSeen: revoked.leaf.SerialNumber.Text(16),
		anchors.FindingNeverUsed:   strings.TrimLeft(unusedSerial, "0"),
	}
	if len(rep.Findings) != len(want) {
		t.Fatalf("findings %+v, want one of each kind", rep.Findings)
	}
	for _, f := range rep.Findings {
		if want[f.Kind] != f.Serial.Text(16) {
			t.Errorf("finding %s for serial %s, want %s", f.Kind, f.Serial.Text(16), want[f.Kind])
		}
		if f.Serial.Cmp(used.leaf.SerialNumber) == 0 {
			t.Errorf("the normally used certificate is flagged: %+v", f)
		}
	}

	// The dashboard's panel: Run's refresh records the summary.
	s.SetInventory(anchors.StoreInventory{DB: c.Store})
	s.RefreshSubjects(ctx)
	st, err := anchors.LoadStatus(c.Store)
	if err != nil {
		t.Fatal(err)
	}
	if sum := st.Subjects; sum == nil || sum.Seen != 3 || sum.Total != 3 || len(sum.Findings) != 3 || sum.Err != "" {
		t.Fatalf("persisted subjects summary %+v", sum)
	}
}

func idOfARN(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }

func pemOfCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
