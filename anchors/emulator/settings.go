package emulator

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/lanyard/lanyard/anchors/trust"
)

// putAttributeMapping is PUT /profiles/{id}/mappings: the field's rules
// become exactly the given specifiers.
func (e *Emulator) putAttributeMapping(p *profile, body []byte) (int, any, error) {
	var in attributeMapping
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	m := trust.Mapping{Field: in.CertificateField}
	for _, r := range in.MappingRules {
		m.Specifiers = append(m.Specifiers, r.Specifier)
	}
	if len(m.Specifiers) == 0 {
		return 0, nil, validation("mappingRules is required")
	}
	if err := trust.ValidateMappings([]trust.Mapping{m}); err != nil {
		return 0, nil, validation("%v", err)
	}
	i := slices.IndexFunc(p.mappings, func(x trust.Mapping) bool { return x.Field == m.Field })
	if i >= 0 {
		p.mappings[i] = m
	} else {
		p.mappings = append(p.mappings, m)
		slices.SortFunc(p.mappings, func(a, b trust.Mapping) int { return cmpString(a.Field, b.Field) })
	}
	p.updated = e.now()
	return 200, map[string]any{"profile": p.view()}, nil
}

// deleteAttributeMapping is DELETE /profiles/{id}/mappings?certificateField=
// &specifiers=…: the named specifiers, or the whole field without any.
func (e *Emulator) deleteAttributeMapping(p *profile, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	field := q.Get("certificateField")
	if err := trust.ValidateMappings([]trust.Mapping{{Field: field}}); err != nil {
		return 0, nil, validation("%v", err)
	}
	specs := q["specifiers"]
	out := p.mappings[:0]
	for _, m := range p.mappings {
		if m.Field == field {
			if len(specs) == 0 {
				continue
			}
			m.Specifiers = slices.DeleteFunc(m.Specifiers, func(s string) bool { return slices.Contains(specs, s) })
			if len(m.Specifiers) == 0 {
				continue
			}
		}
		out = append(out, m)
	}
	p.mappings = out
	p.updated = e.now()
	return 200, map[string]any{"profile": p.view()}, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// putNotificationSettings is PATCH /put-notifications-settings.
func (e *Emulator) putNotificationSettings(body []byte) (int, any, error) {
	var in struct {
		TrustAnchorID        string                `json:"trustAnchorId"`
		NotificationSettings []notificationSetting `json:"notificationSettings"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	a, err := e.anchorByID(in.TrustAnchorID)
	if err != nil {
		return 0, nil, err
	}
	if len(in.NotificationSettings) > 50 {
		return 0, nil, validation("at most 50 notification settings")
	}
	for _, n := range in.NotificationSettings {
		if n.Event != "CA_CERTIFICATE_EXPIRY" && n.Event != "END_ENTITY_CERTIFICATE_EXPIRY" {
			return 0, nil, validation("invalid notification event %q", n.Event)
		}
		if n.Channel == "" {
			n.Channel = "ALL"
		}
		if n.Enabled && (n.Threshold < 1 || n.Threshold > 360) {
			return 0, nil, validation("notification threshold must be 1-360 days when enabled")
		}
		n.ConfiguredBy = e.account
		for i := range a.notifications {
			if a.notifications[i].Event == n.Event && a.notifications[i].Channel == n.Channel {
				if n.Threshold == 0 {
					n.Threshold = a.notifications[i].Threshold
				}
				a.notifications[i] = n
			}
		}
	}
	a.updated = e.now()
	return 200, map[string]any{"trustAnchor": a.view()}, nil
}

// resetNotificationSettings is PATCH /reset-notifications-settings.
func (e *Emulator) resetNotificationSettings(body []byte) (int, any, error) {
	var in struct {
		TrustAnchorID           string `json:"trustAnchorId"`
		NotificationSettingKeys []struct {
			Event   string `json:"event"`
			Channel string `json:"channel"`
		} `json:"notificationSettingKeys"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	a, err := e.anchorByID(in.TrustAnchorID)
	if err != nil {
		return 0, nil, err
	}
	for _, k := range in.NotificationSettingKeys {
		if k.Channel == "" {
			k.Channel = "ALL"
		}
		for i := range a.notifications {
			if a.notifications[i].Event == k.Event && a.notifications[i].Channel == k.Channel {
				for _, d := range defaultNotifications {
					if d.Event == k.Event {
						a.notifications[i] = d
					}
				}
			}
		}
	}
	a.updated = e.now()
	return 200, map[string]any{"trustAnchor": a.view()}, nil
}

// SetRoleTrustPolicy gives the emulator the trust policy of roleArn (IAM
// itself is not emulated). CreateSession for that role then evaluates it
// with package trust; a role without one is taken to trust Roles Anywhere
// for every certificate (so tests that do not care need not write one).
// An empty doc removes it.
func (e *Emulator) SetRoleTrustPolicy(roleArn string, doc []byte) error {
	if !roleArnRE.MatchString(roleArn) {
		return fmt.Errorf("emulator: invalid role ARN %q", roleArn)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(doc) == 0 {
		delete(e.trustPolicies, roleArn)
		return nil
	}
	p, err := trust.Parse(doc)
	if err != nil {
		return fmt.Errorf("emulator: role %s: %w", roleArn, err)
	}
	e.trustPolicies[roleArn] = p
	return nil
}

// resourceTags returns the tag list of the resource arn names.
func (e *Emulator) resourceTags(arn string) (*[]tag, error) {
	for _, a := range e.anchors {
		if a.arn == arn {
			return &a.tags, nil
		}
	}
	for _, p := range e.profiles {
		if p.arn == arn {
			return &p.tags, nil
		}
	}
	for _, c := range e.crls {
		if c.arn == arn {
			return &c.tags, nil
		}
	}
	return nil, notFound("Resource %s not found", arn)
}

// maxTags is the most tags a resource carries.
const maxTags = 200

// tagResource is POST /TagResource: set (or overwrite) tags by key.
func (e *Emulator) tagResource(body []byte) (int, any, error) {
	var in struct {
		ResourceArn string `json:"resourceArn"`
		Tags        []tag  `json:"tags"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	tags, err := e.resourceTags(in.ResourceArn)
	if err != nil {
		return 0, nil, err
	}
	for _, t := range in.Tags {
		if t.Key == "" || len(t.Key) > 128 || len(t.Value) > 256 {
			return 0, nil, validation("tag keys are 1-128 characters, values at most 256")
		}
		if i := slices.IndexFunc(*tags, func(x tag) bool { return x.Key == t.Key }); i >= 0 {
			(*tags)[i] = t
		} else {
			*tags = append(*tags, t)
		}
	}
	if len(*tags) > maxTags {
		return 0, nil, validation("at most %d tags per resource", maxTags)
	}
	return 200, map[string]any{}, nil
}

// untagResource is POST /UntagResource.
func (e *Emulator) untagResource(body []byte) (int, any, error) {
	var in struct {
		ResourceArn string   `json:"resourceArn"`
		TagKeys     []string `json:"tagKeys"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	tags, err := e.resourceTags(in.ResourceArn)
	if err != nil {
		return 0, nil, err
	}
	*tags = slices.DeleteFunc(*tags, func(t tag) bool { return slices.Contains(in.TagKeys, t.Key) })
	return 200, map[string]any{}, nil
}

// listTagsForResource is GET /ListTagsForResource?resourceArn=.
func (e *Emulator) listTagsForResource(r *http.Request) (int, any, error) {
	tags, err := e.resourceTags(r.URL.Query().Get("resourceArn"))
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"tags": append([]tag{}, *tags...)}, nil
}
