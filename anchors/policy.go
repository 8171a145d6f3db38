package anchors

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// IAM names used in the policy documents.
const (
	// RolesAnywherePrincipal is the service principal of Roles Anywhere.
	RolesAnywherePrincipal = "rolesanywhere.amazonaws.com"
	// SubjectCNKey is the session tag of the certificate's subject CN.
	SubjectCNKey = "aws:PrincipalTag/x509Subject/CN"
	// SubjectOUKey is the session tag of the certificate's subject OU.
	SubjectOUKey = "aws:PrincipalTag/x509Subject/OU"
	// SANDNSKey is the session tag of the certificate's first DNS SAN.
	SANDNSKey = "aws:PrincipalTag/x509SAN/DNS"
	// IssuerCNKey is the session tag of the certificate's issuer CN.
	IssuerCNKey = "aws:PrincipalTag/x509Issuer/CN"
	// SourceArnKey is set to the trust anchor's ARN by Roles Anywhere.
	SourceArnKey  = "aws:SourceArn"
	policyVersion = "2012-10-17"
)

// TrustActions are the actions the role trust policy allows Roles
// Anywhere.
var TrustActions = []string{"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}

// PolicyInput describes the profile a role trust policy is for.
type PolicyInput struct {
	// CNRules are the profile's allowed common names
	// (issuance.ProfileConfig.CN): exact names, "*.domain" globs whose "*"
	// is one DNS label, or "re:" regular expressions (which IAM cannot
	// express: TrustPolicy refuses them with ErrUnsupportedCNRule).
	CNRules []string
	// DNSRules are the profile's allowed DNS SANs
	// (issuance.ProfileConfig.DNS; "*.domain" globs or exact names). None
	// means the profile's certificates carry no DNS SAN.
	DNSRules []string
	// IssuerCN is the CN of the CA's issuing intermediate.
	IssuerCN string
	// TrustAnchorARN is the trust anchor the certificates come through.
	TrustAnchorARN string
}

// Policy is an IAM policy document.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a Policy.
type Statement struct {
	Sid       string                    `json:"Sid,omitempty"`
	Effect    string                    `json:"Effect"`
	Principal map[string]string         `json:"Principal,omitempty"`
	Action    any                       `json:"Action"`
	Resource  any                       `json:"Resource,omitempty"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// TrustPolicy returns the trust policy (JSON) of the IAM role a profile's
// hosts assume: Roles Anywhere may assume it, set the source identity and
// tag the session, only for a certificate issued by the CA's intermediate
// (x509Issuer/CN), presented through the trust anchor (aws:SourceArn), with
// a subject CN the profile allows. Exact names share one statement
// (StringEquals); each "*.domain" glob gets its own statement, StringLike
// "*.domain" with StringNotLike "*.*.domain", because IAM's "*" also
// matches dots while the profile's matches one label. IAM has no regular
// expressions, so a "re:" rule is an error wrapping ErrUnsupportedCNRule.
//
// Every statement also requires what a profile's (clientAuth-only) leaf
// looks like as far as Roles Anywhere maps it into session tags, so that
// the CA's other certificates under the same issuer cannot assume the
// role: no subject OU (Null x509Subject/OU; the admin credential carries
// OU "lanyard admin"), and no DNS SAN when the profile grants none (Null
// x509SAN/DNS; the server's TLS certificate carries its DNS names), else a
// first DNS SAN matching the profile's DNS rules (StringLikeIfExists; IAM's
// "*" also matches dots, so this is a superset of a one-label glob). What
// Roles Anywhere cannot express: the extended key usage (clientAuth vs
// serverAuth) and key usage are not mapped attributes, and only the first
// DNS SAN is mapped; the server therefore refuses server names a profile's
// CN rules allow (see internal/app).
func TrustPolicy(p PolicyInput) ([]byte, error) {
	if len(p.CNRules) == 0 {
		return nil, fmt.Errorf("anchors: %w: no CN rules", ErrInvalidPolicyInput)
	}
	if strings.TrimSpace(p.IssuerCN) == "" {
		return nil, fmt.Errorf("anchors: %w: the intermediate's CN is empty", ErrInvalidPolicyInput)
	}
	if RegionOf(p.TrustAnchorARN) == "" || !strings.Contains(p.TrustAnchorARN, ":trust-anchor/") {
		return nil, fmt.Errorf("anchors: %w: %q is not a trust anchor ARN (run `lanyard anchors sync` first, or set anchors.trust_anchor_arn)",
			ErrInvalidPolicyInput, p.TrustAnchorARN)
	}
	var exact, globs []string
	for _, r := range p.CNRules {
		switch {
		case strings.HasPrefix(r, "re:"):
			return nil, fmt.Errorf("anchors: %w: CN rule %q is a regular expression; IAM conditions only have exact (StringEquals) and wildcard (StringLike) matches. List the names, or use \"*.domain\" globs, in the profile, or write this condition by hand",
				ErrUnsupportedCNRule, r)
		case strings.HasPrefix(r, "*.") && !strings.Contains(r[1:], "*") && len(r) > 2:
			globs = append(globs, r)
		case r == "" || strings.ContainsAny(r, "*?"):
			return nil, fmt.Errorf("anchors: %w: CN rule %q: \"*\" may only be the whole first label", ErrUnsupportedCNRule, r)
		default:
			exact = append(exact, r)
		}
	}
	leafShape := func(c map[string]map[string]any) {
		null := map[string]any{SubjectOUKey: "true"}
		if len(p.DNSRules) == 0 {
			null[SANDNSKey] = "true"
		} else {
			c["StringLikeIfExists"] = map[string]any{SANDNSKey: oneOrMany(p.DNSRules)}
		}
		c["Null"] = null
	}
	base := func(sid string) Statement {
		st := Statement{
			Sid: sid, Effect: "Allow", Principal: map[string]string{"Service": RolesAnywherePrincipal},
			Action: TrustActions,
			Condition: map[string]map[string]any{
				"StringEquals": {IssuerCNKey: p.IssuerCN},
				"ArnEquals":    {SourceArnKey: p.TrustAnchorARN},
			},
		}
		leafShape(st.Condition)
		return st
	}
	pol := Policy{Version: policyVersion}
	if len(exact) > 0 {
		st := base("LanyardExactCN")
		st.Condition["StringEquals"][SubjectCNKey] = oneOrMany(exact)
		pol.Statement = append(pol.Statement, st)
	}
	for i, g := range globs {
		st := base(fmt.Sprintf("LanyardWildcardCN%d", i+1))
		st.Condition["StringLike"] = map[string]any{SubjectCNKey: g}
		st.Condition["StringNotLike"] = map[string]any{SubjectCNKey: "*." + g}
		pol.Statement = append(pol.Statement, st)
	}
	return marshalPolicy(pol)
}

// SessionPolicy returns the profile session policy (JSON) that denies
// every action unless the call comes from one of sourceIPs (CIDRs, or
// plain addresses taken as /32 or /128), except calls AWS services make
// on the session's behalf (aws:ViaAWSService false), as in the Covalent
// setup.
func SessionPolicy(sourceIPs []string) ([]byte, error) {
	if len(sourceIPs) == 0 {
		return nil, fmt.Errorf("anchors: %w: at least one source address or CIDR is required", ErrInvalidPolicyInput)
	}
	cidrs := make([]string, 0, len(sourceIPs))
	for _, s := range sourceIPs {
		s = strings.TrimSpace(s)
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("anchors: %w: %q is neither an IP address nor a CIDR", ErrInvalidPolicyInput, s)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		if pfx.Masked() != pfx {
			return nil, fmt.Errorf("anchors: %w: %q has host bits set (did you mean %s?)", ErrInvalidPolicyInput, s, pfx.Masked())
		}
		cidrs = append(cidrs, pfx.String())
	}
	pol := Policy{Version: policyVersion, Statement: []Statement{{
		Sid: "LanyardSourceIP", Effect: "Deny", Action: "*", Resource: "*",
		Condition: map[string]map[string]any{
			"NotIpAddress": {"aws:SourceIp": oneOrMany(cidrs)},
			"Bool":         {"aws:ViaAWSService": "false"},
		},
	}}}
	return marshalPolicy(pol)
}

func oneOrMany(v []string) any {
	if len(v) == 1 {
		return v[0]
	}
	return v
}

func marshalPolicy(p Policy) ([]byte, error) {
	out, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("anchors: encode policy: %w", err)
	}
	return append(out, '\n'), nil
}
