package emulator

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	"github.com/lanyard/lanyard/anchors/trust"
)

// TestCRLDistributionPoints models crlDpRevocationEnabled as far as AWS
// documents it (crldp.go): off, distribution points are ignored; on, a CRL
// fetched from the certificate's point that lists it refuses, and a point
// that gives no usable CRL refuses too (the emulator's documented choice).
func TestCRLDistributionPoints(t *testing.T) {
	tests := []struct {
		name       string
		flag       bool
		cdp        bool // the leaf names the distribution point
		serve      string
		wantStatus int
		wantReason string
	}{
		{name: "flag off: listed but not checked", flag: false, cdp: true, serve: "lists", wantStatus: 201},
		{name: "listed", flag: true, cdp: true, serve: "lists", wantStatus: 403, wantReason: trust.ReasonRevoked},
		{name: "not listed", flag: true, cdp: true, serve: "empty", wantStatus: 201},
		{name: "DER CRL", flag: true, cdp: true, serve: "der", wantStatus: 403, wantReason: trust.ReasonRevoked},
		{name: "point unreachable", flag: true, cdp: true, serve: "404", wantStatus: 403, wantReason: ReasonCRLDPUnavailable},
		{name: "CRL of another CA", flag: true, cdp: true, serve: "foreign", wantStatus: 403, wantReason: ReasonCRLDPUnavailable},
		{name: "no distribution point", flag: true, cdp: false, serve: "lists", wantStatus: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			var mu sync.Mutex
			var body []byte
			url := newHTTPTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				if body == nil {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write(body)
			})) + "/crl"
			c := f.defaultCall(t, "ec")
			c.leaf, c.key = f.inter.leaf(t, "ec", "web-1.covalent.example.net", func(tmpl *x509.Certificate) {
				if tt.cdp {
					tmpl.CRLDistributionPoints = []string{url}
				}
			})
			mu.Lock()
			switch tt.serve {
			case "lists":
				body = f.inter.crl(t, c.leaf.SerialNumber)
			case "der":
				body, _ = pemDecode(f.inter.crl(t, c.leaf.SerialNumber))
			case "empty":
				body = f.inter.crl(t)
			case "foreign":
				body = newRootCA(t, "Other Root").crl(t, c.leaf.SerialNumber)
			}
			mu.Unlock()
			if tt.flag {
				_, err := client(f.s, 1).UpdateTrustAnchor(context.Background(), &ra.UpdateTrustAnchorInput{
					TrustAnchorId: aws.String(idOfArn(f.anchorArn)), CrlDpRevocationEnabled: aws.Bool(true)})
				must(t, err)
			}
			resp, _ := f.do(t, c)
			reason := resp.Header.Get(ReasonHeader)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(reason, tt.wantReason) {
				t.Fatalf("status %d (%s), want %d %q", resp.StatusCode, reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}
