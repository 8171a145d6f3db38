package emulator

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
)

// TrustAnchorSpec describes a trust anchor to seed directly, without the API.
type TrustAnchorSpec struct {
	// Name defaults to "lanyard".
	Name string
	// BundlePEM holds 1–2 CA certificates in PEM.
	BundlePEM []byte
	// Disabled seeds the anchor disabled (seeded anchors are enabled by default).
	Disabled bool
}

// ProfileSpec describes a profile to seed directly, without the API.
type ProfileSpec struct {
	// Name defaults to "lanyard".
	Name string
	// RoleArns are the roles the profile lets sessions assume (required).
	RoleArns []string
	// DurationSeconds defaults to DefaultDurationSeconds.
	DurationSeconds int
	// AcceptRoleSessionName allows a custom roleSessionName.
	AcceptRoleSessionName bool
	// Disabled seeds the profile disabled (seeded profiles are enabled by default).
	Disabled bool
}

// CRLSpec describes a CRL to seed directly, without the API.
type CRLSpec struct {
	// Name defaults to "lanyard".
	Name string
	// TrustAnchorArn is the anchor the CRL belongs to (required).
	TrustAnchorArn string
	// PEM is the CRL, PEM "X509 CRL".
	PEM []byte
	// Disabled seeds the CRL disabled (seeded CRLs are enabled by default).
	Disabled bool
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (e *Emulator) seed(call func([]byte) (int, any, error), in any) (map[string]any, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	_, out, err := call(body)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(out)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m, nil
}

// SeedTrustAnchor creates a CERTIFICATE_BUNDLE trust anchor with the same
// validation as CreateTrustAnchor and returns its ARN.
func (e *Emulator) SeedTrustAnchor(spec TrustAnchorSpec) (string, error) {
	data := string(spec.BundlePEM)
	m, err := e.seed(e.createTrustAnchor, map[string]any{
		"name":    orDefault(spec.Name, "lanyard"),
		"enabled": !spec.Disabled,
		"source":  source{SourceType: "CERTIFICATE_BUNDLE", SourceData: sourceData{X509CertificateData: &data}},
	})
	if err != nil {
		return "", err
	}
	return m["trustAnchor"].(map[string]any)["trustAnchorArn"].(string), nil
}

// SeedProfile creates a profile with the same validation as CreateProfile
// and returns its ARN.
func (e *Emulator) SeedProfile(spec ProfileSpec) (string, error) {
	in := map[string]any{
		"name":                  orDefault(spec.Name, "lanyard"),
		"roleArns":              spec.RoleArns,
		"enabled":               !spec.Disabled,
		"acceptRoleSessionName": spec.AcceptRoleSessionName,
	}
	if spec.DurationSeconds != 0 {
		in["durationSeconds"] = spec.DurationSeconds
	}
	m, err := e.seed(e.createProfile, in)
	if err != nil {
		return "", err
	}
	return m["profile"].(map[string]any)["profileArn"].(string), nil
}

// SeedCRL imports a CRL with the same validation as ImportCrl and returns its
// ARN.
func (e *Emulator) SeedCRL(spec CRLSpec) (string, error) {
	m, err := e.seed(e.importCRL, map[string]any{
		"name":           orDefault(spec.Name, "lanyard"),
		"trustAnchorArn": spec.TrustAnchorArn,
		"crlData":        spec.PEM,
		"enabled":        !spec.Disabled,
	})
	if err != nil {
		return "", err
	}
	return m["crl"].(map[string]any)["crlArn"].(string), nil
}

// Seed is the common case: an enabled trust anchor holding roots and an
// enabled profile allowing roleArn. It returns both ARNs.
func (e *Emulator) Seed(roots []*x509.Certificate, roleArn string) (trustAnchorArn, profileArn string, err error) {
	if len(roots) == 0 {
		return "", "", errors.New("emulator: Seed needs at least one root")
	}
	var bundle []byte
	for _, c := range roots {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if trustAnchorArn, err = e.SeedTrustAnchor(TrustAnchorSpec{BundlePEM: bundle}); err != nil {
		return "", "", err
	}
	if profileArn, err = e.SeedProfile(ProfileSpec{RoleArns: []string{roleArn}}); err != nil {
		return "", "", err
	}
	return trustAnchorArn, profileArn, nil
}

// TrustAnchorState is a snapshot of a trust anchor, for assertions.
type TrustAnchorState struct {
	Arn, ID, Name string
	Enabled       bool
	Certificates  []*x509.Certificate
}

// CRLState is a snapshot of an imported CRL, for assertions.
type CRLState struct {
	Arn, ID, Name, TrustAnchorArn string
	Enabled                       bool
	// Data is the CRL exactly as imported (PEM).
	Data []byte
	// List is the parsed CRL.
	List *x509.RevocationList
}

// TrustAnchors returns a snapshot of every trust anchor, oldest first.
func (e *Emulator) TrustAnchors() []TrustAnchorState {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]TrustAnchorState, 0, len(e.anchors))
	for _, a := range e.anchors {
		out = append(out, TrustAnchorState{Arn: a.arn, ID: a.id, Name: a.name, Enabled: a.enabled,
			Certificates: append([]*x509.Certificate(nil), a.certs...)})
	}
	return out
}

// CRLs returns a snapshot of every imported CRL, oldest first.
func (e *Emulator) CRLs() []CRLState {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]CRLState, 0, len(e.crls))
	for _, c := range e.crls {
		out = append(out, CRLState{Arn: c.arn, ID: c.id, Name: c.name, TrustAnchorArn: c.trustAnchorArn,
			Enabled: c.enabled, Data: append([]byte(nil), c.data...), List: c.list})
	}
	return out
}
