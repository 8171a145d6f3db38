package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/app"
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
	cfg       *config.Config
	ca        *anchorsCA
	acfg      anchors.Config   // the --target's
	all       []anchors.Config // every target, the default first
	persisted *anchors.Status  // nil if unknown
	from      string           // where persisted came from
	db        store.Store      // nil unless the store could be opened
}

func (e *anchorsEnv) close() {
	if e.db != nil {
		e.db.Close()
	}
}

// anchorsSetup loads the configuration and the CA, and the persisted sync
// status: from the running server if there is one (admin credential),
// else from the store (when serve does not hold it).
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
	if st, err := anchorsStatusFromServer(cmd); err == nil && target == "" {
		e.persisted, e.from = st, "the running server"
	} else {
		db, derr := anchorsOpenStore(cfg.Store)
		switch {
		case derr != nil:
			e.from = fmt.Sprintf("nowhere: the server did not answer (%v) and %v", err, derr)
		default:
			e.db = db
			e.from = "the store " + cfg.Store
			if st, err := anchors.LoadStatusFor(db, target); err == nil {
				e.persisted = st
			}
		}
	}
	if e.acfg.TrustAnchorARN == "" && e.persisted != nil {
		e.acfg.TrustAnchorARN = e.persisted.TrustAnchorARN
		if e.acfg.ProfileARN == "" {
			e.acfg.ProfileARN = e.persisted.ProfileARN
		}
	}
	return e, nil
}

// anchorsStatusFromServer asks the running server for its sync status.
func anchorsStatusFromServer(cmd *cobra.Command) (*anchors.Status, error) {
	cl, _, err := adminClients(cmd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.URL+app.AnchorsStatusPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := cl.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", app.AnchorsStatusPath, resp.Status)
	}
	var st anchors.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s: %w", app.AnchorsStatusPath, err)
	}
	return &st, nil
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := anchorsSetup(cmd)
			if err != nil {
				return err
			}
			defer e.close()
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
		},
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := anchorsSetup(cmd)
			if err != nil {
				return err
			}
			defer e.close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "recorded status (from %s):\n", e.from)
			if st := e.persisted; st == nil {
				fmt.Fprintf(out, "  none\n")
			} else {
				anchorsPrintStatus(out, st)
			}
			if !cmd.Flags().Changed("target") && e.db != nil {
				// The other targets' recorded statuses (live: --target).
				for _, c := range e.all[1:] {
					fmt.Fprintf(out, "\ntarget %s, recorded:\n", c.Target)
					if st, err := anchors.LoadStatusFor(e.db, c.Target); err != nil {
						fmt.Fprintf(out, "  none (%v)\n", err)
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
		},
	}
}

func anchorsEndpointName(c anchors.Config) string {
	if c.Endpoint != "" {
		return c.Endpoint
	}
	return "region " + c.Region
}

func anchorsPrintStatus(w io.Writer, st *anchors.Status) {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format(time.RFC3339) + " (" + cliNow().Sub(t).Round(time.Second).String() + " ago)"
	}
	fmt.Fprintf(w, "  trust anchor:  %s\n  profile:       %s\n", st.TrustAnchorARN, st.ProfileARN)
	fmt.Fprintf(w, "  last sync:     %s: %s\n", ts(st.LastSync), st.LastResult)
	if st.LastError != "" {
		fmt.Fprintf(w, "  last error:    %s\n", st.LastError)
	}
	if st.Drift != "" {
		fmt.Fprintf(w, "  drift found:   %s\n", st.Drift)
	}
	for _, c := range st.Bundle {
		fmt.Fprintf(w, "  bundle:        %s\n", c)
	}
	for _, c := range st.Foreign {
		fmt.Fprintf(w, "  foreign:       %s\n", c)
	}
	if st.KillSwitch != "" {
		fmt.Fprintf(w, "  KILL SWITCH:   engaged %s (trust anchor and profile held disabled; `lanyard anchors enable`)\n", st.KillSwitch)
	}
	for _, c := range st.Changes {
		fmt.Fprintf(w, "  repaired:      %s\n", c)
	}
	if sum := st.Subjects; sum != nil {
		fmt.Fprintf(w, "  subjects:      %d certificate(s) seen by AWS, %d finding(s), checked %s\n", sum.Seen, sum.Total, ts(sum.At))
		for _, f := range sum.Findings {
			fmt.Fprintf(w, "    ! %s: %s serial %s: %s\n", f.Kind, f.Subject, f.Serial.Text(16), f.Detail)
		}
		if sum.Err != "" {
			fmt.Fprintf(w, "  subjects error: %s\n", sum.Err)
		}
	}
	fmt.Fprintf(w, "  CRL at AWS:    number %d (%d entries), pushed %s\n", st.CRLNumber, st.CRLEntries, ts(st.CRLPushedAt))
	if st.CRLError != "" {
		fmt.Fprintf(w, "  CRL error:     CRL %d at %s: %s\n", st.CRLErrorNumber, ts(st.CRLErrorAt), st.CRLError)
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
