package anchors

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"

	"github.com/lanyard/lanyard/anchors/trust"
)

// ExplainInput is what `lanyard anchors explain` is asked about.
type ExplainInput struct {
	// Leaf is the certificate (nil: a CN alone, see CN), Chain the
	// intermediates it would be sent with.
	Leaf  *x509.Certificate
	Chain []*x509.Certificate
	// CN stands for a certificate this CA would issue (subject CN, issuer
	// the CA's intermediate) when Leaf is nil; chain and revocation are
	// then not checked.
	CN string
	// RoleARN is the role asked for (default Config.RoleARN).
	RoleARN string
	// Policy is the role's trust policy (JSON; nil: the one lanyard
	// generates, from PolicyCNRules).
	Policy []byte
	// PolicyCNRules are the lanyard profile's CN rules, for the generated
	// policy.
	PolicyCNRules []string
	// SourceIP is the address CreateSession would come from (invalid:
	// unknown, aws:SourceIp absent).
	SourceIP netip.Addr
}

// Check is one step of the explanation.
type Check struct {
	Name string
	OK   bool
	// Detail says what was seen.
	Detail string
}

// Explanation is what CreateSession would do with the input, from the
// live trust anchor and profile.
type Explanation struct {
	// Tags are the session tags the profile's mappings give.
	Tags           map[string]string
	SourceIdentity string
	// Checks before the trust policy, in the order Roles Anywhere makes
	// them.
	Checks []Check
	// Policy is the trust policy evaluated, Decision its verdict (nil if
	// a check refused first).
	Policy   []byte
	Decision *trust.Decision
	// Allowed and Reason: the verdict, in the emulator's words.
	Allowed bool
	Reason  string
}

// Explain evaluates in with the live state of the trust anchor and profile
// (enabled, bundle, enabled CRLs, roles, attribute mappings) and the trust
// policy, with package trust: the same evaluation as the emulator's.
func (s *Syncer) Explain(ctx context.Context, in ExplainInput) (*Explanation, error) {
	st := s.Status()
	if st.TrustAnchorARN == "" || st.ProfileARN == "" {
		return nil, fmt.Errorf("anchors: %w: explain needs the trust anchor and profile (run `lanyard anchors sync` first)", ErrNoTrustAnchor)
	}
	ta, err := s.api.GetTrustAnchor(ctx, &rolesanywhere.GetTrustAnchorInput{TrustAnchorId: aws.String(idOf(st.TrustAnchorARN))})
	if err != nil {
		return nil, fmt.Errorf("anchors: get trust anchor %s: %w", st.TrustAnchorARN, err)
	}
	pr, err := s.api.GetProfile(ctx, &rolesanywhere.GetProfileInput{ProfileId: aws.String(idOf(st.ProfileARN))})
	if err != nil {
		return nil, fmt.Errorf("anchors: get profile %s: %w", st.ProfileARN, err)
	}
	leaf := in.Leaf
	if leaf == nil {
		if strings.TrimSpace(in.CN) == "" {
			return nil, fmt.Errorf("anchors: %w: give a certificate or a CN", ErrInvalidPolicyInput)
		}
		leaf = &x509.Certificate{Subject: pkix.Name{CommonName: in.CN}, SerialNumber: big.NewInt(0)}
		if inter := s.src.Intermediate(); inter != nil {
			leaf.Issuer = inter.Subject
		}
	}
	role := in.RoleARN
	if role == "" {
		role = s.cfg.RoleARN
	}
	ex := &Explanation{}
	refuse := func(name, reason string) (*Explanation, error) {
		ex.Checks = append(ex.Checks, Check{Name: name, Detail: reason})
		ex.Reason = reason
		return ex, nil
	}
	pass := func(name, detail string) { ex.Checks = append(ex.Checks, Check{Name: name, OK: true, Detail: detail}) }

	// The order of the emulator's CreateSession (emulator/sessions.go).
	if !aws.ToBool(ta.TrustAnchor.Enabled) {
		return refuse("trust anchor enabled", trust.ReasonAnchorDisabled)
	}
	pass("trust anchor enabled", st.TrustAnchorARN)
	if !aws.ToBool(pr.Profile.Enabled) {
		return refuse("profile enabled", trust.ReasonProfileDisabled)
	}
	pass("profile enabled", st.ProfileARN)
	if in.Leaf != nil {
		if reason := trust.LeafRefusal(in.Leaf, s.now()); reason != "" {
			return refuse("end-entity rules", reason)
		}
		pass("end-entity rules", "X.509 v3, not a CA, digitalSignature, SHA-256+, a subject, within validity")
		var bundle []*x509.Certificate
		if d, ok := ta.TrustAnchor.Source.SourceData.(*types.SourceDataMemberX509CertificateData); ok {
			bundle, _ = parseBundle(d.Value)
		}
		path, err := verifyPath(in.Leaf, in.Chain, bundle)
		if err != nil {
			return refuse("chain to the trust anchor", trust.ReasonNoPath+": "+err.Error())
		}
		pass("chain to the trust anchor", fmt.Sprintf("%d certificate(s) to %s", len(path), path[len(path)-1].Subject))
		if reason, err := s.revoked(ctx, st.TrustAnchorARN, path); err != nil {
			return nil, err
		} else if reason != "" {
			return refuse("not revoked", reason)
		}
		pass("not revoked", "no enabled CRL of the anchor lists the certificate")
	} else {
		pass("chain and revocation", "not checked: no certificate given (--cn)")
	}
	if !slices.Contains(pr.Profile.RoleArns, role) {
		return refuse("role in the profile", trust.ReasonRoleNotInProfile+": "+role)
	}
	pass("role in the profile", role)

	ex.Tags = trust.SessionTags(leaf, mappingsFromAPI(pr.Profile))
	ex.SourceIdentity = sourceIdentity(leaf)
	ex.Policy = in.Policy
	if ex.Policy == nil {
		doc, err := TrustPolicy(PolicyInput{CNRules: in.PolicyCNRules, IssuerCN: s.src.Intermediate().Subject.CommonName, TrustAnchorARN: st.TrustAnchorARN})
		if err != nil {
			return nil, err
		}
		ex.Policy = doc
	}
	pol, err := trust.Parse(ex.Policy)
	if err != nil {
		return nil, err
	}
	d := trust.Evaluate(pol, trust.Request{Tags: ex.Tags, SourceArn: st.TrustAnchorARN, SourceAccount: accountOf(st.TrustAnchorARN),
		SourceIdentity: ex.SourceIdentity, SourceIP: in.SourceIP})
	ex.Decision = &d
	ex.Allowed, ex.Reason = d.Allowed, d.Reason
	return ex, nil
}

// verifyPath builds a path from leaf through chain to a certificate of the
// anchor's bundle (as the emulator does).
func verifyPath(leaf *x509.Certificate, chain, bundle []*x509.Certificate) ([]*x509.Certificate, error) {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}
	for _, c := range chain {
		if !bytes.Equal(c.Raw, leaf.Raw) {
			inter.AddCert(c)
		}
	}
	paths, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, err
	}
	return paths[0], nil
}

// revoked returns the refusal reason if an enabled CRL of the anchor,
// signed by the issuer, lists a certificate of path below the anchor.
func (s *Syncer) revoked(ctx context.Context, anchorARN string, path []*x509.Certificate) (string, error) {
	var token *string
	for {
		out, err := s.api.ListCrls(ctx, &rolesanywhere.ListCrlsInput{NextToken: token})
		if err != nil {
			return "", fmt.Errorf("anchors: list CRLs: %w", err)
		}
		for _, c := range out.Crls {
			if aws.ToString(c.TrustAnchorArn) != anchorARN || !aws.ToBool(c.Enabled) {
				continue
			}
			blk, _ := pem.Decode(c.CrlData)
			if blk == nil {
				continue
			}
			l, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				continue
			}
			for i := 0; i < len(path)-1; i++ {
				cert, issuer := path[i], path[i+1]
				if !bytes.Equal(l.RawIssuer, cert.RawIssuer) || l.CheckSignatureFrom(issuer) != nil {
					continue
				}
				for _, e := range l.RevokedCertificateEntries {
					if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
						return trust.RevokedReason(cert.SerialNumber, cert.Subject.String(), aws.ToString(c.Name)), nil
					}
				}
			}
		}
		if out.NextToken == nil {
			return "", nil
		}
		token = out.NextToken
	}
}

func mappingsFromAPI(p *types.ProfileDetail) []trust.Mapping {
	out := []trust.Mapping{}
	for _, m := range p.AttributeMappings {
		tm := trust.Mapping{Field: string(m.CertificateField)}
		for _, r := range m.MappingRules {
			tm.Specifiers = append(tm.Specifiers, aws.ToString(r.Specifier))
		}
		out = append(out, tm)
	}
	return out
}

// sourceIdentity is what Roles Anywhere sets: "CN=…" for a CN up to 61
// characters, none for 62-64, "ID=<hex serial>" without a CN.
func sourceIdentity(c *x509.Certificate) string {
	cn := c.Subject.CommonName
	switch {
	case cn == "":
		h := c.SerialNumber.Text(16)
		if len(h)%2 == 1 {
			h = "0" + h
		}
		return "ID=" + h
	case len(cn) <= 61:
		return "CN=" + cn
	}
	return ""
}

func accountOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 {
		return ""
	}
	return parts[4]
}

// String prints the explanation: tags, checks, statements, verdict.
func (ex *Explanation) String() string {
	var b strings.Builder
	if len(ex.Tags) > 0 || ex.SourceIdentity != "" {
		fmt.Fprintf(&b, "session tags:\n")
		keys := make([]string, 0, len(ex.Tags))
		for k := range ex.Tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s%s = %s\n", trust.PrincipalTagPrefix, k, ex.Tags[k])
		}
		if ex.SourceIdentity != "" {
			fmt.Fprintf(&b, "  sts:SourceIdentity = %s\n", ex.SourceIdentity)
		}
	}
	fmt.Fprintf(&b, "checks:\n")
	for _, c := range ex.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %s: %s\n", mark, c.Name, c.Detail)
	}
	if ex.Decision != nil {
		fmt.Fprintf(&b, "trust policy statements:\n")
		for _, r := range ex.Decision.Results {
			verdict := "applies"
			if !r.Applies {
				verdict = "does not apply: " + r.Why()
			}
			fmt.Fprintf(&b, "  %s (%s) for %s: %s\n", r.Sid, r.Effect, r.Action, verdict)
			for _, c := range r.Conditions {
				fmt.Fprintf(&b, "      %s\n", c)
			}
		}
	}
	v := "DENIED"
	if ex.Allowed {
		v = "ALLOWED"
	}
	fmt.Fprintf(&b, "verdict: %s: %s\n", v, ex.Reason)
	return b.String()
}
