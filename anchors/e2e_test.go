package anchors_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/anchors/x509sigv4"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
)

const role = "arn:aws:iam::123456789012:role/covalent-dev"

// hostCreds is a host's key, certificate and chain, as files and parsed.
type hostCreds struct {
	key                 crypto.Signer
	leaf                *x509.Certificate
	chain               []*x509.Certificate
	certF, keyF, chainF string
}

func writeHost(t *testing.T, key crypto.Signer, certPEM, chainPEM []byte) hostCreds {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	h := hostCreds{key: key, certF: filepath.Join(dir, "cert.pem"), keyF: filepath.Join(dir, "privkey.pem"), chainF: filepath.Join(dir, "chain.pem")}
	for p, data := range map[string][]byte{h.certF: certPEM, h.chainF: chainPEM,
		h.keyF: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := pem.Decode(certPEM)
	if h.leaf, err = x509.ParseCertificate(b.Bytes); err != nil {
		t.Fatal(err)
	}
	for rest := chainPEM; ; {
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		h.chain = append(h.chain, c)
	}
	return h
}

// enroll gets a certificate from the running CA the way `lanyard enroll`
// does: token from the admin API, CSR to the Enroll RPC.
func enroll(t *testing.T, c *testca.CA, cn string) (hostCreds, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Anonymous.Certificates.Enroll(context.Background(), connect.NewRequest(&v1.EnrollRequest{Token: c.Token(t, cn), Csr: csr}))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	b := resp.Msg.GetBundle()
	return writeHost(t, key, []byte(b.GetCertificatePem()), []byte(b.GetChainPem())), b.GetSerial()
}

// foreignHost is a certificate from a CA the trust anchor does not hold,
// with the same names as ours.
func foreignHost(t *testing.T, cn string) hostCreds {
	t.Helper()
	mk := func(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	now := time.Now()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lanyard Root CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour * 48), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	root := mk(rt, rt, rk.Public(), rk)
	ik, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "lanyard Intermediate CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour * 24), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	inter := mk(it, root, ik.Public(), rk)
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	leaf := mk(lt, inter, lk.Public(), ik)
	return writeHost(t, lk, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw}))
}

// helper runs the real aws_signing_helper credential-process.
func helper(t *testing.T, h hostCreds, endpoint, anchor, profile string) (string, error) {
	t.Helper()
	cmd := exec.Command(realtools.SigningHelper(t), "credential-process",
		"--certificate", h.certF, "--private-key", h.keyF, "--intermediates", h.chainF,
		"--trust-anchor-arn", anchor, "--profile-arn", profile, "--role-arn", role,
		"--region", emulator.DefaultRegion, "--endpoint", endpoint)
	cmd.Env = realtools.HelperEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stderr.String(), err
	}
	return stdout.String(), nil
}

// createSession is one x509sigv4-signed CreateSession; it returns the
// answer, its body closed.
func createSession(t *testing.T, h hostCreds, endpoint, anchor, profile string) *http.Response {
	t.Helper()
	q := url.Values{"profileArn": {profile}, "roleArn": {role}, "trustAnchorArn": {anchor}}
	body := []byte(`{"durationSeconds":900}`)
	req, err := http.NewRequest(http.MethodPost, endpoint+"/sessions?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := x509sigv4.Sign(req, body, h.key, h.leaf, h.chain, emulator.DefaultRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// emuConfig is the trust-anchor sync of the tests against emu: its
// region and endpoint, the test role, the anchor created on first sync,
// the emulator's own access key.
func emuConfig(emu *emulator.Server) anchors.Config {
	return anchors.Config{Region: emulator.DefaultRegion, Endpoint: emu.URL, RoleARN: role, Create: true,
		Credentials: credentials.NewStaticCredentialsProvider(emu.AccessKeyID(), emu.SecretAccessKey(), "")}
}

// syncedEmulator starts a Roles Anywhere emulator and c's Syncer to it
// (startSyncer with emuConfig), both closed when the test ends.
func syncedEmulator(t testing.TB, c *testca.CA) (*emulator.Server, *rolesanywhere.Client, *anchors.Syncer, *anchors.Report) {
	t.Helper()
	emu := emulator.NewServer(emulator.Options{})
	t.Cleanup(emu.Close)
	cl, s, rep := startSyncer(t, c, emuConfig(emu))
	t.Cleanup(func() { _ = s.Close() })
	return emu, cl, s, rep
}

// startSyncer connects c's trust-anchor Syncer as cfg says and runs its
// first Sync (which creates the anchor and profile); it returns the SDK
// client it talks through, the syncer (the caller closes it) and the
// sync's report.
func startSyncer(t testing.TB, c *testca.CA, cfg anchors.Config) (*rolesanywhere.Client, *anchors.Syncer, *anchors.Report) {
	t.Helper()
	cl, err := anchors.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := anchors.New(cfg, cl, c.Authority, c.Store, c.Now, nil)
	rep, err := s.Sync(context.Background(), false)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	return cl, s, rep
}

// TestEndToEnd runs a real CA (testca), syncs it to the emulator with the
// real SDK client, and has the real aws_signing_helper get credentials
// with an enrolled certificate, be refused with a foreign one, and be
// refused once the certificate is revoked (the CRL pushed by PublishCRL).
func TestEndToEnd(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	emu, _, s, rep := syncedEmulator(t, c)
	ctx := context.Background()
	anchor, profile := rep.TrustAnchorARN, rep.ProfileARN
	c.Revocation.SetPublisher(s)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := s.WaitCRL(wctx, c.Revocation.Current().Number); err != nil {
		t.Fatalf("first CRL: %v", err)
	}

	const cn = "web-1.covalent.example.net"
	host, serial := enroll(t, c, cn)
	out, err := helper(t, host, emu.URL, anchor, profile)
	if err != nil {
		t.Fatalf("helper with an enrolled certificate: %v\n%s", err, out)
	}
	var creds struct {
		Version                                   int
		AccessKeyID                               string `json:"AccessKeyId"`
		SecretAccessKey, SessionToken, Expiration string
	}
	if err := json.Unmarshal([]byte(out), &creds); err != nil || creds.Version != 1 || creds.AccessKeyID == "" || creds.SessionToken == "" {
		t.Fatalf("helper output %q (%v)", out, err)
	}
	if sess := emu.Sessions(); len(sess) != 1 || sess[0].CommonName != cn || sess[0].Serial.Cmp(host.leaf.SerialNumber) != 0 {
		t.Fatalf("sessions %+v", sess)
	}

	out, err = helper(t, foreignHost(t, cn), emu.URL, anchor, profile)
	if err == nil || !strings.Contains(out, "Untrusted signing certificate") {
		t.Fatalf("helper with a foreign certificate: %v\n%s", err, out)
	}

	// Revoke, and time how long until the emulator refuses the certificate.
	start := time.Now()
	res, err := c.Revocation.Revoke(ctx, revocation.Request{Serial: serial, Reason: revocation.ReasonKeyCompromise, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	revoked := time.Since(start)
	for {
		if code := createSession(t, host, emu.URL, anchor, profile).StatusCode; code == http.StatusForbidden {
			break
		} else if code != http.StatusCreated {
			t.Fatalf("CreateSession answered %d", code)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("the emulator still accepts the certificate 15s after it was revoked; status %+v", s.Status())
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("revoke→refused took %d ms (Revoke returned after %d ms; CRL number %d)", took.Milliseconds(), revoked.Milliseconds(), res.CRLNumber)
	out, err = helper(t, host, emu.URL, anchor, profile)
	if err == nil || !strings.Contains(out, "Untrusted signing certificate") {
		t.Fatalf("helper with a revoked certificate: %v\n%s", err, out)
	}
	st := s.Status()
	if st.CRLNumber < res.CRLNumber || st.CRLPushedAt.IsZero() || st.CRLEntries != 1 {
		t.Fatalf("status %+v", st)
	}
	if persisted, err := anchors.LoadStatus(c.Store); err != nil || persisted.CRLNumber != st.CRLNumber {
		t.Fatalf("persisted %+v, %v", persisted, err)
	}
}
