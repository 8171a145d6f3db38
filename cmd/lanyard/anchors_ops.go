package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/caclient"
)

// newAnchorsSwitchCmd returns `lanyard anchors disable` (on) or `enable`.
func newAnchorsSwitchCmd(on bool) *cobra.Command {
	var reason string
	use, short := "enable", "Release the kill switch: enable the trust anchor and profile again"
	if on {
		use, short = "disable", "Kill switch: disable the trust anchor and profile, so every host's CreateSession is refused at once"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

The kill switch disables the trust anchor and the profile in IAM Roles Anywhere
and tags both ` + anchors.KillSwitchTag + ` (time and reason), so that no sync (this
CLI, the server's background loop, another replica) turns them back on: they
stay disabled, and the dashboard and "anchors status" say so, until
"lanyard anchors enable". Credentials already handed out stay valid until they
expire (at most the profile's duration); revoke certificates too if keys leaked.`,
		Args: cobra.NoArgs,
		RunE: runAnchors(func(cmd *cobra.Command, e *anchorsEnv) error {
			s, err := e.syncer(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.SetKillSwitch(cmd.Context(), on, reason); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if on {
				fmt.Fprintf(out, "kill switch ENGAGED: trust anchor %s and profile %s disabled; every CreateSession is refused\n", s.TrustAnchorARN(), s.ProfileARN())
			} else {
				fmt.Fprintf(out, "kill switch released: trust anchor %s and profile %s enabled\n", s.TrustAnchorARN(), s.ProfileARN())
			}
			return nil
		}),
	}
	if on {
		cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the tag and the log)")
	}
	return cmd
}

func newAnchorsExplainCmd() *cobra.Command {
	var certFile, cn, roleARN, policyFile, sourceIP, profile string
	cmd := &cobra.Command{
		Use:   "explain (--cert FILE | --cn NAME) [--role ARN] [--policy FILE]",
		Short: "Explain whether a certificate would get credentials, and why not",
		Long: `Runs the checks CreateSession makes, on the live trust anchor and profile
(enabled, chain to the anchor's bundle, the anchor's enabled CRLs, the role in
the profile), prints the session tags the certificate yields under the profile's
attribute mappings, evaluates the role's trust policy (lanyard's generated one,
or --policy FILE) statement by statement, and gives the verdict with its
reason. The Roles Anywhere emulator evaluates with the same code.

--cert takes a PEM file: the certificate, then (optionally) its chain, as in
fullchain.pem. --cn stands for a certificate this CA would issue (chain and
revocation are then not checked). --source-ip sets aws:SourceIp for policies
that test it. Exits 1 when CreateSession would be refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (certFile == "") == (cn == "") {
				return errors.New("give exactly one of --cert FILE or --cn NAME")
			}
			in := anchors.ExplainInput{CN: cn, RoleARN: roleARN}
			if certFile != "" {
				data, err := os.ReadFile(certFile)
				if err != nil {
					return err
				}
				certs, err := caclient.ParseCertificates(data)
				if err != nil {
					return fmt.Errorf("%s: %w", certFile, err)
				}
				if len(certs) == 0 {
					return fmt.Errorf("%s holds no certificate", certFile)
				}
				in.Leaf, in.Chain = certs[0], append([]*x509.Certificate(nil), certs[1:]...)
			}
			if policyFile != "" {
				doc, err := os.ReadFile(policyFile)
				if err != nil {
					return err
				}
				in.Policy = doc
			}
			if sourceIP != "" {
				a, err := netip.ParseAddr(sourceIP)
				if err != nil {
					return fmt.Errorf("--source-ip %q: %w", sourceIP, err)
				}
				in.SourceIP = a
			}
			e, err := anchorsSetup(cmd)
			if err != nil {
				return err
			}
			defer e.close()
			if in.Policy == nil {
				if profile == "" {
					profile = e.cfg.DefaultProfile
				}
				p, ok := e.cfg.Profiles[profile]
				if !ok {
					return fmt.Errorf("no profile %q in the configuration (give --profile or --policy)", profile)
				}
				in.PolicyCNRules = p.CN
			}
			s, err := e.syncer(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			ex, err := s.Explain(cmd.Context(), in)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), ex)
			if !ex.Allowed {
				// Exit status 1, for scripts that check before deploying.
				return errors.New("CreateSession would be refused")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&certFile, "cert", "", "certificate PEM file (then its chain, optionally)")
	f.StringVar(&cn, "cn", "", "a common name this CA would issue")
	f.StringVar(&roleARN, "role", "", "the role asked for (default anchors.role_arn)")
	f.StringVar(&policyFile, "policy", "", "the role's trust policy JSON (default: lanyard's generated one)")
	f.StringVar(&profile, "profile", "", "lanyard profile whose CN rules the generated policy allows (default: default_profile)")
	f.StringVar(&sourceIP, "source-ip", "", "the address CreateSession comes from (aws:SourceIp)")
	return cmd
}

func newAnchorsSubjectsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "subjects",
		Short: "Reconcile Roles Anywhere's subjects with lanyard's inventory",
		Long: `Reads Roles Anywhere's subjects (ListSubjects, GetSubject: which certificates
authenticated, when, refused or not) and flags: certificates that authenticated
but lanyard never issued; revoked certificates seen after the CRL listing them
reached the anchor; valid enrollments never used. Needs the store (run it where
the store is readable; with serve holding a bbolt store, stop it or use the
dashboard's panel).`,
		Args: cobra.NoArgs,
		RunE: runAnchors(func(cmd *cobra.Command, e *anchorsEnv) error {
			if e.db == nil {
				return fmt.Errorf("the subjects report needs lanyard's store (%s)", e.from)
			}
			s, err := e.syncer(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := s.Subjects(cmd.Context(), anchors.StoreInventory{DB: e.db})
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), rep)
			return nil
		}),
	}
}
