package anchors

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
)

// Defaults of Config.
const (
	// DefaultInterval is the time between two drift checks of Run.
	DefaultInterval = 10 * time.Minute
	// DefaultName names the trust anchor, profile and CRL lanyard creates.
	DefaultName = "lanyard"
	// DefaultMaxAttempts is how many times one API call is tried (SDK
	// retryer) on throttling and server errors.
	DefaultMaxAttempts = 5
	// DefaultMaxBackoff caps the wait between two attempts.
	DefaultMaxBackoff = 5 * time.Second
)

// Config configures a Syncer and NewClient.
type Config struct {
	// Region of the trust anchor. Default: the region in TrustAnchorARN,
	// else the SDK's (AWS_REGION, the shared config).
	Region string
	// Endpoint overrides the Roles Anywhere endpoint (the emulator).
	Endpoint string
	// TrustAnchorARN is the anchor to keep in sync. Empty: the one this
	// lanyard created earlier (recorded in the store), or, with Create, a
	// new one.
	TrustAnchorARN string
	// ProfileARN is the Roles Anywhere profile hosts use (reported; created
	// along with the anchor when empty).
	ProfileARN string
	// RoleARN is the role of the profile Create makes.
	RoleARN string
	// Name of the anchor, profile and CRL lanyard creates (default
	// DefaultName; letters, digits, space, "-" and "_").
	Name string
	// Create makes the trust anchor (and a profile allowing RoleARN) when
	// no ARN is configured or recorded.
	Create bool
	// Force lets Sync remove certificates lanyard did not put in the
	// anchor. Without it they are kept and reported.
	Force bool
	// Interval is the time between two syncs in Run (default
	// DefaultInterval).
	Interval time.Duration
	// Target names this anchor among several in one configuration
	// ("" the default one): its status key (StatusKeyFor) and log lines.
	Target string
	// Profile, when set, are the profile settings Sync keeps (nil: only
	// the profile's enabled state is watched).
	Profile *ProfileSettings
	// Notifications, when set, are the anchor's notification settings
	// Sync keeps.
	Notifications *NotificationSettings
	// CRLDPRevocation, when set, is the anchor's crlDpRevocationEnabled.
	CRLDPRevocation *bool

	// Credentials replaces the SDK's default credential chain (the dev
	// emulator's static key). Nil: config.LoadDefaultConfig's chain.
	Credentials aws.CredentialsProvider
	// HTTPClient replaces the SDK's HTTP client (nil: the SDK's, which
	// honours AWS_CA_BUNDLE; a client given here brings its own TLS
	// settings and AWS_CA_BUNDLE does not apply to it).
	HTTPClient aws.HTTPClient
	// MaxAttempts and MaxBackoff bound retries of one API call, and the
	// backoff of a CRL push (defaults DefaultMaxAttempts,
	// DefaultMaxBackoff).
	MaxAttempts int
	MaxBackoff  time.Duration
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Region == "" {
		c.Region = RegionOf(c.TrustAnchorARN)
	}
	return c
}

// RegionOf returns the region field of an ARN ("" if arn is not one).
func RegionOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return ""
	}
	return parts[3]
}

// API is the part of the Roles Anywhere client a Syncer calls;
// *rolesanywhere.Client implements it.
type API interface {
	GetTrustAnchor(context.Context, *rolesanywhere.GetTrustAnchorInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.GetTrustAnchorOutput, error)
	CreateTrustAnchor(context.Context, *rolesanywhere.CreateTrustAnchorInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.CreateTrustAnchorOutput, error)
	UpdateTrustAnchor(context.Context, *rolesanywhere.UpdateTrustAnchorInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.UpdateTrustAnchorOutput, error)
	EnableTrustAnchor(context.Context, *rolesanywhere.EnableTrustAnchorInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.EnableTrustAnchorOutput, error)
	CreateProfile(context.Context, *rolesanywhere.CreateProfileInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.CreateProfileOutput, error)
	ImportCrl(context.Context, *rolesanywhere.ImportCrlInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.ImportCrlOutput, error)
	UpdateCrl(context.Context, *rolesanywhere.UpdateCrlInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.UpdateCrlOutput, error)
	EnableCrl(context.Context, *rolesanywhere.EnableCrlInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.EnableCrlOutput, error)
	DeleteCrl(context.Context, *rolesanywhere.DeleteCrlInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.DeleteCrlOutput, error)
	ListCrls(context.Context, *rolesanywhere.ListCrlsInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.ListCrlsOutput, error)
	DisableTrustAnchor(context.Context, *rolesanywhere.DisableTrustAnchorInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.DisableTrustAnchorOutput, error)
	PutNotificationSettings(context.Context, *rolesanywhere.PutNotificationSettingsInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.PutNotificationSettingsOutput, error)
	GetProfile(context.Context, *rolesanywhere.GetProfileInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.GetProfileOutput, error)
	UpdateProfile(context.Context, *rolesanywhere.UpdateProfileInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.UpdateProfileOutput, error)
	EnableProfile(context.Context, *rolesanywhere.EnableProfileInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.EnableProfileOutput, error)
	DisableProfile(context.Context, *rolesanywhere.DisableProfileInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.DisableProfileOutput, error)
	PutAttributeMapping(context.Context, *rolesanywhere.PutAttributeMappingInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.PutAttributeMappingOutput, error)
	DeleteAttributeMapping(context.Context, *rolesanywhere.DeleteAttributeMappingInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.DeleteAttributeMappingOutput, error)
	TagResource(context.Context, *rolesanywhere.TagResourceInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.TagResourceOutput, error)
	UntagResource(context.Context, *rolesanywhere.UntagResourceInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.UntagResourceOutput, error)
	ListTagsForResource(context.Context, *rolesanywhere.ListTagsForResourceInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.ListTagsForResourceOutput, error)
	ListSubjects(context.Context, *rolesanywhere.ListSubjectsInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.ListSubjectsOutput, error)
	GetSubject(context.Context, *rolesanywhere.GetSubjectInput, ...func(*rolesanywhere.Options)) (*rolesanywhere.GetSubjectOutput, error)
}

var _ API = (*rolesanywhere.Client)(nil)

// NewClient returns a Roles Anywhere client: the SDK's default credential
// chain (or cfg.Credentials), cfg.Region, BaseEndpoint cfg.Endpoint when
// set, and a standard retryer whose backoff on throttling is capped at
// cfg.MaxBackoff over cfg.MaxAttempts attempts (no client-side retry
// quota, so a long throttling spell cannot exhaust it).
func NewClient(ctx context.Context, cfg Config) (*rolesanywhere.Client, error) {
	cfg = cfg.withDefaults()
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = cfg.MaxBackoff
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("anchors: load AWS configuration: %w", err)
	}
	if cfg.HTTPClient != nil {
		// Set after loading: LoadDefaultConfig refuses a plain
		// *http.Client when AWS_CA_BUNDLE is set (it can only add the
		// bundle to the SDK's own client). A caller's client brings its
		// own TLS settings.
		awsCfg.HTTPClient = cfg.HTTPClient
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("anchors: %w: no region (set anchors.region, or a trust anchor ARN, or AWS_REGION)", ErrInvalidConfig)
	}
	return rolesanywhere.NewFromConfig(awsCfg, func(o *rolesanywhere.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	}), nil
}
