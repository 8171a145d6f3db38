package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// cond builds a one-condition policy allowing every action for Roles
// Anywhere.
func cond(op, key, values string) []byte {
	return []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"rolesanywhere.amazonaws.com"},
"Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Condition":{"` + op + `":{"` + key + `":` + values + `}}}]}`)
}

func TestOperators(t *testing.T) {
	base := Request{
		Tags:      map[string]string{"x509Subject/CN": "web-1.covalent.example.net", "x509Subject/OU": "Security/Engineering"},
		SourceArn: "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/abc", SourceAccount: "123456789012",
		SourceIdentity: "CN=web-1.covalent.example.net", SourceIP: netip.MustParseAddr("10.1.2.3"),
	}
	cn := "aws:PrincipalTag/x509Subject/CN"
	tests := []struct {
		op, key, values string
		want            bool
	}{
		{"StringEquals", cn, `"web-1.covalent.example.net"`, true},
		{"StringEquals", cn, `"WEB-1.covalent.example.net"`, false},
		{"StringEquals", cn, `["a","web-1.covalent.example.net"]`, true},                          // values OR
		{"StringEquals", "AWS:principaltag/X509SUBJECT/cn", `"web-1.covalent.example.net"`, true}, // keys ignore case
		{"StringNotEquals", cn, `["a","b"]`, true},
		{"StringNotEquals", cn, `["a","web-1.covalent.example.net"]`, false}, // NOR
		{"StringEqualsIgnoreCase", cn, `"WEB-1.Covalent.example.net"`, true},
		{"StringLike", cn, `"*.covalent.example.net"`, true},
		{"StringLike", cn, `"web-?.covalent.example.net"`, true},
		{"StringLike", cn, `"*.other.example.net"`, false},
		{"StringNotLike", cn, `"*.*.covalent.example.net"`, true},
		{"StringEquals", "aws:PrincipalTag/x509Issuer/CN", `"x"`, false},   // absent: positive false
		{"StringNotEquals", "aws:PrincipalTag/x509Issuer/CN", `"x"`, true}, // absent: negated true
		{"StringEqualsIfExists", "aws:PrincipalTag/x509Issuer/CN", `"x"`, true},
		{"StringEqualsIfExists", cn, `"x"`, false},
		{"ForAnyValue:StringEquals", cn, `["x","web-1.covalent.example.net"]`, true},
		{"ForAnyValue:StringEquals", "aws:PrincipalTag/none", `["x"]`, false},
		{"ForAllValues:StringEquals", "aws:PrincipalTag/none", `["x"]`, true},
		{"ForAllValues:StringLike", cn, `["*.example.net"]`, true},
		{"ForAllValues:StringLike", cn, `["*.org"]`, false},
		{"ArnEquals", "aws:SourceArn", `"arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/abc"`, true},
		{"ArnLike", "aws:SourceArn", `"arn:aws:rolesanywhere:*:123456789012:trust-anchor/*"`, true},
		{"ArnLike", "aws:SourceArn", `"arn:aws:rolesanywhere:*:999999999999:*"`, false},
		{"ArnNotLike", "aws:SourceArn", `"arn:aws:rolesanywhere:*:999999999999:*"`, true},
		{"IpAddress", "aws:SourceIp", `"10.0.0.0/8"`, true},
		{"IpAddress", "aws:SourceIp", `["192.0.2.0/24","10.1.2.3"]`, true},
		{"IpAddress", "aws:SourceIp", `"192.0.2.0/24"`, false},
		{"NotIpAddress", "aws:SourceIp", `"192.0.2.0/24"`, true},
		{"Bool", "aws:ViaAWSService", `"false"`, false}, // absent
		{"BoolIfExists", "aws:ViaAWSService", `false`, true},
		{"Null", "aws:PrincipalTag/x509Issuer/CN", `"true"`, true},
		{"Null", cn, `"true"`, false},
		{"Null", cn, `"false"`, true},
		{"StringEquals", "sts:SourceIdentity", `"CN=web-1.covalent.example.net"`, true},
		{"StringEquals", "aws:SourceAccount", `"123456789012"`, true},
		{"StringEquals", "aws:PrincipalTag/x509Subject/OU", `"Security/Engineering"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.op+" "+tt.key+" "+tt.values, func(t *testing.T) {
			p, err := Parse(cond(tt.op, tt.key, tt.values))
			if err != nil {
				t.Fatal(err)
			}
			d := Evaluate(p, base)
			if d.Allowed != tt.want {
				t.Fatalf("allowed = %v, want %v: %s", d.Allowed, tt.want, d.Reason)
			}
		})
	}
}

func TestDecision(t *testing.T) {
	req := Request{Tags: map[string]string{"x509Subject/CN": "a"}, SourceIdentity: "CN=a"}
	tests := []struct {
		name, doc  string
		want       bool
		wantReason string
	}{
		{name: "explicit deny wins", want: false, wantReason: "statement D explicitly denies sts:AssumeRole",
			doc: `{"Statement":[{"Effect":"Allow","Principal":{"Service":"rolesanywhere.amazonaws.com"},"Action":"sts:*"},
{"Sid":"D","Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}]}`},
		{name: "every action needed", want: false, wantReason: "no statement allows sts:TagSession",
			doc: `{"Statement":{"Effect":"Allow","Principal":{"Service":"rolesanywhere.amazonaws.com"},"Action":["sts:AssumeRole","sts:SetSourceIdentity"]}}`},
		{name: "other principal", want: false, wantReason: "no statement allows sts:AssumeRole",
			doc: `{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:*"}]}`},
		{name: "NotAction", want: true,
			doc: `{"Statement":[{"Effect":"Allow","Principal":{"Service":["ec2.amazonaws.com","rolesanywhere.amazonaws.com"]},"NotAction":"iam:*"}]}`},
		{name: "closest statement named", want: false, wantReason: "statement Hosts: StringEquals aws:PrincipalTag/x509Subject/CN b does not hold (request has a)",
			doc: `{"Statement":[{"Sid":"Hosts","Effect":"Allow","Principal":{"Service":"rolesanywhere.amazonaws.com"},"Action":"sts:*","Condition":{"StringEquals":{"aws:PrincipalTag/x509Subject/CN":"b"}}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			d := Evaluate(p, req)
			if d.Allowed != tt.want || !strings.Contains(d.Reason, tt.wantReason) {
				t.Fatalf("got %v %q, want %v containing %q", d.Allowed, d.Reason, tt.want, tt.wantReason)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, doc := range []string{
		`not json`,
		`{"Statement":[]}`,
		`{"Statement":[{"Effect":"Maybe","Action":"sts:*"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*"}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:*","Condition":{"NumericEquals":{"k":"1"}}}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:*","Condition":{"ForSome:StringEquals":{"k":"1"}}}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:*","Condition":{"IpAddress":{"aws:SourceIp":"nope"}}}]}`,
		`{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:*","Condition":{"NullIfExists":{"k":"true"}}}]}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("Parse(%s) succeeded", doc)
		}
	}
}

func TestSessionTags(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dn, _ := asn1.Marshal(pkix.Name{CommonName: "dir-name", Organization: []string{"Dir Org"}}.ToRDNSequence())
	gns, _ := asn1.Marshal([]asn1.RawValue{
		{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("first.example.net")},
		{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("second.example.net")},
		{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dn},
		{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("spiffe://covalent/web")},
	})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		Subject:         pkix.Name{CommonName: "web-1", OrganizationalUnit: []string{"Security", "Engineering"}, Country: []string{"DE"}},
		Issuer:          pkix.Name{CommonName: "Lanyard Intermediate"},
		ExtraExtensions: []pkix.Extension{{Id: oidSAN, Value: gns}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)

	got := SessionTags(leaf, nil)
	want := map[string]string{
		"x509Subject/CN": "web-1", "x509Subject/OU": "Security/Engineering", "x509Subject/C": "DE",
		"x509Issuer/CN": "web-1", "x509Issuer/OU": "Security/Engineering", "x509Issuer/C": "DE", // self-signed
		"x509SAN/DNS": "first.example.net", "x509SAN/URI": "spiffe://covalent/web",
		"x509SAN/Name/CN": "dir-name", "x509SAN/Name/O": "Dir Org",
	}
	if len(got) != len(want) {
		t.Errorf("tags %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("tag %s = %q, want %q", k, got[k], v)
		}
	}
	got = SessionTags(leaf, LanyardMappings)
	if len(got) != 2 || got["x509Subject/CN"] != "web-1" || got["x509Issuer/CN"] != "web-1" {
		t.Errorf("lanyard mappings give %v", got)
	}
	if got := SessionTags(leaf, []Mapping{{Field: FieldSAN, Specifiers: []string{"Name/O"}}}); len(got) != 1 || got["x509SAN/Name/O"] != "Dir Org" {
		t.Errorf("Name/O gives %v", got)
	}
	if err := ValidateMappings([]Mapping{{Field: FieldSAN, Specifiers: []string{"IP"}}}); err == nil {
		t.Error("SAN specifier IP accepted")
	}
}
