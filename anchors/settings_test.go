package anchors

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"

	"github.com/lanyard/lanyard/anchors/trust"
)

const sourceIPPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"LanyardSourceIP","Effect":"Deny","Action":"*","Resource":"*",
"Condition":{"NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"},"Bool":{"aws:ViaAWSService":"false"}}}]}`

// managed returns the fixture's config with every setting managed.
func (f *fixture) managed() Config {
	cfg := f.cfg
	cfg.Create = true
	cfg.Profile = &ProfileSettings{
		ManagedPolicyARNs: []string{"arn:aws:iam::aws:policy/ReadOnlyAccess"}, SessionPolicy: sourceIPPolicy,
		DurationSeconds: 1800, AcceptRoleSessionName: true,
	}
	cfg.Notifications = &NotificationSettings{}
	cfg.CRLDPRevocation = aws.Bool(false)
	return cfg
}

func TestSettingsCreatedThenInSync(t *testing.T) {
	f := newFixture(t)
	root := newRoot(t, "Lanyard Root")
	s := f.syncer(t, f.managed(), staticSource{roots: []*x509.Certificate{root.cert}})
	ctx := context.Background()
	rep, err := s.Sync(ctx, false)
	must(t, err)
	api, _ := NewClient(ctx, f.cfg)
	p, err := api.GetProfile(ctx, &ra.GetProfileInput{ProfileId: aws.String(idOf(rep.ProfileARN))})
	must(t, err)
	pd := p.Profile
	if aws.ToInt32(pd.DurationSeconds) != 1800 || !aws.ToBool(pd.AcceptRoleSessionName) || !samePolicy(aws.ToString(pd.SessionPolicy), sourceIPPolicy) ||
		len(pd.ManagedPolicyArns) != 1 || len(pd.RoleArns) != 1 || pd.RoleArns[0] != testRole {
		t.Fatalf("created profile %+v", pd)
	}
	if m := mappingsOf(pd); len(m) != 2 || !sameSet(m[trust.FieldSubject], []string{"CN"}) || !sameSet(m[trust.FieldIssuer], []string{"CN"}) {
		t.Fatalf("created mappings %v, want lanyard's (subject and issuer CN)", m)
	}
	a, err := api.GetTrustAnchor(ctx, &ra.GetTrustAnchorInput{TrustAnchorId: aws.String(idOf(rep.TrustAnchorARN))})
	must(t, err)
	for _, n := range a.TrustAnchor.NotificationSettings {
		if n.Event == types.NotificationEventEndEntityCertificateExpiry && aws.ToBool(n.Enabled) ||
			n.Event == types.NotificationEventCaCertificateExpiry && (!aws.ToBool(n.Enabled) || aws.ToInt32(n.Threshold) != DefaultCAExpiryDays) {
			t.Fatalf("notification %s enabled %v threshold %d", n.Event, aws.ToBool(n.Enabled), aws.ToInt32(n.Threshold))
		}
	}
	f.cnt.reset()
	rep, err = s.Sync(ctx, false)
	must(t, err)
	if !rep.InSync() || f.cnt.writes() != 0 {
		t.Fatalf("second sync: %s; requests %v", rep, f.cnt.reqs)
	}
}

// TestSettingsDrift changes one setting behind lanyard's back at a time:
// a dry run reports it and changes nothing, a sync repairs it, and the
// next sync finds nothing.
func TestSettingsDrift(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		drift     func(t *testing.T, api *ra.Client, anchorID, profileID *string)
		wantField string
	}{
		{"duration", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: p, DurationSeconds: aws.Int32(43200)})
			must(t, err)
		}, "durationSeconds"},
		{"role ARNs", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: p, RoleArns: []string{testRole, "arn:aws:iam::123456789012:role/admin"}})
			must(t, err)
		}, "roleArns"},
		{"managed policies", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: p, ManagedPolicyArns: []string{}})
			must(t, err)
		}, "managedPolicyArns"},
		{"session policy", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: p, SessionPolicy: aws.String(strings.ReplaceAll(sourceIPPolicy, "192.0.2.0/24", "0.0.0.0/0"))})
			must(t, err)
		}, "sessionPolicy"},
		{"role session name", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.UpdateProfile(ctx, &ra.UpdateProfileInput{ProfileId: p, AcceptRoleSessionName: aws.Bool(false)})
			must(t, err)
		}, "acceptRoleSessionName"},
		{"mapping widened", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.PutAttributeMapping(ctx, &ra.PutAttributeMappingInput{ProfileId: p, CertificateField: types.CertificateFieldX509Subject,
				MappingRules: []types.MappingRule{{Specifier: aws.String("*")}}})
			must(t, err)
		}, "attributeMapping x509Subject"},
		{"mapping added", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.PutAttributeMapping(ctx, &ra.PutAttributeMappingInput{ProfileId: p, CertificateField: types.CertificateFieldX509SAN,
				MappingRules: []types.MappingRule{{Specifier: aws.String("DNS")}}})
			must(t, err)
		}, "attributeMapping x509SAN"},
		{"profile disabled", func(t *testing.T, api *ra.Client, _, p *string) {
			_, err := api.DisableProfile(ctx, &ra.DisableProfileInput{ProfileId: p})
			must(t, err)
		}, "enabled"},
		{"CA expiry warning off", func(t *testing.T, api *ra.Client, a, _ *string) {
			_, err := api.PutNotificationSettings(ctx, &ra.PutNotificationSettingsInput{TrustAnchorId: a, NotificationSettings: []types.NotificationSetting{
				{Event: types.NotificationEventCaCertificateExpiry, Enabled: aws.Bool(false)}}})
			must(t, err)
		}, "notification CA_CERTIFICATE_EXPIRY"},
		{"CRL distribution points", func(t *testing.T, api *ra.Client, a, _ *string) {
			_, err := api.UpdateTrustAnchor(ctx, &ra.UpdateTrustAnchorInput{TrustAnchorId: a, CrlDpRevocationEnabled: aws.Bool(true)})
			must(t, err)
		}, "crlDpRevocationEnabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			root := newRoot(t, "Lanyard Root")
			s := f.syncer(t, f.managed(), staticSource{roots: []*x509.Certificate{root.cert}})
			rep, err := s.Sync(ctx, false)
			must(t, err)
			api, err := NewClient(ctx, f.cfg)
			must(t, err)
			aID, pID := aws.String(idOf(rep.TrustAnchorARN)), aws.String(idOf(rep.ProfileARN))
			tt.drift(t, api, aID, pID)

			f.cnt.reset()
			dry, err := s.Sync(ctx, true)
			must(t, err)
			if len(dry.Changes) != 1 || dry.Changes[0].Field != tt.wantField || !strings.Contains(dry.String(), "~ ") {
				t.Fatalf("dry run changes %v, want one on %s\n%s", dry.Changes, tt.wantField, dry)
			}
			if n := f.cnt.writes(); n != 0 {
				t.Fatalf("dry run wrote: %v", f.cnt.reqs)
			}
			fixed, err := s.Sync(ctx, false)
			must(t, err)
			if len(fixed.Changes) != 1 || fixed.Changes[0].Field != tt.wantField {
				t.Fatalf("sync changes %v", fixed.Changes)
			}
			if st := s.Status(); len(st.Changes) != 1 || !strings.Contains(st.Drift, tt.wantField) {
				t.Fatalf("status changes %v drift %q", st.Changes, st.Drift)
			}
			again, err := s.Sync(ctx, false)
			must(t, err)
			if !again.InSync() {
				t.Fatalf("after the repair: %s", again)
			}
		})
	}
}

func TestSettingsRefused(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"duration too short", func(c *Config) { c.Profile.DurationSeconds = 899 }},
		{"duration too long", func(c *Config) { c.Profile.DurationSeconds = 43201 }},
		{"not a role", func(c *Config) { c.Profile.RoleARNs = []string{"arn:aws:iam::123456789012:user/bob"} }},
		{"session policy not JSON", func(c *Config) { c.Profile.SessionPolicy = "{deny" }},
		{"bad mapping", func(c *Config) {
			c.Profile.Mappings = []trust.Mapping{{Field: "x509Serial", Specifiers: []string{"*"}}}
		}},
		{"threshold", func(c *Config) { c.Notifications.EndEntityExpiryDays = 400 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			cfg := f.managed()
			tt.mod(&cfg)
			s := f.syncer(t, cfg, staticSource{roots: []*x509.Certificate{newRoot(t, "Lanyard Root").cert}})
			_, err := s.Sync(context.Background(), false)
			if !errors.Is(err, ErrInvalidConfig) || f.cnt.total() != 0 {
				t.Fatalf("err %v after %d requests, want ErrInvalidConfig before any", err, f.cnt.total())
			}
		})
	}
}

func TestKillSwitch(t *testing.T) {
	f := newFixture(t)
	s := f.syncer(t, f.managed(), staticSource{roots: []*x509.Certificate{newRoot(t, "Lanyard Root").cert}})
	ctx := context.Background()
	_, err := s.Sync(ctx, false)
	must(t, err)
	must(t, s.SetKillSwitch(ctx, true, "key leak on host7"))
	state := func() (bool, bool) {
		api, _ := NewClient(ctx, f.cfg)
		a, err := api.GetTrustAnchor(ctx, &ra.GetTrustAnchorInput{TrustAnchorId: aws.String(idOf(s.TrustAnchorARN()))})
		must(t, err)
		p, err := api.GetProfile(ctx, &ra.GetProfileInput{ProfileId: aws.String(idOf(s.ProfileARN()))})
		must(t, err)
		return aws.ToBool(a.TrustAnchor.Enabled), aws.ToBool(p.Profile.Enabled)
	}
	if a, p := state(); a || p {
		t.Fatalf("after disable: anchor enabled %v, profile enabled %v", a, p)
	}
	// A sync (the background loop) must not "repair" the kill switch.
	rep, err := s.Sync(ctx, false)
	must(t, err)
	if a, p := state(); a || p || !strings.Contains(rep.KillSwitch, "key leak on host7") || !rep.InSync() {
		t.Fatalf("sync undid the kill switch (anchor %v, profile %v): %s", a, p, rep)
	}
	if st := s.Status(); !strings.Contains(st.KillSwitch, "key leak") {
		t.Fatalf("status kill switch %q", st.KillSwitch)
	}
	must(t, s.SetKillSwitch(ctx, false, ""))
	if a, p := state(); !a || !p || s.Status().KillSwitch != "" {
		t.Fatalf("after enable: anchor %v profile %v status %q", a, p, s.Status().KillSwitch)
	}
}

// TestSyncAllIsolates: a target whose endpoint is down fails alone.
func TestSyncAllIsolates(t *testing.T) {
	f := newFixture(t)
	root := staticSource{roots: []*x509.Certificate{newRoot(t, "Lanyard Root").cert}}
	good := f.managed()
	good.Target = "us"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	dead := "http://" + ln.Addr().String()
	ln.Close()
	bad := f.managed()
	bad.Target, bad.Endpoint, bad.MaxAttempts = "eu", dead, 1
	res := SyncAll(context.Background(), []*Syncer{f.syncer(t, bad, root), f.syncer(t, good, root)}, false)
	if res[0].Target != "eu" || res[0].Err == nil || res[1].Target != "us" || res[1].Err != nil || !res[1].Report.Created {
		t.Fatalf("results %+v", res)
	}
	us, err := LoadStatusFor(f.db, "us")
	must(t, err)
	eu, err := LoadStatusFor(f.db, "eu")
	must(t, err)
	if us.LastResult != "created" || eu.LastResult != "error" || us.TrustAnchorARN == "" {
		t.Fatalf("statuses us %+v eu %+v", us, eu)
	}
}
