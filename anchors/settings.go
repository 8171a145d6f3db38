package anchors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"

	"github.com/lanyard/lanyard/anchors/trust"
	"github.com/lanyard/lanyard/revocation"
)

// Profile durations Roles Anywhere accepts (durationSeconds), and its
// default.
const (
	MinDurationSeconds     = 900
	MaxDurationSeconds     = 43200
	DefaultDurationSeconds = 3600
)

// Notification defaults (see NotificationSettings).
const (
	// DefaultCAExpiryDays warns 45 days before a CA certificate of the
	// anchor expires: AWS's own default, and longer than lanyard's
	// intermediate rotation needs.
	DefaultCAExpiryDays = 45
	// MaxNotificationDays is the API's threshold limit.
	MaxNotificationDays = 360
)

// KillSwitchTag is the resource tag `lanyard anchors disable` puts on the
// trust anchor and the profile. While it is there, Sync keeps both
// disabled instead of repairing the "drift"; `lanyard anchors enable`
// removes it. The state lives on the AWS resources themselves, so every
// lanyard replica and every CLI sees it.
const KillSwitchTag = "lanyard:kill-switch"

// ProfileSettings are the Roles Anywhere profile settings lanyard owns
// (anchors.profile in lanyard.yaml). Sync makes the profile equal to
// them.
type ProfileSettings struct {
	// RoleARNs the profile lets sessions assume (default: Config.RoleARN).
	RoleARNs []string
	// ManagedPolicyARNs further limit the session.
	ManagedPolicyARNs []string
	// SessionPolicy is the inline session policy (JSON; "" none), e.g.
	// SessionPolicy(sourceIPs).
	SessionPolicy string
	// DurationSeconds is the session length (0: DefaultDurationSeconds).
	DurationSeconds int
	// AcceptRoleSessionName lets hosts name their sessions.
	AcceptRoleSessionName bool
	// Mappings are the attribute mappings (nil: trust.LanyardMappings,
	// the subject and issuer CN lanyard's trust policies test).
	Mappings []trust.Mapping
}

// NotificationSettings are the trust anchor's expiry notifications.
//
// CA expiry warnings are on (DefaultCAExpiryDays). End-entity expiry
// notifications are off by default: lanyard's host certificates live
// hours to days and are renewed at two thirds of their life, and AWS's
// smallest threshold is one day, so every certificate used would raise an
// event every day — noise that would train people to ignore the channel.
// Expiry of host certificates is lanyard's job (the agent renews, the
// dashboard and `lanyard doctor` show what is late).
type NotificationSettings struct {
	// CAExpiryDays: warn this many days before a CA certificate expires
	// (0: DefaultCAExpiryDays; negative: off).
	CAExpiryDays int
	// EndEntityExpiryDays: notify this many days before a used end-entity
	// certificate expires (0: off).
	EndEntityExpiryDays int
}

// Validate checks the settings as the API would, so that bad input is
// refused before any call.
func (p *ProfileSettings) Validate() error {
	if p.DurationSeconds != 0 && (p.DurationSeconds < MinDurationSeconds || p.DurationSeconds > MaxDurationSeconds) {
		return fmt.Errorf("anchors: %w: profile duration_seconds %d is outside %d-%d (15 minutes to 12 hours)",
			ErrInvalidConfig, p.DurationSeconds, MinDurationSeconds, MaxDurationSeconds)
	}
	for _, r := range p.RoleARNs {
		if !strings.HasPrefix(r, "arn:") || !strings.Contains(r, ":role/") {
			return fmt.Errorf("anchors: %w: %q is not an IAM role ARN", ErrInvalidConfig, r)
		}
	}
	for _, r := range p.ManagedPolicyARNs {
		if !strings.HasPrefix(r, "arn:") || !strings.Contains(r, ":policy/") {
			return fmt.Errorf("anchors: %w: %q is not an IAM policy ARN", ErrInvalidConfig, r)
		}
	}
	if len(p.RoleARNs) > 250 || len(p.ManagedPolicyARNs) > 50 {
		return fmt.Errorf("anchors: %w: at most 250 role ARNs and 50 managed policy ARNs", ErrInvalidConfig)
	}
	if p.SessionPolicy != "" && !json.Valid([]byte(p.SessionPolicy)) {
		return fmt.Errorf("anchors: %w: the session policy is not JSON", ErrInvalidConfig)
	}
	if err := trust.ValidateMappings(p.Mappings); err != nil {
		return fmt.Errorf("anchors: %w: %v", ErrInvalidConfig, err)
	}
	return nil
}

// Validate checks the thresholds against the API's limits.
func (n *NotificationSettings) Validate() error {
	if n.CAExpiryDays > MaxNotificationDays || n.EndEntityExpiryDays > MaxNotificationDays || n.EndEntityExpiryDays < 0 {
		return fmt.Errorf("anchors: %w: notification thresholds are 1-%d days", ErrInvalidConfig, MaxNotificationDays)
	}
	return nil
}

// Change is one setting Sync found different from the configuration.
type Change struct {
	// Resource is "trust anchor" or "profile".
	Resource string `json:"resource"`
	// Field is the API's name of the setting.
	Field string `json:"field"`
	// From is the value found, To the value wanted.
	From string `json:"from"`
	To   string `json:"to"`
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s: %s -> %s", c.Resource, c.Field, c.From, c.To)
}

// profileWanted returns the configured profile settings with defaults.
func (s *Syncer) profileWanted() ProfileSettings {
	p := *s.cfg.Profile
	if len(p.RoleARNs) == 0 && s.cfg.RoleARN != "" {
		p.RoleARNs = []string{s.cfg.RoleARN}
	}
	if p.DurationSeconds == 0 {
		p.DurationSeconds = DefaultDurationSeconds
	}
	if p.Mappings == nil {
		p.Mappings = trust.LanyardMappings
	}
	return p
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

func listString(v []string) string {
	if len(v) == 0 {
		return "[]"
	}
	return "[" + strings.Join(v, ", ") + "]"
}

// samePolicy compares two policy documents as JSON values ("" = none).
func samePolicy(a, b string) bool {
	if strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "" {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	return reflect.DeepEqual(x, y)
}

func compactPolicy(p string) string {
	if p == "" {
		return "(none)"
	}
	var b bytes.Buffer
	if json.Compact(&b, []byte(p)) != nil {
		return p
	}
	return b.String()
}

func mappingsOf(d *types.ProfileDetail) map[string][]string {
	out := map[string][]string{}
	for _, m := range d.AttributeMappings {
		for _, r := range m.MappingRules {
			out[string(m.CertificateField)] = append(out[string(m.CertificateField)], aws.ToString(r.Specifier))
		}
		if _, ok := out[string(m.CertificateField)]; !ok {
			out[string(m.CertificateField)] = nil
		}
	}
	return out
}

// killSwitch returns the kill-switch tag's value on arn ("" if none).
func (s *Syncer) killSwitch(ctx context.Context, arn string) (string, error) {
	out, err := s.api.ListTagsForResource(ctx, &rolesanywhere.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("anchors: list tags of %s: %w", arn, err)
	}
	for _, t := range out.Tags {
		if aws.ToString(t.Key) == KillSwitchTag {
			v := aws.ToString(t.Value)
			if v == "" {
				v = "engaged"
			}
			return v, nil
		}
	}
	return "", nil
}

// reconcileAnchor repairs the trust anchor's settings: enabled (unless the
// kill switch is engaged), notification settings, crlDpRevocationEnabled.
func (s *Syncer) reconcileAnchor(ctx context.Context, rep *Report, ta *types.TrustAnchorDetail, dryRun bool) error {
	arn := aws.ToString(ta.TrustAnchorArn)
	id := aws.String(idOf(arn))
	// The kill switch disables before it tags, so only a disabled anchor
	// can be held by it: the tags are read only then (one call fewer per
	// sync against a 1 TPS quota).
	enabled := aws.ToBool(ta.Enabled)
	ks := ""
	if !enabled {
		var err error
		if ks, err = s.killSwitch(ctx, arn); err != nil {
			return err
		}
		rep.KillSwitch = ks
	}
	switch {
	case ks == "" && !enabled:
		rep.Enabled = true
		if !dryRun {
			if _, err := s.api.EnableTrustAnchor(ctx, &rolesanywhere.EnableTrustAnchorInput{TrustAnchorId: id}); err != nil {
				rep.Enabled = false
				return fmt.Errorf("anchors: enable trust anchor %s: %w", arn, err)
			}
		}
	}
	if s.cfg.CRLDPRevocation != nil && aws.ToBool(ta.CrlDpRevocationEnabled) != *s.cfg.CRLDPRevocation {
		rep.Changes = append(rep.Changes, Change{"trust anchor", "crlDpRevocationEnabled",
			strconv.FormatBool(aws.ToBool(ta.CrlDpRevocationEnabled)), strconv.FormatBool(*s.cfg.CRLDPRevocation)})
		if !dryRun {
			if _, err := s.api.UpdateTrustAnchor(ctx, &rolesanywhere.UpdateTrustAnchorInput{TrustAnchorId: id,
				CrlDpRevocationEnabled: s.cfg.CRLDPRevocation}); err != nil {
				return fmt.Errorf("anchors: set crlDpRevocationEnabled on %s: %w", arn, err)
			}
		}
	}
	if s.cfg.Notifications == nil {
		return nil
	}
	want := s.notificationsWanted()
	var put []types.NotificationSetting
	for _, w := range want {
		var cur *types.NotificationSettingDetail
		for i := range ta.NotificationSettings {
			if ta.NotificationSettings[i].Event == w.Event {
				cur = &ta.NotificationSettings[i]
			}
		}
		wEnabled, wDays := aws.ToBool(w.Enabled), aws.ToInt32(w.Threshold)
		if cur != nil && aws.ToBool(cur.Enabled) == wEnabled && (!wEnabled || aws.ToInt32(cur.Threshold) == wDays) {
			continue
		}
		from := "(unset)"
		if cur != nil {
			from = notificationString(aws.ToBool(cur.Enabled), aws.ToInt32(cur.Threshold))
		}
		rep.Changes = append(rep.Changes, Change{"trust anchor", "notification " + string(w.Event), from, notificationString(wEnabled, wDays)})
		put = append(put, w)
	}
	if len(put) > 0 && !dryRun {
		if _, err := s.api.PutNotificationSettings(ctx, &rolesanywhere.PutNotificationSettingsInput{TrustAnchorId: id, NotificationSettings: put}); err != nil {
			return fmt.Errorf("anchors: put notification settings on %s: %w", arn, err)
		}
	}
	return nil
}

func notificationString(enabled bool, days int32) string {
	if !enabled {
		return "off"
	}
	return fmt.Sprintf("on, %d days", days)
}

func (s *Syncer) notificationsWanted() []types.NotificationSetting {
	n := *s.cfg.Notifications
	ca := types.NotificationSetting{Event: types.NotificationEventCaCertificateExpiry, Channel: types.NotificationChannelAll, Enabled: aws.Bool(true)}
	switch {
	case n.CAExpiryDays < 0:
		ca.Enabled = aws.Bool(false)
	case n.CAExpiryDays == 0:
		ca.Threshold = aws.Int32(DefaultCAExpiryDays)
	default:
		ca.Threshold = aws.Int32(int32(n.CAExpiryDays))
	}
	ee := types.NotificationSetting{Event: types.NotificationEventEndEntityCertificateExpiry, Channel: types.NotificationChannelAll, Enabled: aws.Bool(false)}
	if n.EndEntityExpiryDays > 0 {
		ee.Enabled, ee.Threshold = aws.Bool(true), aws.Int32(int32(n.EndEntityExpiryDays))
	}
	return []types.NotificationSetting{ca, ee}
}

// reconcileProfile makes the profile's settings equal to Config.Profile
// (when set) and its enabled state follow the kill switch.
func (s *Syncer) reconcileProfile(ctx context.Context, rep *Report, dryRun bool) error {
	arn := rep.ProfileARN
	if arn == "" || (s.cfg.Profile == nil && rep.KillSwitch == "") {
		return nil // not managed, and no kill switch to hold it by
	}
	id := aws.String(idOf(arn))
	out, err := s.api.GetProfile(ctx, &rolesanywhere.GetProfileInput{ProfileId: id})
	if err != nil {
		return fmt.Errorf("anchors: get profile %s: %w", arn, err)
	}
	p := out.Profile
	if p == nil {
		return fmt.Errorf("anchors: get profile %s: empty answer", arn)
	}
	enabled := aws.ToBool(p.Enabled)
	ks := rep.KillSwitch
	if ks == "" && !enabled {
		if ks, err = s.killSwitch(ctx, arn); err != nil {
			return err
		}
		rep.KillSwitch = ks
	}
	switch {
	case ks != "" && enabled:
		// The anchor is held: hold the profile too.
		rep.Changes = append(rep.Changes, Change{"profile", "enabled", "true", "false (kill switch " + ks + ")"})
		if !dryRun {
			if _, err := s.api.DisableProfile(ctx, &rolesanywhere.DisableProfileInput{ProfileId: id}); err != nil {
				return fmt.Errorf("anchors: disable profile %s: %w", arn, err)
			}
		}
	case ks == "" && !enabled:
		rep.Changes = append(rep.Changes, Change{"profile", "enabled", "false", "true"})
		if !dryRun {
			if _, err := s.api.EnableProfile(ctx, &rolesanywhere.EnableProfileInput{ProfileId: id}); err != nil {
				return fmt.Errorf("anchors: enable profile %s: %w", arn, err)
			}
		}
	}
	if s.cfg.Profile == nil {
		return nil
	}
	want := s.profileWanted()
	upd := &rolesanywhere.UpdateProfileInput{ProfileId: id}
	changed := false
	change := func(field, from, to string) {
		rep.Changes = append(rep.Changes, Change{"profile", field, from, to})
		changed = true
	}
	if !sameSet(p.RoleArns, want.RoleARNs) {
		change("roleArns", listString(p.RoleArns), listString(want.RoleARNs))
		upd.RoleArns = want.RoleARNs
	}
	if !sameSet(p.ManagedPolicyArns, want.ManagedPolicyARNs) {
		change("managedPolicyArns", listString(p.ManagedPolicyArns), listString(want.ManagedPolicyARNs))
		upd.ManagedPolicyArns = append([]string{}, want.ManagedPolicyARNs...)
	}
	if !samePolicy(aws.ToString(p.SessionPolicy), want.SessionPolicy) {
		change("sessionPolicy", compactPolicy(aws.ToString(p.SessionPolicy)), compactPolicy(want.SessionPolicy))
		upd.SessionPolicy = aws.String(want.SessionPolicy)
	}
	if int(aws.ToInt32(p.DurationSeconds)) != want.DurationSeconds {
		change("durationSeconds", strconv.Itoa(int(aws.ToInt32(p.DurationSeconds))), strconv.Itoa(want.DurationSeconds))
		upd.DurationSeconds = aws.Int32(int32(want.DurationSeconds))
	}
	if aws.ToBool(p.AcceptRoleSessionName) != want.AcceptRoleSessionName {
		change("acceptRoleSessionName", strconv.FormatBool(aws.ToBool(p.AcceptRoleSessionName)), strconv.FormatBool(want.AcceptRoleSessionName))
		upd.AcceptRoleSessionName = aws.Bool(want.AcceptRoleSessionName)
	}
	if changed && !dryRun {
		if _, err := s.api.UpdateProfile(ctx, upd); err != nil {
			return fmt.Errorf("anchors: update profile %s: %w", arn, err)
		}
	}
	// Attribute mappings, field by field.
	cur := mappingsOf(p)
	wantM := map[string][]string{}
	for _, m := range want.Mappings {
		wantM[m.Field] = m.Specifiers
	}
	for _, field := range []string{trust.FieldIssuer, trust.FieldSAN, trust.FieldSubject} {
		c, hasC := cur[field]
		w, hasW := wantM[field]
		switch {
		case hasW && (!hasC || !sameSet(c, w)):
			rep.Changes = append(rep.Changes, Change{"profile", "attributeMapping " + field, listString(c), listString(w)})
			if dryRun {
				continue
			}
			rules := make([]types.MappingRule, 0, len(w))
			for _, sp := range w {
				rules = append(rules, types.MappingRule{Specifier: aws.String(sp)})
			}
			if _, err := s.api.PutAttributeMapping(ctx, &rolesanywhere.PutAttributeMappingInput{ProfileId: id,
				CertificateField: types.CertificateField(field), MappingRules: rules}); err != nil {
				return fmt.Errorf("anchors: put attribute mapping %s on %s: %w", field, arn, err)
			}
		case !hasW && hasC:
			rep.Changes = append(rep.Changes, Change{"profile", "attributeMapping " + field, listString(c), "[]"})
			if dryRun {
				continue
			}
			if _, err := s.api.DeleteAttributeMapping(ctx, &rolesanywhere.DeleteAttributeMappingInput{ProfileId: id,
				CertificateField: types.CertificateField(field)}); err != nil {
				return fmt.Errorf("anchors: delete attribute mapping %s on %s: %w", field, arn, err)
			}
		}
	}
	return nil
}

// SetKillSwitch engages (on) or releases the kill switch: it tags (or
// untags) the trust anchor and the profile with KillSwitchTag and disables
// (or enables) both at once, so every host's next CreateSession is refused
// (or allowed again). reason is recorded in the tag with the time.
func (s *Syncer) SetKillSwitch(ctx context.Context, on bool, reason string) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	st := s.Status()
	if st.TrustAnchorARN == "" {
		return fmt.Errorf("anchors: %w: no trust anchor to switch", ErrNoTrustAnchor)
	}
	value := ""
	if on {
		value = s.now().UTC().Format(time.RFC3339)
		if reason = strings.TrimSpace(reason); reason != "" {
			value += " " + reason
		}
		value = sanitizeTagValue(value)
	}
	type res struct {
		arn     string
		enable  func() error
		disable func() error
	}
	rs := []res{{st.TrustAnchorARN,
		func() error {
			_, err := s.api.EnableTrustAnchor(ctx, &rolesanywhere.EnableTrustAnchorInput{TrustAnchorId: aws.String(idOf(st.TrustAnchorARN))})
			return err
		},
		func() error {
			_, err := s.api.DisableTrustAnchor(ctx, &rolesanywhere.DisableTrustAnchorInput{TrustAnchorId: aws.String(idOf(st.TrustAnchorARN))})
			return err
		}}}
	if st.ProfileARN != "" {
		rs = append(rs, res{st.ProfileARN,
			func() error {
				_, err := s.api.EnableProfile(ctx, &rolesanywhere.EnableProfileInput{ProfileId: aws.String(idOf(st.ProfileARN))})
				return err
			},
			func() error {
				_, err := s.api.DisableProfile(ctx, &rolesanywhere.DisableProfileInput{ProfileId: aws.String(idOf(st.ProfileARN))})
				return err
			}})
	}
	for _, r := range rs {
		var err error
		if on {
			// Disable first: the switch must bite even if tagging fails.
			if err = r.disable(); err == nil {
				_, err = s.api.TagResource(ctx, &rolesanywhere.TagResourceInput{ResourceArn: aws.String(r.arn),
					Tags: []types.Tag{{Key: aws.String(KillSwitchTag), Value: aws.String(value)}}})
			}
		} else {
			if _, err = s.api.UntagResource(ctx, &rolesanywhere.UntagResourceInput{ResourceArn: aws.String(r.arn), TagKeys: []string{KillSwitchTag}}); err == nil {
				err = r.enable()
			}
		}
		if err != nil {
			return fmt.Errorf("anchors: kill switch on %s: %w", r.arn, err)
		}
	}
	s.update(ctx, func(st *Status) { st.KillSwitch = value })
	if on {
		s.log.Warn("anchors: kill switch engaged: trust anchor and profile disabled", "trust_anchor", st.TrustAnchorARN, "profile", st.ProfileARN, "reason", reason)
	} else {
		s.log.Info("anchors: kill switch released: trust anchor and profile enabled", "trust_anchor", st.TrustAnchorARN, "profile", st.ProfileARN)
	}
	return nil
}

// sanitizeTagValue keeps the characters AWS tag values allow.
func sanitizeTagValue(v string) string {
	v = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(" _.:/=+-@", r):
			return r
		}
		return '_'
	}, v)
	if len(v) > 256 {
		v = v[:256]
	}
	return v
}

// TargetResult is one target's outcome in SyncAll.
type TargetResult struct {
	// Target is the Syncer's Config.Target.
	Target string
	Report *Report
	Err    error
}

// SyncAll syncs every target on its own, concurrently: one target's
// failure (an unreachable region, a denied account) neither stops nor
// delays the others. Results come back in the order of syncers.
func SyncAll(ctx context.Context, syncers []*Syncer, dryRun bool) []TargetResult {
	out := make([]TargetResult, len(syncers))
	done := make(chan struct{}, len(syncers))
	for i, s := range syncers {
		go func() {
			defer func() { done <- struct{}{} }()
			rep, err := s.Sync(ctx, dryRun)
			out[i] = TargetResult{Target: s.cfg.Target, Report: rep, Err: err}
		}()
	}
	for range syncers {
		<-done
	}
	return out
}

// Syncers fans CRLs out to several targets (revocation.Publisher).
type Syncers []*Syncer

// PublishCRL hands crl to every target; each queues and pushes it on its
// own (one target's slow or failing pushes do not hold the others').
func (ss Syncers) PublishCRL(ctx context.Context, crl *revocation.CRL) {
	for _, s := range ss {
		s.PublishCRL(ctx, crl)
	}
}
