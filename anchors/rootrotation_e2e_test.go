package anchors_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/pembundle"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/renewal/agent"
	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/renewal/schedule"
)

// agentHost enrolls a host folder the way `lanyard enroll --fingerprint`
// does: the roots come from /roots.pem through the pinning rule under
// the root with that fingerprint (caclient.Bootstrap), the certificate
// from the Enroll RPC, written by hostdir with DIR/enrollment.json.
func agentHost(t *testing.T, c *testca.CA, cn, fingerprint string) (string, hostCreds) {
	t.Helper()
	roots, err := caclient.Bootstrap(t.Context(), c.URL, fingerprint, c.Now())
	if err != nil {
		t.Fatalf("bootstrap %s: %v", cn, err)
	}
	key, err := agent.NewKey("P-256")
	if err != nil {
		t.Fatal(err)
	}
	csr, keyPEM, err := agent.NewCSR(key, caclient.Names{CN: cn})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Anonymous.Certificates.Enroll(t.Context(), connect.NewRequest(&v1.EnrollRequest{Token: c.Token(t, cn), Csr: csr}))
	if err != nil {
		t.Fatalf("enroll %s: %v", cn, err)
	}
	b := resp.Msg.GetBundle()
	if _, err := caclient.VerifyIssued(roots, []byte(b.GetCertificatePem()), []byte(b.GetChainPem()), nil, time.Now()); err != nil {
		t.Fatalf("enroll %s: %v", cn, err)
	}
	dir := filepath.Join(t.TempDir(), cn)
	d, err := hostdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(hostdir.Material{CertPEM: []byte(b.GetCertificatePem()), ChainPEM: []byte(b.GetChainPem()), KeyPEM: keyPEM}); err != nil {
		t.Fatal(err)
	}
	if err := hostdir.WriteEnrollment(dir, &hostdir.Enrollment{CA: c.URL, KeyType: "P-256"}, roots); err != nil {
		t.Fatal(err)
	}
	return dir, hostFiles(t, dir)
}

// hostFiles is a host folder's Certbot-named files, as aws_signing_helper
// is pointed at them.
func hostFiles(t *testing.T, dir string) hostCreds {
	t.Helper()
	h := hostCreds{certF: filepath.Join(dir, "cert.pem"), keyF: filepath.Join(dir, "privkey.pem"), chainF: filepath.Join(dir, "chain.pem")}
	b, err := os.ReadFile(h.certF)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pembundle.ParseNonEmpty(b)
	if err != nil {
		t.Fatal(err)
	}
	h.leaf = certs[0]
	return h
}

// storedRoots is a host folder's DIR/ca.pem.
func storedRoots(t *testing.T, dir string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, hostdir.RootsFile))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pembundle.ParseNonEmpty(b)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func sameCerts(got []*x509.Certificate, want ...*x509.Certificate) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !got[i].Equal(want[i]) {
			return false
		}
	}
	return true
}

// rootRotationFleet is how many hosts go through the rotation: enough
// for the renewal spread to show, few enough that the test stays cheap
// (each credential fetch is a real aws_signing_helper process).
const rootRotationFleet = 4

// TestRootRotationEndToEnd takes a fleet of agent host folders through a
// full `ca.RotateRoot` / `ca.FinishRootRotation` with the Roles Anywhere
// emulator and the real aws_signing_helper fetching credentials between
// every step: 0 failed fetches. The hosts pinned the old root; during the
// rotation the trust anchor and /roots.pem hold both roots (never more),
// renewal info asks every old-root certificate to renew, spread, and the
// renewals (agent.RenewDir, TLS through the intermediate's
// cross-certificate) land on the new root, teaching the hosts the new
// root by the pinning rule. The finish is refused while an old-root
// certificate is in use; after it the anchor, /roots.pem and, after their
// next renewal, the hosts trust only the new root, and the old
// intermediate's CRL is gone from the anchor.
//
// The CA's clock runs 20 minutes behind real time, so that moving it
// past the renewal grace (issuance.RenewalRetryGrace) brings it back to
// real time, the time aws_signing_helper signs with and the emulator
// checks.
func TestRootRotationEndToEnd(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	clk := clock.NewFake(time.Now().Add(-20 * time.Minute))
	emu := emulator.NewServer(emulator.Options{})
	defer emu.Close()
	ctx := context.Background()
	cfg := emuConfig(emu)
	api, err := anchors.NewClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{} // CN -> host folder
	// A restarted testca listens on a new port: point the hosts at it
	// (their roots stay as they are).
	repoint := func(c *testca.CA) {
		for _, d := range hosts {
			enr, roots, err := hostdir.ReadEnrollment(d)
			if err != nil {
				t.Fatal(err)
			}
			enr.CA = c.URL
			if err := hostdir.WriteEnrollment(d, enr, roots); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rep *anchors.Report
	start := func() (*testca.CA, *anchors.Syncer) {
		c := testca.Start(t, testca.Options{Dir: dir, Clock: clk})
		s := anchors.New(cfg, api, c.Authority, c.Store, c.Now, nil)
		if rep, err = s.Sync(ctx, false); err != nil {
			t.Fatal(err)
		}
		c.Revocation.SetPublisher(s)
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := s.WaitCRL(wctx, c.Revocation.Current().Number); err != nil {
			t.Fatalf("CRL push: %v", err)
		}
		repoint(c)
		return c, s
	}
	stop := func(c *testca.CA, s *anchors.Syncer) {
		s.Close()
		c.Stop()
	}
	c, s := start()
	anchor, profile := rep.TrustAnchorARN, rep.ProfileARN
	oldRoot := c.Authority.Roots()[0]
	oldFP := "SHA256:" + caclient.Fingerprint(oldRoot)

	failed, fetches := 0, 0
	fetchAll := func(what string, hosts map[string]string) {
		t.Helper()
		for cn, d := range hosts {
			fetches++
			if out, err := helper(t, hostFiles(t, d), emu.URL, anchor, profile); err != nil {
				failed++
				t.Errorf("credential fetch of %s (%s): %v\n%s", cn, what, err, out)
			}
		}
	}
	for i := range rootRotationFleet {
		cn := fmt.Sprintf("fleet-%d.covalent.example.net", i)
		hosts[cn], _ = agentHost(t, c, cn, oldFP)
		if got := storedRoots(t, hosts[cn]); !sameCerts(got, oldRoot) {
			t.Fatalf("%s trusts %d roots before the rotation, want the pinned one", cn, len(got))
		}
	}
	fetchAll("before the rotation", hosts)
	stop(c, s)

	res, err := ca.RotateRoot(ca.RootRotateOptions{Dir: caDir, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.RotateRoot(ca.RootRotateOptions{Dir: caDir, Now: clk.Now}); err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("a second rotation while one is in progress: %v", err)
	}
	c, s = start()
	if rep.TrustAnchorARN != anchor || len(rep.Result) != 2 {
		t.Fatalf("trust anchor during the rotation: %s with %d certificates, want %s with both roots", rep.TrustAnchorARN, len(rep.Result), anchor)
	}
	served, err := c.Anonymous.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if certs, _ := pembundle.ParseNonEmpty(served); len(certs) != 3 || !sameCerts(certs, res.NewRoot, oldRoot, res.Cross) {
		t.Fatalf("/roots.pem during the rotation: %d certificates, want the new root, the old root and the cross-certificate", len(certs))
	}
	fetchAll("old chain, during the rotation", hosts)

	// A host enrolled now with the old fingerprint (an old runbook) trusts
	// both roots and gets a new-root certificate.
	late, lateFiles := agentHost(t, c, "late.covalent.example.net", oldFP)
	if got := storedRoots(t, late); !sameCerts(got, oldRoot, res.NewRoot) {
		t.Fatalf("a host pinning the old root during the rotation trusts %d roots, want both", len(got))
	}
	if err := lateFiles.leaf.CheckSignatureFrom(res.NewIntermediate); err != nil {
		t.Fatalf("new issuance is not from the new intermediate: %v", err)
	}

	// Renewal info asks every old-root certificate to renew, each at its
	// own moment.
	starts := map[time.Time]bool{}
	for cn, d := range hosts {
		h := hostFiles(t, d)
		ri, err := c.Anonymous.Certificates.GetRenewalInfo(ctx, connect.NewRequest(&v1.GetRenewalInfoRequest{Serial: v1.FormatSerial(h.leaf.SerialNumber)}))
		if err != nil {
			t.Fatal(err)
		}
		w := ri.Msg.GetRenewalInfo()
		if w.GetReason() != schedule.ReasonCARotation || w.GetWindowStart().AsTime().Before(res.NewIntermediate.NotBefore) ||
			w.GetWindowStart().AsTime().After(clk.Now().Add(6*time.Hour)) {
			t.Fatalf("renewal info of %s: %s from %s, want %s within the first quarter of its lifetime", cn, w.GetReason(), w.GetWindowStart().AsTime(), schedule.ReasonCARotation)
		}
		starts[w.GetWindowStart().AsTime()] = true
	}
	if len(starts) < rootRotationFleet-1 {
		t.Fatalf("renewal windows of %d hosts start at %d moments: not spread", rootRotationFleet, len(starts))
	}
	// The admin credential moves too (it is a certificate of the old root).
	adminLeaf, err := x509.ParseCertificate(c.AdminCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.AdminCred.Renew(ctx, adminLeaf, adminCSR(t)); err != nil {
		t.Fatalf("admin renewal: %v", err)
	}

	// Each host renews at its moment (here one after the other), fetching
	// credentials between renewals.
	for cn, d := range hosts {
		if _, err := agent.RenewDir(ctx, d, agent.RenewOptions{Logger: quietLogger()}); err != nil {
			t.Fatalf("renew %s during the rotation: %v", cn, err)
		}
		if err := hostFiles(t, d).leaf.CheckSignatureFrom(res.NewIntermediate); err != nil {
			t.Fatalf("%s renewed onto another issuer: %v", cn, err)
		}
		if got := storedRoots(t, d); !sameCerts(got, oldRoot, res.NewRoot) {
			t.Fatalf("%s trusts %d roots after its renewal, want the pinned one and the new one", cn, len(got))
		}
		fetchAll("after "+cn+" renewed", hosts)
	}
	hosts["late.covalent.example.net"] = late

	// Not yet: the renewed certificates are within the renewal grace.
	inUse := func() (int, time.Time) {
		st, err := ca.ReadState(caDir)
		if err != nil {
			t.Fatal(err)
		}
		use, err := issuance.IssuerUsage(c.Store, st.UnderOldRoot(), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		n, until := 0, time.Time{}
		for _, u := range use {
			n += u.InUse
			if u.InUseUntil.After(until) {
				until = u.InUseUntil
			}
		}
		return n, until
	}
	n, until := inUse()
	if n == 0 {
		t.Fatal("no old-root certificate counted in use right after the renewals")
	}
	stop(c, s)
	live := func(n int, until time.Time) func([]*x509.Certificate) (int, time.Time, error) {
		return func([]*x509.Certificate) (int, time.Time, error) { return n, until, nil }
	}
	if _, err := ca.FinishRootRotation(ca.FinishOptions{Dir: caDir, Live: live(n, until)}); err == nil {
		t.Fatal("the rotation finished while old-root certificates are in use")
	}
	c, s = start()
	clk.Set(until.Add(time.Second))
	if n, _ := inUse(); n != 0 {
		t.Fatalf("%d old-root certificates still in use past %s", n, until)
	}
	fetchAll("past the renewal grace", hosts)
	stop(c, s)
	if _, err := ca.FinishRootRotation(ca.FinishOptions{Dir: caDir, Live: live(0, time.Time{})}); err != nil {
		t.Fatal(err)
	}

	c, s = start()
	defer stop(c, s)
	if len(rep.Retired) != 1 || len(rep.Result) != 1 || rep.Result[0].SHA256 != caclient.Fingerprint(res.NewRoot) {
		t.Fatalf("trust anchor after the finish: %d retired, %d left; want the old root out and the new one alone", len(rep.Retired), len(rep.Result))
	}
	// A push (as every new CRL makes) deletes the old intermediate's CRL.
	if err := s.PushCRL(ctx, c.Revocation.Current()); err != nil {
		t.Fatal(err)
	}
	crls, err := api.ListCrls(ctx, &rolesanywhere.ListCrlsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, crl := range crls.Crls {
		if aws.ToString(crl.TrustAnchorArn) == anchor && strings.Contains(aws.ToString(crl.Name), "-retired-") {
			t.Fatalf("the old intermediate's CRL %s is still in the anchor", aws.ToString(crl.Name))
		}
	}
	served, err = c.Anonymous.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if certs, _ := pembundle.ParseNonEmpty(served); !sameCerts(certs, res.NewRoot) {
		t.Fatalf("/roots.pem after the finish: %d certificates, want the new root alone", len(certs))
	}
	fetchAll("after the finish", hosts)
	for cn, d := range hosts {
		if _, err := agent.RenewDir(ctx, d, agent.RenewOptions{Logger: quietLogger()}); err != nil {
			t.Fatalf("renew %s after the finish: %v", cn, err)
		}
		if got := storedRoots(t, d); !sameCerts(got, res.NewRoot) {
			t.Fatalf("%s trusts %d roots after the finish and a renewal, want the new root alone", cn, len(got))
		}
	}
	fetchAll("after the finish and a renewal", hosts)
	if failed != 0 {
		t.Fatalf("%d of %d credential fetches failed through the root rotation", failed, fetches)
	}
	t.Logf("%d hosts, %d credential fetches through a root rotation, 0 failed", len(hosts), fetches)
}

// adminCSR is a CSR for a new admin key.
func adminCSR(t *testing.T) []byte {
	t.Helper()
	key, err := agent.NewKey("P-256")
	if err != nil {
		t.Fatal(err)
	}
	csr, _, err := agent.NewCSR(key, caclient.Names{CN: "lanyard-admin"})
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// quietLogger drops the agent's log lines.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
