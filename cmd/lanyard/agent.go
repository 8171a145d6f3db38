package main

import (
	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/renewal/agent"
)

// newAgentCmd is `lanyard agent --config FILE`.
func newAgentCmd() *cobra.Command {
	var cfgPath, logLevel string
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Keep enrolled host folders fresh: renew in the CA's window, run hooks, hand files to aws_signing_helper",
		Long: `agent keeps one or more host folders (written by lanyard enroll) fresh. For each
folder it asks the CA for the renewal window, renews at a random moment inside it
(new key, same type; over mTLS with the current certificate), retries with capped
exponential backoff when the CA cannot be reached, notices a suspend that carried
the host past the moment, runs post-renewal hooks, and restarts a supervised
aws_signing_helper serve on the new version. The configuration is YAML; see
deploy/agent.example.yaml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return agent.Serve(cmd.Context(), cfgPath, logLevel)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "agent configuration file (YAML)")
	cmd.Flags().StringVar(&logLevel, "log-level", "", "debug, info, warn or error (default: the file's log_level, else info)")
	return cmd
}
