package emulator

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/lanyard/lanyard/anchors/trust"
)

type attributeMapping struct {
	CertificateField string        `json:"certificateField"`
	MappingRules     []mappingRule `json:"mappingRules"`
}

type mappingRule struct {
	Specifier string `json:"specifier"`
}

type profile struct {
	id, arn, name             string
	enabled                   bool
	roleArns                  []string
	managedPolicyArns         []string
	sessionPolicy             string
	durationSeconds           int
	acceptRoleSessionName     bool
	requireInstanceProperties bool
	mappings                  []trust.Mapping
	tags                      []tag
	createdBy                 string
	created, updated          time.Time
}

type profileJSON struct {
	AcceptRoleSessionName     bool               `json:"acceptRoleSessionName"`
	AttributeMappings         []attributeMapping `json:"attributeMappings"`
	CreatedAt                 string             `json:"createdAt"`
	CreatedBy                 string             `json:"createdBy"`
	DurationSeconds           int                `json:"durationSeconds"`
	Enabled                   bool               `json:"enabled"`
	ManagedPolicyArns         []string           `json:"managedPolicyArns"`
	Name                      string             `json:"name"`
	ProfileArn                string             `json:"profileArn"`
	ProfileID                 string             `json:"profileId"`
	RequireInstanceProperties bool               `json:"requireInstanceProperties"`
	RoleArns                  []string           `json:"roleArns"`
	SessionPolicy             string             `json:"sessionPolicy,omitempty"`
	UpdatedAt                 string             `json:"updatedAt"`
}

func mappingsJSON(ms []trust.Mapping) []attributeMapping {
	out := []attributeMapping{}
	for _, m := range ms {
		am := attributeMapping{CertificateField: m.Field, MappingRules: []mappingRule{}}
		for _, s := range m.Specifiers {
			am.MappingRules = append(am.MappingRules, mappingRule{s})
		}
		out = append(out, am)
	}
	return out
}

func cloneMappings(ms []trust.Mapping) []trust.Mapping {
	out := make([]trust.Mapping, 0, len(ms))
	for _, m := range ms {
		out = append(out, trust.Mapping{Field: m.Field, Specifiers: append([]string{}, m.Specifiers...)})
	}
	return out
}

func (p *profile) view() profileJSON {
	return profileJSON{
		AcceptRoleSessionName: p.acceptRoleSessionName, AttributeMappings: mappingsJSON(p.mappings),
		CreatedAt: ts(p.created), CreatedBy: p.createdBy, DurationSeconds: p.durationSeconds, Enabled: p.enabled,
		ManagedPolicyArns: append([]string{}, p.managedPolicyArns...), Name: p.name, ProfileArn: p.arn, ProfileID: p.id,
		RequireInstanceProperties: p.requireInstanceProperties, RoleArns: append([]string{}, p.roleArns...),
		SessionPolicy: p.sessionPolicy, UpdatedAt: ts(p.updated),
	}
}

type profileInput struct {
	Name                      *string  `json:"name"`
	RoleArns                  []string `json:"roleArns"`
	ManagedPolicyArns         []string `json:"managedPolicyArns"`
	SessionPolicy             *string  `json:"sessionPolicy"`
	DurationSeconds           *int     `json:"durationSeconds"`
	Enabled                   *bool    `json:"enabled"`
	AcceptRoleSessionName     *bool    `json:"acceptRoleSessionName"`
	RequireInstanceProperties *bool    `json:"requireInstanceProperties"`
	Tags                      []tag    `json:"tags"`
}

func (in *profileInput) validate(create bool) error {
	if in.Name != nil || create {
		n := ""
		if in.Name != nil {
			n = *in.Name
		}
		if err := checkName(n); err != nil {
			return err
		}
	}
	if create && len(in.RoleArns) == 0 {
		return validation("roleArns is required")
	}
	if len(in.RoleArns) > maxRoleArns {
		return validation("at most %d roleArns", maxRoleArns)
	}
	for _, r := range in.RoleArns {
		if !roleArnRE.MatchString(r) {
			return validation("invalid role ARN %q", r)
		}
	}
	if len(in.ManagedPolicyArns) > maxManagedPolicyArns {
		return validation("at most %d managedPolicyArns", maxManagedPolicyArns)
	}
	if in.DurationSeconds != nil && (*in.DurationSeconds < MinDurationSeconds || *in.DurationSeconds > MaxDurationSeconds) {
		return validation("durationSeconds must be %d-%d", MinDurationSeconds, MaxDurationSeconds)
	}
	if in.SessionPolicy != nil && *in.SessionPolicy != "" && !json.Valid([]byte(*in.SessionPolicy)) {
		return validation("sessionPolicy must be a JSON policy document")
	}
	return nil
}

func (e *Emulator) createProfile(body []byte) (int, any, error) {
	var in profileInput
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	if err := in.validate(true); err != nil {
		return 0, nil, err
	}
	if len(e.profiles) >= 250 {
		return 0, nil, validation("profile quota (250) exceeded")
	}
	now := e.now()
	id := newUUID()
	p := &profile{
		id: id, arn: e.arn("profile", id), name: *in.Name, roleArns: in.RoleArns, managedPolicyArns: in.ManagedPolicyArns,
		durationSeconds: DefaultDurationSeconds, mappings: cloneMappings(trust.DefaultMappings), tags: in.Tags, created: now, updated: now,
		createdBy: "arn:aws:iam::" + e.account + ":user/" + e.creds.AccessKeyID,
	}
	p.apply(&in)
	e.profiles = append(e.profiles, p)
	return http.StatusCreated, map[string]any{"profile": p.view()}, nil
}

func (p *profile) apply(in *profileInput) {
	if in.Name != nil {
		p.name = *in.Name
	}
	if in.RoleArns != nil {
		p.roleArns = append([]string{}, in.RoleArns...)
	}
	if in.ManagedPolicyArns != nil {
		p.managedPolicyArns = append([]string{}, in.ManagedPolicyArns...)
	}
	if in.SessionPolicy != nil {
		p.sessionPolicy = *in.SessionPolicy
	}
	if in.DurationSeconds != nil {
		p.durationSeconds = *in.DurationSeconds
	}
	if in.Enabled != nil {
		p.enabled = *in.Enabled
	}
	if in.AcceptRoleSessionName != nil {
		p.acceptRoleSessionName = *in.AcceptRoleSessionName
	}
	if in.RequireInstanceProperties != nil {
		p.requireInstanceProperties = *in.RequireInstanceProperties
	}
}

func (e *Emulator) updateProfile(p *profile, body []byte) (int, any, error) {
	var in profileInput
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	in.Enabled, in.RequireInstanceProperties, in.Tags = nil, nil, nil // not updatable
	if err := in.validate(false); err != nil {
		return 0, nil, err
	}
	p.apply(&in)
	p.updated = e.now()
	return 200, map[string]any{"profile": p.view()}, nil
}

func (e *Emulator) deleteProfile(p *profile) {
	for i, x := range e.profiles {
		if x == p {
			e.profiles = append(e.profiles[:i], e.profiles[i+1:]...)
			return
		}
	}
}

func (e *Emulator) profileByID(id string) (*profile, error) {
	if !uuidRE.MatchString(id) {
		return nil, validation("invalid profile id %q", id)
	}
	for _, p := range e.profiles {
		if p.id == id {
			return p, nil
		}
	}
	return nil, notFound("Profile %s not found", id)
}

func (e *Emulator) profileByArn(arn string) *profile {
	for _, p := range e.profiles {
		if p.arn == arn {
			return p
		}
	}
	return nil
}

func (e *Emulator) listProfiles(r *http.Request) (int, any, error) {
	from, to, next, err := page(r, len(e.profiles))
	if err != nil {
		return 0, nil, err
	}
	items := []profileJSON{}
	for _, p := range e.profiles[from:to] {
		items = append(items, p.view())
	}
	return 200, listOut("profiles", items, next), nil
}
