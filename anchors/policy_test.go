package anchors

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

type policyDoc struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Principal map[string]string
		Action    any
		Resource  any
		Condition map[string]map[string]any
	}
}

const anchorARN = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/0f6a2c3e-1111-4222-8333-444455556666"

func TestTrustPolicy(t *testing.T) {
	type cond = map[string]map[string]any
	base := func(extra cond) cond {
		c := cond{"StringEquals": {IssuerCNKey: "lanyard Intermediate CA"}, "ArnEquals": {SourceArnKey: anchorARN},
			"Null": {SubjectOUKey: "true", SANDNSKey: "true"}}
		for k, v := range extra {
			if k == "StringEquals" {
				for kk, vv := range v {
					c[k][kk] = vv
				}
				continue
			}
			c[k] = v
		}
		return c
	}
	tests := []struct {
		name    string
		rules   []string
		want    []cond
		wantErr error
	}{
		{name: "exact", rules: []string{"web-1.covalent.example.net"},
			want: []cond{base(cond{"StringEquals": {SubjectCNKey: "web-1.covalent.example.net"}})}},
		{name: "several exact", rules: []string{"a.example.net", "b.example.net"},
			want: []cond{base(cond{"StringEquals": {SubjectCNKey: []any{"a.example.net", "b.example.net"}}})}},
		{name: "glob", rules: []string{"*.covalent.example.net"},
			want: []cond{base(cond{"StringLike": {SubjectCNKey: "*.covalent.example.net"}, "StringNotLike": {SubjectCNKey: "*.*.covalent.example.net"}})}},
		{name: "exact and globs", rules: []string{"*.a.example", "host.b.example", "*.c.example"},
			want: []cond{
				base(cond{"StringEquals": {SubjectCNKey: "host.b.example"}}),
				base(cond{"StringLike": {SubjectCNKey: "*.a.example"}, "StringNotLike": {SubjectCNKey: "*.*.a.example"}}),
				base(cond{"StringLike": {SubjectCNKey: "*.c.example"}, "StringNotLike": {SubjectCNKey: "*.*.c.example"}}),
			}},
		{name: "regex", rules: []string{"*.a.example", "re:web-[0-9]+\\.example"}, wantErr: ErrUnsupportedCNRule},
		{name: "inner wildcard", rules: []string{"web*.example"}, wantErr: ErrUnsupportedCNRule},
		{name: "no rules", wantErr: ErrInvalidPolicyInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := TrustPolicy(PolicyInput{CNRules: tt.rules, IssuerCN: "lanyard Intermediate CA", TrustAnchorARN: anchorARN})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			must(t, err)
			var doc policyDoc
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if doc.Version != "2012-10-17" || len(doc.Statement) != len(tt.want) {
				t.Fatalf("policy:\n%s", out)
			}
			for i, st := range doc.Statement {
				if st.Effect != "Allow" || st.Principal["Service"] != "rolesanywhere.amazonaws.com" ||
					!reflect.DeepEqual(st.Action, []any{"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}) {
					t.Fatalf("statement %d: %+v", i, st)
				}
				if !reflect.DeepEqual(st.Condition, tt.want[i]) {
					t.Fatalf("statement %d condition\n got %#v\nwant %#v", i, st.Condition, tt.want[i])
				}
			}
		})
	}
	for _, in := range []PolicyInput{
		{CNRules: []string{"a.example"}, TrustAnchorARN: anchorARN},
		{CNRules: []string{"a.example"}, IssuerCN: "x", TrustAnchorARN: "not-an-arn"},
	} {
		if _, err := TrustPolicy(in); !errors.Is(err, ErrInvalidPolicyInput) {
			t.Errorf("TrustPolicy(%+v): %v", in, err)
		}
	}
}

func TestSessionPolicy(t *testing.T) {
	tests := []struct {
		name    string
		ips     []string
		want    any
		wantErr bool
	}{
		{name: "one CIDR", ips: []string{"203.0.113.7/32"}, want: "203.0.113.7/32"},
		{name: "bare address", ips: []string{"203.0.113.7"}, want: "203.0.113.7/32"},
		{name: "IPv6 and a network", ips: []string{"2001:db8::/32", "198.51.100.0/24"}, want: []any{"2001:db8::/32", "198.51.100.0/24"}},
		{name: "none", wantErr: true},
		{name: "garbage", ips: []string{"example.net"}, wantErr: true},
		{name: "host bits", ips: []string{"198.51.100.7/24"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := SessionPolicy(tt.ips)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidPolicyInput) {
					t.Fatalf("err %v", err)
				}
				return
			}
			must(t, err)
			var doc policyDoc
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			st := doc.Statement[0]
			if len(doc.Statement) != 1 || st.Effect != "Deny" || st.Action != "*" || st.Resource != "*" {
				t.Fatalf("policy:\n%s", out)
			}
			want := map[string]map[string]any{"NotIpAddress": {"aws:SourceIp": tt.want}, "Bool": {"aws:ViaAWSService": "false"}}
			if !reflect.DeepEqual(st.Condition, want) {
				t.Fatalf("condition %#v", st.Condition)
			}
		})
	}
}
