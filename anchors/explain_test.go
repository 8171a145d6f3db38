package anchors_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/anchors/trust"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/revocation"
)

// sessionVerdict makes one signed CreateSession and returns whether it
// was granted and, if not, the emulator's reason.
func sessionVerdict(t *testing.T, h hostCreds, endpoint, anchor, profile string) (bool, string) {
	t.Helper()
	resp := createSession(t, h, endpoint, anchor, profile)
	if resp.StatusCode == http.StatusCreated {
		return true, ""
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Amzn-ErrorType") != emulator.ErrAccessDenied {
		t.Fatalf("CreateSession answered %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
	return false, resp.Header.Get(emulator.ReasonHeader)
}

// TestExplainAgreesWithCreateSession: for every case `anchors explain`
// and the emulator's CreateSession give the same verdict for the same
// reason, because both evaluate with package trust.
func TestExplainAgreesWithCreateSession(t *testing.T) {
	const cn = "web-1.covalent.example.net"
	ipPolicy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"rolesanywhere.amazonaws.com"},
"Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}`
	tests := []struct {
		name       string
		cn         string
		cnRules    []string // the lanyard profile's, for the generated policy
		policy     string   // a user's policy file instead
		foreign    bool
		setup      func(t *testing.T, c *testca.CA, api *ra.Client, s *anchors.Syncer, serial string)
		wantOK     bool
		wantReason string
	}{
		{name: "allowed CN", cn: cn, cnRules: []string{"*.covalent.example.net"}, wantOK: true},
		{name: "other CN", cn: "web-2.covalent.example.net", cnRules: []string{cn}, wantReason: "no statement allows sts:AssumeRole"},
		{name: "wrong source IP", cn: cn, policy: ipPolicy, wantReason: "IpAddress aws:SourceIp 10.0.0.0/8 does not hold (request has 127.0.0.1)"},
		{name: "disabled profile", cn: cn, cnRules: []string{"*.covalent.example.net"}, wantReason: trust.ReasonProfileDisabled,
			setup: func(t *testing.T, _ *testca.CA, api *ra.Client, s *anchors.Syncer, _ string) {
				_, err := api.DisableProfile(context.Background(), &ra.DisableProfileInput{ProfileId: aws.String(s.ProfileARN()[strings.LastIndex(s.ProfileARN(), "/")+1:])})
				if err != nil {
					t.Fatal(err)
				}
			}},
		{name: "revoked certificate", cn: cn, cnRules: []string{"*.covalent.example.net"}, wantReason: trust.ReasonRevoked,
			setup: func(t *testing.T, c *testca.CA, _ *ra.Client, s *anchors.Syncer, serial string) {
				res, err := c.Revocation.Revoke(context.Background(), revocation.Request{Serial: serial, Reason: revocation.ReasonKeyCompromise, By: "test"})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if _, err := s.WaitCRL(ctx, res.CRLNumber); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "foreign issuer", cn: cn, cnRules: []string{"*.covalent.example.net"}, foreign: true, wantReason: trust.ReasonNoPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testca.Start(t, testca.Options{})
			emu, cl, s, _ := syncedEmulator(t, c)
			ctx := context.Background()
			c.Revocation.SetPublisher(s)
			policy := []byte(tt.policy)
			if tt.policy == "" {
				var err error
				if policy, err = anchors.TrustPolicy(anchors.PolicyInput{CNRules: tt.cnRules, IssuerCN: c.Authority.Intermediate().Subject.CommonName,
					TrustAnchorARN: s.TrustAnchorARN()}); err != nil {
					t.Fatal(err)
				}
			}
			if err := emu.SetRoleTrustPolicy(role, policy); err != nil {
				t.Fatal(err)
			}
			host, serial := enroll(t, c, tt.cn)
			if tt.foreign {
				host = foreignHost(t, tt.cn)
			}
			if tt.setup != nil {
				tt.setup(t, c, cl, s, serial)
			}

			gotOK, emuReason := sessionVerdict(t, host, emu.URL, s.TrustAnchorARN(), s.ProfileARN())
			ex, err := s.Explain(ctx, anchors.ExplainInput{Leaf: host.leaf, Chain: host.chain, Policy: policy,
				SourceIP: netip.MustParseAddr("127.0.0.1")})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("explain:\n%s", ex)
			if gotOK != tt.wantOK || ex.Allowed != tt.wantOK {
				t.Fatalf("CreateSession granted %v (%s), explain allowed %v (%s), want %v", gotOK, emuReason, ex.Allowed, ex.Reason, tt.wantOK)
			}
			if !tt.wantOK && (ex.Reason != emuReason || !strings.Contains(ex.Reason, tt.wantReason)) {
				t.Fatalf("reasons differ or miss %q:\n  emulator: %s\n  explain:  %s", tt.wantReason, emuReason, ex.Reason)
			}
		})
	}
}

// TestCRLDistributionPointEndToEnd: with crl_dp_revocation (synced to
// the anchor's crlDpRevocationEnabled) and a distribution point in issued
// certificates, a revoked certificate is refused by the emulator from the
// CRL it fetches at that point, with no CRL imported into the anchor.
func TestCRLDistributionPointEndToEnd(t *testing.T) {
	c := testca.Start(t, testca.Options{CRLDistributionPoint: true})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Authority.RootsPEM())
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	emu := emulator.NewServer(emulator.Options{FetchCRL: func(ctx context.Context, u string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}})
	defer emu.Close()
	ctx := context.Background()
	cfg := emuConfig(emu)
	cfg.CRLDPRevocation = aws.Bool(true)
	cl, s, _ := startSyncer(t, c, cfg)
	defer s.Close()
	a, err := cl.GetTrustAnchor(ctx, &ra.GetTrustAnchorInput{TrustAnchorId: aws.String(idOfARN(s.TrustAnchorARN()))})
	if err != nil || !aws.ToBool(a.TrustAnchor.CrlDpRevocationEnabled) {
		t.Fatalf("anchor crlDpRevocationEnabled %v (%v)", a.TrustAnchor.CrlDpRevocationEnabled, err)
	}
	host, serial := enroll(t, c, "web-1.covalent.example.net")
	if len(host.leaf.CRLDistributionPoints) != 1 || host.leaf.CRLDistributionPoints[0] != c.URL+"/crl" {
		t.Fatalf("issued certificate's distribution points %v", host.leaf.CRLDistributionPoints)
	}
	if ok, why := sessionVerdict(t, host, emu.URL, s.TrustAnchorARN(), s.ProfileARN()); !ok {
		t.Fatalf("refused before revocation: %s", why)
	}
	if _, err := c.Revocation.Revoke(ctx, revocation.Request{Serial: serial, Reason: revocation.ReasonKeyCompromise, By: "test"}); err != nil {
		t.Fatal(err)
	}
	if len(emu.CRLs()) != 0 {
		t.Fatal("a CRL was imported; this test is about the distribution point alone")
	}
	ok, why := sessionVerdict(t, host, emu.URL, s.TrustAnchorARN(), s.ProfileARN())
	if ok || !strings.Contains(why, trust.ReasonRevoked) || !strings.Contains(why, "distribution point "+c.URL+"/crl") {
		t.Fatalf("after revocation: granted %v, reason %q", ok, why)
	}
}
