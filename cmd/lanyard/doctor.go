package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/renewal/doctor"
)

// newDoctorCmd is `lanyard doctor --dir DIR [--ca URL] [--endpoint …]
// [--aws-profile NAME]`: one verdict line per check of an enrolled host,
// exit status 1 if any check fails.
func newDoctorCmd() *cobra.Command {
	var o doctor.Options
	cmd := &cobra.Command{
		Use:   "doctor --dir DIR [--ca URL] [--endpoint URL] [--aws-profile NAME]",
		Short: "Check an enrolled host end to end, one verdict per line",
		Long: `doctor checks a host folder and prints one line per check: files present and
current resolving, certificate matching its key, permissions, the CA reachable
(TLS verified with DIR/ca.pem), the chain verifying to the root the CA serves,
time left and the next renewal window, the CN still allowed by its profile, the
certificate not on the CA's CRL, the clock against the CA's, the AWS config
profile well formed with its binary found, and, with --endpoint, a real
CreateSession. It changes nothing. Exit status 1 if any line says FAIL.

The CA URL, the AWS profile and the Roles Anywhere ARNs default to what enroll
recorded in DIR/enrollment.json.`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Dir == "" {
				return errors.New("doctor: --dir is required")
			}
			findings := doctor.Check(cmd.Context(), o)
			w := cmd.OutOrStdout()
			for _, f := range findings {
				fmt.Fprintln(w, f.String())
			}
			if doctor.Failed(findings) {
				return exitError(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "host folder to check")
	f.StringVar(&o.CAURL, "ca", "", "CA URL (default: DIR/enrollment.json's)")
	f.StringVar(&o.Endpoint, "endpoint", "", "Roles Anywhere endpoint: also try a real CreateSession there")
	f.StringVar(&o.TrustAnchorARN, "trust-anchor-arn", "", "trust anchor ARN for CreateSession (default: enrollment.json's)")
	f.StringVar(&o.ProfileARN, "profile-arn", "", "Roles Anywhere profile ARN for CreateSession (default: enrollment.json's)")
	f.StringVar(&o.RoleARN, "role-arn", "", "role ARN for CreateSession (default: enrollment.json's)")
	f.StringVar(&o.Region, "region", "", "signing region for CreateSession (default: the trust anchor ARN's)")
	f.StringVar(&o.AWSProfile, "aws-profile", "", "AWS config profile to check (default: enrollment.json's)")
	f.StringVar(&o.AWSConfigFile, "aws-config-file", "", "AWS config file (default: enrollment.json's, else $AWS_CONFIG_FILE or ~/.aws/config)")
	f.DurationVar(&o.Timeout, "timeout", doctor.DefaultTimeout, "timeout of each request to the CA")
	return cmd
}
