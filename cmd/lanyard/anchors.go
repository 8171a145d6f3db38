package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/anchors"
	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// newAnchorsCmd returns `lanyard anchors sync|status|policy`.
func newAnchorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "anchors",
		Short: "IAM Roles Anywhere: sync the trust anchor and CRL, show its status, print IAM policies",
		Long: `Keeps the IAM Roles Anywhere trust anchor equal to the CA: its bundle holds the
CA's root(s), its CRL is the CA's. "lanyard serve" does this in the background
when anchors.enabled is set; these commands do it by hand and report on it.

AWS credentials come from the SDK's default chain (environment, shared config,
SSO, instance role); anchors.region and anchors.endpoint select the service.
With anchors.emulator (serve --dev) they talk to the emulator serve runs on
anchors.emulator_listen (default 127.0.0.1:8444).`,
	}
	cmd.AddCommand(newAnchorsSyncCmd(), newAnchorsStatusCmd(), newAnchorsPolicyCmd(),
		newAnchorsSwitchCmd(true), newAnchorsSwitchCmd(false), newAnchorsExplainCmd(), newAnchorsSubjectsCmd())
	cmd.PersistentFlags().String("target", "", "the anchors target (anchors.targets[].target; default: the main one)")
	return cmd
}

// anchorsCA is the CA's certificates read from the CA folder (no key is
// needed to sync).
type anchorsCA struct {
	roots, retiredRoots []*x509.Certificate
	inter               *x509.Certificate
}

func (c *anchorsCA) Roots() []*x509.Certificate        { return c.roots }
func (c *anchorsCA) Intermediate() *x509.Certificate   { return c.inter }
func (c *anchorsCA) RetiredRoots() []*x509.Certificate { return c.retiredRoots }

// anchorsLoadCA reads root.crt (plus roots.pem during a rotation),
// intermediate.crt and the old roots of finished rotations.
func anchorsLoadCA(dir string) (*anchorsCA, error) {
	st, err := ca.ReadState(dir)
	if err != nil {
		return nil, fmt.Errorf("read the CA folder: %w", err)
	}
	return &anchorsCA{roots: st.Roots, inter: st.Current, retiredRoots: st.RetiredRoots}, nil
}

// anchorsEnv is what every anchors subcommand starts from.
type anchorsEnv struct {
	cfg  *config.Config
	ca   *anchorsCA
	acfg anchors.Config   // the --target's
	all  []anchors.Config // every target, the default first
	// recorded is every target's recorded sync status, the default
	// first (nil: unknown); from says where it came from.
	recorded []*v1.AnchorStatus
	from     string
	db       store.Store // nil unless the store could be opened
}

func (e *anchorsEnv) close() {
	if e.db != nil {
		e.db.Close()
	}
}

// recordedFor is target's recorded status (nil: unknown or none).
func (e *anchorsEnv) recordedFor(target string) *v1.AnchorStatus {
	for _, st := range e.recorded {
		if st.GetTarget() == target && st.GetRecorded() {
			return st
		}
	}
	return nil
}

// runAnchors is the RunE of an anchors subcommand: fn runs with the
// target, store and CA set up (anchorsSetup), closed after it.
func runAnchors(fn func(cmd *cobra.Command, e *anchorsEnv) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		e, err := anchorsSetup(cmd)
		if err != nil {
			return err
		}
		defer e.close()
		return fn(cmd, e)
	}
}

// anchorsSetup loads the configuration and the CA, and the recorded sync
// status through the admin service: the running server's
// (GetAnchorStatus, admin credential), else one on the store (when serve
// does not hold it).
func anchorsSetup(cmd *cobra.Command) (*anchorsEnv, error) {
	cfg, _, err := loadConfig(cmd, nil)
	if err != nil {
		return nil, err
	}
	c, err := anchorsLoadCA(cfg.CADir)
	if err != nil {
		return nil, err
	}
	cfgs, err := app.AnchorsConfigs(cfg.Anchors)
	if err != nil {
		return nil, err
	}
	target, _ := cmd.Flags().GetString("target")
	i := slices.IndexFunc(cfgs, func(c anchors.Config) bool { return c.Target == target })
	if i < 0 {
		return nil, fmt.Errorf("no anchors target %q in the configuration (see anchors.targets)", target)
	}
	e := &anchorsEnv{cfg: cfg, ca: c, acfg: cfgs[i], all: cfgs}
	if rec, err := anchorsStatusFromServer(cmd); err == nil {
		e.recorded, e.from = rec, "the running server"
	} else {
		db, derr := anchorsOpenStore(cfg.Store)
		switch {
		case derr != nil:
			e.from = fmt.Sprintf("nowhere: the server did not answer (%v) and %v", err, derr)
		default:
			e.db = db
			e.from = "the store " + cfg.Store
			if e.recorded, err = anchorsStatusFromStore(db, cfgs); err != nil {
				e.from += " (" + err.Error() + ")"
			}
		}
	}
	if st := e.recordedFor(target); e.acfg.TrustAnchorARN == "" && st != nil {
		e.acfg.TrustAnchorARN = st.GetTrustAnchorArn()
		if e.acfg.ProfileARN == "" {
			e.acfg.ProfileARN = st.GetProfileArn()
		}
	}
	return e, nil
}

// anchorsStatusFromServer asks the running server for every target's
// recorded sync status.
func anchorsStatusFromServer(cmd *cobra.Command) ([]*v1.AnchorStatus, error) {
	cl, _, err := adminClients(cmd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
	defer cancel()
	resp, err := cl.Admin.GetAnchorStatus(ctx, connect.NewRequest(&v1.GetAnchorStatusRequest{}))
	if err != nil {
		return nil, fmt.Errorf("GetAnchorStatus: %w", err)
	}
	return resp.Msg.GetTargets(), nil
}

// anchorsStatusFromStore reads what the server would answer from the
// store: the same admin service call and conversion, on the CLI's side.
func anchorsStatusFromStore(db store.Store, cfgs []anchors.Config) ([]*v1.AnchorStatus, error) {
	names := make([]string, 0, len(cfgs))
	for _, c := range cfgs {
		names = append(names, c.Target)
	}
	targets, err := admin.New(admin.Config{Store: db, AnchorTargets: names, Now: cliNow}).AnchorStatus()
	if err != nil {
		return nil, err
	}
	out := make([]*v1.AnchorStatus, 0, len(targets))
	for _, t := range targets {
		out = append(out, server.AnchorStatusPB(t.Target, t.Status))
	}
	return out, nil
}

func (e *anchorsEnv) syncer(ctx context.Context) (*anchors.Syncer, error) {
	client, err := anchors.NewClient(ctx, e.acfg)
	if err != nil {
		return nil, err
	}
	return anchors.New(e.acfg, client, e.ca, e.db, nil, newLogger(e.cfg.LogLevel)), nil
}

func newAnchorsSyncCmd() *cobra.Command {
	var dryRun, force, create bool
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Make the trust anchor's bundle hold the CA's root(s)",
		Long: `Compares the trust anchor's certificate bundle with the CA's root(s), by
certificate, and updates the anchor only when they differ. A certificate in the
anchor that is not one of the CA's roots is reported and kept, unless --force.
With --create (or anchors.create) and no trust anchor ARN, it creates the
anchor, enabled, and a profile for anchors.role_arn. With anchors.manage it also
makes the profile's settings (roles, managed and session policies, duration,
role session names, attribute mappings) and the anchor's (notifications,
crlDpRevocationEnabled) equal to lanyard.yaml, and keeps both enabled unless
the kill switch (lanyard anchors disable) holds them. Every target of
anchors.targets is synced on its own. --dry-run prints the difference ("~"
lines for settings) and changes nothing.`,
		Args: cobra.NoArgs,
		RunE: runAnchors(func(cmd *cobra.Command, e *anchorsEnv) error {
			out := cmd.OutOrStdout()
			// Every target, each on its own (one's failure is reported
			// and the others still sync), unless --target picks one.
			cfgs := []anchors.Config{e.acfg}
			if !cmd.Flags().Changed("target") && len(e.all) > 1 {
				cfgs = append(cfgs, e.all[1:]...)
			}
			var syncers []*anchors.Syncer
			for _, c := range cfgs {
				c.Force, c.Create = c.Force || force, c.Create || create
				client, err := anchors.NewClient(cmd.Context(), c)
				if err != nil {
					return fmt.Errorf("anchors target %q: %w", c.Target, err)
				}
				s := anchors.New(c, client, e.ca, e.db, nil, newLogger(e.cfg.LogLevel))
				defer s.Close()
				syncers = append(syncers, s)
			}
			var errs []error
			for _, r := range anchors.SyncAll(cmd.Context(), syncers, dryRun) {
				if len(syncers) > 1 {
					name := r.Target
					if name == "" {
						name = "(default)"
					}
					fmt.Fprintf(out, "== target %s\n", name)
				}
				if r.Report != nil {
					fmt.Fprint(out, r.Report)
					if r.Report.ProfileARN != "" {
						fmt.Fprintf(out, "profile %s\n", r.Report.ProfileARN)
					}
				}
				if r.Err != nil {
					fmt.Fprintf(out, "  error: %v\n", r.Err)
					errs = append(errs, r.Err)
				}
			}
			if !dryRun && e.db == nil {
				fmt.Fprintf(out, "note: status not recorded (%s); the server records its own syncs\n", e.from)
			}
			return errors.Join(errs...)
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "print the difference, change nothing")
	f.BoolVar(&force, "force", false, "remove certificates from the anchor that are not the CA's roots")
	f.BoolVar(&create, "create", false, "create the trust anchor (and a profile) when none is configured")
	return cmd
}

func newAnchorsStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the last sync, the drift, and the CRL AWS holds",
		Args:  cobra.NoArgs,
		RunE: runAnchors(func(cmd *cobra.Command, e *anchorsEnv) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "recorded status (from %s):\n", e.from)
			target, _ := cmd.Flags().GetString("target")
			if st := e.recordedFor(target); st == nil {
				fmt.Fprintf(out, "  none\n")
			} else {
				anchorsPrintStatus(out, st)
			}
			if !cmd.Flags().Changed("target") && e.recorded != nil {
				// The other targets' recorded statuses (live: --target).
				for _, c := range e.all[1:] {
					fmt.Fprintf(out, "\ntarget %s, recorded:\n", c.Target)
					if st := e.recordedFor(c.Target); st == nil {
						fmt.Fprintf(out, "  none\n")
					} else {
						anchorsPrintStatus(out, st)
					}
				}
			}
			if e.acfg.TrustAnchorARN == "" {
				return fmt.Errorf("no trust anchor to look at: set anchors.trust_anchor_arn or run `lanyard anchors sync --create`")
			}
			fmt.Fprintf(out, "\nlive, from IAM Roles Anywhere (%s):\n", anchorsEndpointName(e.acfg))
			e.acfg.Create = false
			s, err := e.syncer(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := s.Sync(cmd.Context(), true)
			if rep != nil {
				fmt.Fprint(out, rep)
			}
			if err != nil && !errors.Is(err, anchors.ErrForeignCertificate) {
				return err
			}
			r, err := s.RemoteCRL(cmd.Context())
			switch {
			case err != nil:
				return err
			case r == nil:
				fmt.Fprintf(out, "CRL: none imported\n")
			default:
				fmt.Fprintf(out, "CRL: number %d, %d entries, enabled %v, nextUpdate %s, updated %s\n  %s\n",
					r.Number, r.Entries, r.Enabled, r.NextUpdate.Format(time.RFC3339), r.UpdatedAt.Format(time.RFC3339), r.Arn)
			}
			return nil
		}),
	}
}

func anchorsEndpointName(c anchors.Config) string {
	if c.Endpoint != "" {
		return c.Endpoint
	}
	return "region " + c.Region
}

// anchorsPrintStatus prints one target's recorded status (GetAnchorStatus).
func anchorsPrintStatus(w io.Writer, st *v1.AnchorStatus) {
	ts := func(p *timestamppb.Timestamp) string {
		if p == nil {
			return "never"
		}
		t := p.AsTime()
		return t.Local().Format(time.RFC3339) + " (" + cliNow().Sub(t).Round(time.Second).String() + " ago)"
	}
	cert := func(c *v1.AnchorCertificate) anchors.CertInfo {
		return anchors.CertInfo{Subject: c.GetSubject(), SHA256: c.GetSha256(), NotAfter: c.GetNotAfter().AsTime()}
	}
	fmt.Fprintf(w, "  trust anchor:  %s\n  profile:       %s\n", st.GetTrustAnchorArn(), st.GetProfileArn())
	fmt.Fprintf(w, "  last sync:     %s: %s\n", ts(st.GetLastSync()), st.GetLastResult())
	if e := st.GetLastError(); e != "" {
		fmt.Fprintf(w, "  last error:    %s\n", e)
	}
	if d := st.GetDrift(); d != "" {
		fmt.Fprintf(w, "  drift found:   %s\n", d)
	}
	for _, c := range st.GetBundle() {
		fmt.Fprintf(w, "  bundle:        %s\n", cert(c))
	}
	for _, c := range st.GetForeign() {
		fmt.Fprintf(w, "  foreign:       %s\n", cert(c))
	}
	if k := st.GetKillSwitch(); k != "" {
		fmt.Fprintf(w, "  KILL SWITCH:   engaged %s (trust anchor and profile held disabled; `lanyard anchors enable`)\n", k)
	}
	for _, c := range st.GetChanges() {
		fmt.Fprintf(w, "  repaired:      %s\n", anchors.Change{Resource: c.GetResource(), Field: c.GetField(), From: c.GetFrom(), To: c.GetTo()})
	}
	if sum := st.GetSubjects(); sum != nil {
		fmt.Fprintf(w, "  subjects:      %d certificate(s) seen by AWS, %d finding(s), checked %s\n", sum.GetSeen(), sum.GetTotal(), ts(sum.GetAt()))
		for _, f := range sum.GetFindings() {
			fmt.Fprintf(w, "    ! %s: %s serial %s: %s\n", f.GetKind(), f.GetSubject(), f.GetSerial(), f.GetDetail())
		}
		if e := sum.GetError(); e != "" {
			fmt.Fprintf(w, "  subjects error: %s\n", e)
		}
	}
	fmt.Fprintf(w, "  CRL at AWS:    number %d (%d entries), pushed %s\n", st.GetCrlNumber(), st.GetCrlEntries(), ts(st.GetCrlPushedAt()))
	if e := st.GetCrlError(); e != "" {
		fmt.Fprintf(w, "  CRL error:     CRL %d at %s: %s\n", st.GetCrlErrorNumber(), ts(st.GetCrlErrorAt()), e)
	}
}

func newAnchorsPolicyCmd() *cobra.Command {
	var profile string
	var sourceIPs []string
	var session bool
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Print the IAM role trust policy of a profile (or, with --session/--source-ip, its session policy)",
		Long: `Prints one IAM policy document as JSON.

Without --session: the trust policy of the IAM role the profile's hosts assume:
principal rolesanywhere.amazonaws.com, actions sts:AssumeRole,
sts:SetSourceIdentity and sts:TagSession, for certificates whose subject CN the
profile allows, issued by this CA's intermediate, through this trust anchor.
Profiles with "re:" CN rules cannot be expressed and are refused.

With --session (or --source-ip): the Roles Anywhere profile's session policy,
denying every call that does not come from one of the --source-ip CIDRs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if session || len(sourceIPs) > 0 {
				doc, err := anchors.SessionPolicy(sourceIPs)
				if err != nil {
					return fmt.Errorf("%w (give --source-ip CIDR, once per network)", err)
				}
				_, err = out.Write(doc)
				return err
			}
			e, err := anchorsSetup(cmd)
			if err != nil {
				return err
			}
			defer e.close()
			if profile == "" {
				profile = e.cfg.DefaultProfile
			}
			p, ok := e.cfg.Profiles[profile]
			if !ok {
				names := make([]string, 0, len(e.cfg.Profiles))
				for n := range e.cfg.Profiles {
					names = append(names, n)
				}
				slices.Sort(names)
				return fmt.Errorf("no profile %q in the configuration (profiles: %v)", profile, names)
			}
			doc, err := anchors.TrustPolicy(anchors.PolicyInput{CNRules: p.CN, DNSRules: p.DNS, IssuerCN: e.ca.inter.Subject.CommonName,
				TrustAnchorARN: e.acfg.TrustAnchorARN})
			if err != nil {
				return err
			}
			_, err = out.Write(doc)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "", "lanyard profile (default: default_profile)")
	f.StringSliceVar(&sourceIPs, "source-ip", nil, "CIDR (or address) calls may come from; repeatable; implies --session")
	f.BoolVar(&session, "session", false, "print the profile session policy instead of the role trust policy")
	return cmd
}
