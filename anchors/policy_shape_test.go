package anchors_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/trust"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/testca"
)

// TestTrustPolicyRefusesTheCAsOtherCertificates (issue 9 item 12): the
// printed trust policy lets a profile's leaf assume the role and refuses
// the admin credential and the server's TLS certificate even when their
// CN would match the profile's CN rule.
func TestTrustPolicyRefusesTheCAsOtherCertificates(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	const arn = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/0f6a2c3e-1111-4222-8333-444455556666"
	host, err := c.Authority.ClientTLSCertificate("web-1.covalent.example.net", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	server, err := c.Authority.ServerTLSCertificate([]string{"web-2.covalent.example.net"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := c.Authority.ClientTLSCertificate(ca.AdminCommonName, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cnRules  []string
		dnsRules []string
		leaf     *x509.Certificate
		want     bool
	}{
		{"host leaf", []string{"*.covalent.example.net"}, nil, host.Leaf, true},
		{"server TLS certificate with a matching CN", []string{"*.covalent.example.net"}, nil, server.Leaf, false},
		{"admin credential", []string{"*.covalent.example.net", ca.AdminCommonName}, nil, admin.Leaf, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := anchors.TrustPolicy(anchors.PolicyInput{CNRules: tt.cnRules, DNSRules: tt.dnsRules,
				IssuerCN: c.Authority.Intermediate().Subject.CommonName, TrustAnchorARN: arn})
			if err != nil {
				t.Fatal(err)
			}
			p, err := trust.Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			d := trust.Evaluate(p, trust.Request{Tags: trust.SessionTags(tt.leaf, nil), SourceArn: arn, SourceAccount: "123456789012"})
			if d.Allowed != tt.want {
				t.Fatalf("allowed %v, want %v: %s\n%s", d.Allowed, tt.want, d.Reason, doc)
			}
		})
	}
}
