package acme_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"

	"github.com/lanyard/lanyard/anchors/emulator"
	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/realtools"
)

func parseLeaf(t *testing.T, bundle []byte) (*x509.Certificate, []byte) {
	t.Helper()
	blk, rest := pem.Decode(bundle)
	if blk == nil {
		t.Fatal("no certificate in the bundle")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, rest
}

// TestARIRenewalThenRevocation: lego follows the renewal window lanyard
// gives through ARI (not due for a fresh certificate), renews with
// `replaces` once it is due (the renewal is the replaced certificate's
// successor in the lineage), cannot replace the same certificate twice;
// revoking the replaced certificate revokes the renewal, ARI then says
// renew now, and replacing the revoked certificate gives a fresh one.
func TestARIRenewalThenRevocation(t *testing.T) {
	c, cl, _, _ := legoCA(t, "ari.covalent.example.net")
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"ari.covalent.example.net"},
		PrivateKey: key, Bundle: true, EnableCommonName: true})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	leaf, _ := parseLeaf(t, res.Certificate)
	info, err := cl.Certificate.GetRenewalInfo(ctx, leaf)
	if err != nil {
		t.Fatalf("renewal info: %v", err)
	}
	now := time.Now()
	if at := info.ShouldRenewAt(now, 0); at != nil {
		t.Fatalf("ARI says renew a fresh certificate at %v (window %v..%v)", at, info.SuggestedWindow.Start, info.SuggestedWindow.End)
	}
	if !info.SuggestedWindow.Start.After(now) || !info.SuggestedWindow.End.Before(leaf.NotAfter) {
		t.Fatalf("window %v..%v is not inside the certificate's life (now %v, not after %v)",
			info.SuggestedWindow.Start, info.SuggestedWindow.End, now, leaf.NotAfter)
	}
	// At the end of the window the client renews, naming what it replaces.
	if at := info.ShouldRenewAt(info.SuggestedWindow.End, 0); at == nil {
		t.Fatal("ARI does not say renew at the end of its own window")
	}
	old := *res
	old.PrivateKey = nil // a new key for the renewal
	res2, err := cl.Certificate.Renew(ctx, old, &certificate.RenewOptions{KeyType: certcrypto.EC256, Bundle: true,
		EnableCommonName: true, UseARICertID: true})
	if err != nil {
		t.Fatalf("renew with replaces: %v", err)
	}
	leaf2, _ := parseLeaf(t, res2.Certificate)
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) == 0 || leaf2.Subject.CommonName != leaf.Subject.CommonName {
		t.Fatalf("renewal %v (CN %q) is not a new certificate for %q", leaf2.SerialNumber, leaf2.Subject.CommonName, leaf.Subject.CommonName)
	}
	// The renewal is the replaced certificate's successor in lanyard's
	// lineage, as an agent's renewal is.
	serialA, serialB := lanyardv1.FormatSerial(leaf.SerialNumber), lanyardv1.FormatSerial(leaf2.SerialNumber)
	if rec, err := c.Store.GetCert(serialB); err != nil || rec.PreviousSerial != serialA {
		t.Fatalf("renewal %s names predecessor %q (%v), want the replaced %s", serialB, rec.PreviousSerial, err, serialA)
	}
	if rec, err := c.Store.GetCert(serialA); err != nil || rec.NextSerial != serialB {
		t.Fatalf("replaced %s names successor %q (%v), want %s", serialA, rec.NextSerial, err, serialB)
	}
	// A replaced certificate stays replaced by its first successor: the
	// server answers alreadyReplaced (RFC 9773 section 5), on which lego
	// orders again without replaces.
	id, err := api.MakeARICertID(leaf)
	if err != nil {
		t.Fatal(err)
	}
	res3, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"ari.covalent.example.net"},
		KeyType: certcrypto.EC256, EnableCommonName: true, ReplacesCertID: id})
	if err != nil {
		t.Fatalf("order replacing a replaced certificate (lego retries without replaces): %v", err)
	}
	leaf3, _ := parseLeaf(t, res3.Certificate)
	var by string
	if err := c.Store.GetMeta("acme/replaced/"+lanyardv1.FormatSerial(leaf.SerialNumber), &by); err != nil ||
		by != lanyardv1.FormatSerial(leaf2.SerialNumber) || by == lanyardv1.FormatSerial(leaf3.SerialNumber) {
		t.Fatalf("certificate %s replaced by %q (%v), want its first renewal %s only",
			lanyardv1.FormatSerial(leaf.SerialNumber), by, err, lanyardv1.FormatSerial(leaf2.SerialNumber))
	}

	// Revoking the replaced certificate revokes its lineage (package
	// revocation's rule): the ACME renewal too, not the order that did
	// not replace it.
	if err := cl.Certificate.RevokeWithReason(ctx, res.Certificate, nil); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if rec, err := c.Store.GetCert(serialB); err != nil || rec.Revocation == nil {
		t.Fatalf("revoking %s left its ACME successor %s unrevoked (%v)", serialA, serialB, err)
	}
	if rec, err := c.Store.GetCert(lanyardv1.FormatSerial(leaf3.SerialNumber)); err != nil || rec.Revocation != nil {
		t.Fatalf("revoking %s revoked the unrelated order's certificate (%v)", serialA, err)
	}
	info, err = cl.Certificate.GetRenewalInfo(ctx, leaf2)
	if err != nil {
		t.Fatalf("renewal info after revocation: %v", err)
	}
	if at := info.ShouldRenewAt(time.Now(), 0); at == nil || info.SuggestedWindow.Start.After(time.Now()) {
		t.Fatalf("after revocation ARI window %v..%v, want now", info.SuggestedWindow.Start, info.SuggestedWindow.End)
	}
	// Renewing, as ARI says, a revoked certificate is a fresh one: its
	// lineage is revoked.
	old2 := *res2
	old2.PrivateKey = nil
	res4, err := cl.Certificate.Renew(ctx, old2, &certificate.RenewOptions{KeyType: certcrypto.EC256, Bundle: true,
		EnableCommonName: true, UseARICertID: true})
	if err != nil {
		t.Fatalf("renew the revoked certificate with replaces: %v", err)
	}
	leaf4, _ := parseLeaf(t, res4.Certificate)
	if rec, err := c.Store.GetCert(lanyardv1.FormatSerial(leaf4.SerialNumber)); err != nil || rec.Revocation != nil || rec.PreviousSerial != "" {
		t.Fatalf("replacement of the revoked %s: %+v (%v), want an unrevoked certificate of its own lineage", serialB, rec, err)
	}
	var by2 string
	if err := c.Store.GetMeta("acme/replaced/"+serialB, &by2); err != nil || by2 != lanyardv1.FormatSerial(leaf4.SerialNumber) {
		t.Fatalf("revoked %s replaced by %q (%v), want %s", serialB, by2, err, lanyardv1.FormatSerial(leaf4.SerialNumber))
	}
}

// TestACMECertificateWithSigningHelper: the certificate lego gets through
// ACME is one the real aws_signing_helper exchanges for credentials at the
// Roles Anywhere emulator (clientAuth, the CA's chain).
func TestACMECertificateWithSigningHelper(t *testing.T) {
	helper := realtools.SigningHelper(t)
	c, cl, _, _ := legoCA(t, "")
	ctx := context.Background()
	res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"helper.covalent.example.net"},
		KeyType: certcrypto.EC256, Bundle: true, EnableCommonName: true})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	leaf, chain := parseLeaf(t, res.Certificate)

	const role = "arn:aws:iam::123456789012:role/covalent"
	em, anchor, profile := c.SeededEmulator(t, role)
	dir := t.TempDir()
	files := map[string][]byte{"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}),
		"chain.pem": chain, "key.pem": res.PrivateKey}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(helper, "credential-process",
		"--certificate", filepath.Join(dir, "cert.pem"), "--private-key", filepath.Join(dir, "key.pem"),
		"--intermediates", filepath.Join(dir, "chain.pem"),
		"--trust-anchor-arn", anchor, "--profile-arn", profile, "--role-arn", role,
		"--region", emulator.DefaultRegion, "--endpoint", em.URL)
	cmd.Env = realtools.HelperEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("aws_signing_helper: %v\n%s", err, stderr.String())
	}
	var out struct {
		Version     int
		AccessKeyID string `json:"AccessKeyId"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || out.Version != 1 || out.AccessKeyID == "" {
		t.Fatalf("helper output %q (%v)", stdout.String(), err)
	}
	sess := em.Sessions()
	if len(sess) != 1 || sess[0].Serial.Cmp(leaf.SerialNumber) != 0 || sess[0].CommonName != "helper.covalent.example.net" {
		t.Fatalf("emulator sessions %+v, want one for the ACME certificate", sess)
	}
}
