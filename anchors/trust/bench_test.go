package trust

import (
	"net/netip"
	"testing"
)

// BenchmarkEvaluate is one CreateSession's trust-policy evaluation: a
// lanyard-style policy (issuer CN, anchor ARN, subject CN; three actions).
func BenchmarkEvaluate(b *testing.B) {
	p, err := Parse([]byte(`{"Version":"2012-10-17","Statement":[{"Sid":"LanyardExactCN","Effect":"Allow",
"Principal":{"Service":"rolesanywhere.amazonaws.com"},"Action":["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"],
"Condition":{"StringEquals":{"aws:PrincipalTag/x509Issuer/CN":"lanyard Intermediate CA","aws:PrincipalTag/x509Subject/CN":["a","b","web-1.covalent.example.net"]},
"ArnEquals":{"aws:SourceArn":"arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/abc"}}},
{"Sid":"LanyardWildcardCN1","Effect":"Allow","Principal":{"Service":"rolesanywhere.amazonaws.com"},"Action":["sts:AssumeRole","sts:SetSourceIdentity","sts:TagSession"],
"Condition":{"StringLike":{"aws:PrincipalTag/x509Subject/CN":"*.covalent.example.net"},"StringNotLike":{"aws:PrincipalTag/x509Subject/CN":"*.*.covalent.example.net"}}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	r := Request{Tags: map[string]string{"x509Subject/CN": "web-1.covalent.example.net", "x509Issuer/CN": "lanyard Intermediate CA"},
		SourceArn: "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/abc", SourceAccount: "123456789012",
		SourceIdentity: "CN=web-1.covalent.example.net", SourceIP: netip.MustParseAddr("127.0.0.1")}
	b.ReportAllocs()
	for b.Loop() {
		if d := Evaluate(p, r); !d.Allowed {
			b.Fatal(d.Reason)
		}
	}
}
