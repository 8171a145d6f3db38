package anchors_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
)

// TestIntermediateRotationEndToEnd: hosts of the old intermediate keep
// getting AWS credentials from the real aws_signing_helper through
// `lanyard ca rotate-intermediate` (0 failed fetches), hosts of the new
// one get them too, and revoking an old-intermediate certificate after the
// rotation still cuts it off: the retired intermediate's own CRL is pushed
// to the trust anchor beside the current one (Roles Anywhere checks a
// certificate against the CRLs its issuer signed).
func TestIntermediateRotationEndToEnd(t *testing.T) {
	dir := t.TempDir()
	emu := emulator.NewServer(emulator.Options{})
	defer emu.Close()
	ctx := context.Background()
	start := func() (*testca.CA, *anchors.Syncer, string, string) {
		c := testca.Start(t, testca.Options{Dir: dir})
		_, s, rep := startSyncer(t, c, emuConfig(emu))
		c.Revocation.SetPublisher(s)
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := s.WaitCRL(wctx, c.Revocation.Current().Number); err != nil {
			t.Fatalf("CRL push: %v", err)
		}
		return c, s, rep.TrustAnchorARN, rep.ProfileARN
	}
	c, s, anchor, profile := start()
	old1, _ := enroll(t, c, "old-1.covalent.example.net")
	old2, old2Serial := enroll(t, c, "old-2.covalent.example.net")
	failed := 0
	fetch := func(h hostCreds, what string) {
		t.Helper()
		if out, err := helper(t, h, emu.URL, anchor, profile); err != nil {
			failed++
			t.Errorf("credential fetch (%s): %v\n%s", what, err, out)
		}
	}
	fetch(old1, "old host before the rotation")
	s.Close()
	c.Stop()

	if _, err := ca.RotateIntermediate(ca.RotateOptions{Dir: filepath.Join(dir, "ca")}); err != nil {
		t.Fatal(err)
	}
	c, s, anchor2, _ := start()
	defer s.Close()
	if anchor2 != anchor {
		t.Fatalf("the sync moved to another trust anchor: %s", anchor2)
	}
	if len(c.Revocation.Current().Retired) != 1 {
		t.Fatalf("%d retired CRLs, want the old intermediate's", len(c.Revocation.Current().Retired))
	}
	fresh, _ := enroll(t, c, "new-1.covalent.example.net")
	if err := fresh.leaf.CheckSignatureFrom(c.Authority.Intermediate()); err != nil {
		t.Fatalf("new host not from the new intermediate: %v", err)
	}
	fetch(old1, "old host after the rotation")
	fetch(old2, "second old host after the rotation")
	fetch(fresh, "new host")

	res, err := c.Revocation.Revoke(ctx, revocation.Request{Serial: old2Serial, Reason: revocation.ReasonKeyCompromise, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	for {
		code := createSession(t, old2, emu.URL, anchor, profile).StatusCode
		if code == http.StatusForbidden {
			break
		}
		if time.Since(begin) > 15*time.Second {
			t.Fatalf("a revoked certificate of the retired intermediate still gets sessions 15s later (CRL %d, code %d)", res.CRLNumber, code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fetch(old1, "unrevoked old host after a revocation")
	fetch(fresh, "new host after a revocation")
	t.Logf("%d failed credential fetches through the rotation", failed)
}
