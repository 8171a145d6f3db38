package anchors_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/internal/testca"
)

// explainOperators and explainKeys are what a random trust-policy
// condition is made of: IAM's operators and the keys a Roles Anywhere
// CreateSession sets (or not).
var (
	explainOperators = []string{"StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "StringEqualsIgnoreCase",
		"StringNotEqualsIgnoreCase", "ForAnyValue:StringLike", "ForAllValues:StringEquals", "StringEqualsIfExists", "Null",
		"ArnEquals", "ArnLike", "ArnNotLike", "IpAddress", "NotIpAddress", "Bool", "StringLikeIfExists"}
	explainKeys = []string{"aws:PrincipalTag/x509Subject/CN", "aws:PrincipalTag/x509Issuer/CN", "aws:PrincipalTag/x509Subject/O",
		"aws:PrincipalTag/x509SAN/DNS", "aws:SourceArn", "aws:SourceAccount", "sts:SourceIdentity", "aws:SourceIp",
		"aws:PrincipalTag/x509Issuer/O", "aws:principaltag/x509subject/cn"}
)

// FuzzExplainAgreesWithCreateSession is the differential test of `lanyard
// anchors explain`: a certificate from the CA's own intermediate with a
// random CN, and a random trust policy (a statement of the fuzzer's
// effect, actions and one condition of its operator, key and values; or
// the fuzzer's raw bytes), set on the emulator's role; the emulator's
// CreateSession and Explain on the same certificate and policy must give
// the same verdict, and the same reason when they refuse.
func FuzzExplainAgreesWithCreateSession(f *testing.F) {
	c := testca.Start(f, testca.Options{})
	emu := emulator.NewServer(emulator.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Cleanup(emu.Close)
	ctx := context.Background()
	_, s, _ := startSyncer(f, c, emuConfig(emu))
	f.Cleanup(func() { _ = s.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain := []*x509.Certificate{c.Authority.Intermediate()}

	const cn = "web-1.covalent.example.net"
	f.Add(cn, false, uint8(0), uint8(0), "web-1.covalent.example.net", []byte(nil))
	f.Add(cn, true, uint8(2), uint8(0), "*.covalent.example.net", []byte(nil))
	f.Add("x", false, uint8(13), uint8(7), "10.0.0.0/8", []byte(nil))
	f.Add(strings.Repeat("a", 61), false, uint8(0), uint8(6), "CN="+strings.Repeat("a", 61), []byte(nil))
	f.Add(strings.Repeat("b", 62), false, uint8(9), uint8(6), "", []byte(nil))
	f.Add(strings.Repeat("c", 64), false, uint8(2), uint8(0), "c*", []byte(nil))
	f.Add("Web-1.Covalent", false, uint8(4), uint8(0), "web-1.covalent", []byte(nil))
	f.Add("", false, uint8(9), uint8(0), "true", []byte(nil))
	f.Add("tag=value,with/odd:chars@x+y", false, uint8(2), uint8(0), "tag=*", []byte(nil))
	f.Add(cn, false, uint8(0), uint8(0), "", []byte(`{"Version":"2012-10-17","Statement":[]}`))
	f.Add(cn, false, uint8(0), uint8(0), "", []byte(`{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:*"}}`))
	f.Fuzz(func(t *testing.T, cn string, deny bool, op, key8 uint8, value string, raw []byte) {
		if !utf8.ValidString(cn) || strings.ContainsRune(cn, 0) || len(cn) > 128 {
			return // not a name a certificate can carry
		}
		policy := raw
		if len(raw) == 0 {
			effect := "Allow"
			if deny {
				effect = "Deny"
			}
			values := []string{value}
			if i := strings.IndexByte(value, '|'); i >= 0 {
				values = strings.Split(value, "|")
			}
			doc := map[string]any{"Version": "2012-10-17", "Statement": []any{
				map[string]any{"Effect": "Allow", "Principal": map[string]any{"Service": "rolesanywhere.amazonaws.com"},
					"Action": []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"}},
				map[string]any{"Effect": effect, "Principal": map[string]any{"Service": "rolesanywhere.amazonaws.com"},
					"Action": []string{"sts:AssumeRole"}, "Condition": map[string]any{
						explainOperators[int(op)%len(explainOperators)]: map[string]any{explainKeys[int(key8)%len(explainKeys)]: values}}},
			}}
			if !deny {
				doc["Statement"] = doc["Statement"].([]any)[1:]
				doc["Statement"].([]any)[0].(map[string]any)["Action"] = []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"}
			}
			policy, _ = json.Marshal(doc)
		}
		setErr := emu.SetRoleTrustPolicy(role, policy)
		certPEM, _ := c.SignAs(t, key.Public(), cn)
		b, _ := pem.Decode([]byte(certPEM))
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		ex, exErr := s.Explain(ctx, anchors.ExplainInput{Leaf: leaf, Chain: chain, Policy: policy, SourceIP: netip.MustParseAddr("127.0.0.1")})
		if setErr != nil {
			// The emulator refuses the document as IAM would; explain must
			// not evaluate it either.
			if exErr == nil && ex.Decision != nil {
				t.Fatalf("the emulator refused the policy (%v) but explain evaluated it: %s", setErr, ex)
			}
			return
		}
		if exErr != nil {
			t.Fatalf("explain failed on a policy the emulator took: %v\n%s", exErr, policy)
		}
		ok, why := sessionVerdict(t, hostCreds{key: key, leaf: leaf, chain: chain}, emu.URL, s.TrustAnchorARN(), s.ProfileARN())
		if ok != ex.Allowed {
			t.Fatalf("CN %q, policy %s:\nCreateSession granted %v (%s), explain allowed %v:\n%s", cn, policy, ok, why, ex.Allowed, ex)
		}
		// The emulator's reason travels in a header (bytes outside
		// printable ASCII become spaces).
		if !ok && why != asHeader(ex.Reason) {
			t.Fatalf("CN %q, policy %s: reasons differ:\n  emulator: %s\n  explain:  %s", cn, policy, why, ex.Reason)
		}
	})
}

func asHeader(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s))
}
