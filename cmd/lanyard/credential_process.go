package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/renewal/credproc"
)

// newCredentialProcessCmd is `lanyard credential-process --dir DIR
// --trust-anchor-arn … --profile-arn … --role-arn … [--region] [--endpoint]
// [--session-duration 3600] [--role-session-name]`: the built-in
// credential_process of a profile written with --signer lanyard.
func newCredentialProcessCmd() *cobra.Command {
	var o credproc.Options
	cmd := &cobra.Command{
		Use:   "credential-process --dir DIR --trust-anchor-arn ARN --profile-arn ARN --role-arn ARN",
		Short: "Print temporary AWS credentials for DIR's certificate (IAM Roles Anywhere CreateSession)",
		Long: `credential-process resolves DIR/current once, loads the certificate, chain and key
of that one version folder together, signs IAM Roles Anywhere's CreateSession with
them, and prints the credential_process JSON (Version 1) on stdout with no trailing
newline, as aws_signing_helper credential-process does. A renewal swapping
DIR/current at the same moment cannot pair a new certificate with an old key.

The region defaults to the trust anchor ARN's, the endpoint to
https://rolesanywhere.<region>.amazonaws.com. 5xx and throttling answers are
retried (3 attempts in all). On error it prints one line on stderr and exits 1.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := credproc.Credentials(cmd.Context(), o)
			if err == nil {
				var b []byte
				if b, err = json.Marshal(out); err == nil {
					_, err = os.Stdout.Write(b)
				}
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "lanyard credential-process: "+strings.Join(strings.Fields(err.Error()), " "))
				return exitError(1)
			}
			return nil
		},
	}
	cmd.SetOut(os.Stderr) // usage and help never pollute the credential JSON on stdout
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return errors.New("credential-process: " + err.Error())
	})
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "host folder (DIR/current -> versions/N)")
	f.StringVar(&o.TrustAnchorARN, "trust-anchor-arn", "", "Roles Anywhere trust anchor ARN")
	f.StringVar(&o.ProfileARN, "profile-arn", "", "Roles Anywhere profile ARN")
	f.StringVar(&o.RoleARN, "role-arn", "", "IAM role ARN to assume")
	f.StringVar(&o.Region, "region", "", "signing region (default: the trust anchor ARN's)")
	f.StringVar(&o.Endpoint, "endpoint", "", "Roles Anywhere endpoint (default https://rolesanywhere.<region>.amazonaws.com)")
	f.IntVar(&o.DurationSeconds, "session-duration", credproc.DefaultDurationSeconds, "session duration in seconds (900-43200)")
	f.StringVar(&o.RoleSessionName, "role-session-name", "", "role session name (the profile must accept it)")
	return cmd
}
