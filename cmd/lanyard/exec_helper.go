package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/renewal/agent"
)

// newExecHelperCmd is `lanyard exec-helper --dir DIR [--helper PATH] --
// <helper flags>`: the credential_process line of a profile written with
// --signer aws_signing_helper.
func newExecHelperCmd() *cobra.Command {
	var dir, helper string
	cmd := &cobra.Command{
		Use:   "exec-helper --dir DIR [--helper PATH] -- <aws_signing_helper flags>",
		Short: "Run aws_signing_helper credential-process on one resolved version of DIR",
		Long: `exec-helper resolves DIR/current once and replaces itself (exec) with

  aws_signing_helper credential-process --certificate DIR/versions/N/cert.pem \
    --private-key DIR/versions/N/privkey.pem --intermediates DIR/versions/N/chain.pem <flags>

The helper reads the certificate and the key at two different moments; because
version folders never change, a renewal in between cannot pair a new certificate
with an old key. The helper is --helper, else $LANYARD_SIGNING_HELPER, else
aws_signing_helper on PATH. exec-helper prints nothing on stdout: stdout is the
credential JSON.`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("exec-helper: --dir is required")
			}
			bin, err := agent.FindHelper(helper)
			if err != nil {
				return fmt.Errorf("exec-helper: %w", err)
			}
			hargs, err := agent.ResolveHelperArgs(dir, args)
			if err != nil {
				return fmt.Errorf("exec-helper: %w", err)
			}
			argv := append([]string{bin}, hargs...)
			if err := syscall.Exec(bin, argv, os.Environ()); err != nil {
				return fmt.Errorf("exec-helper: exec %s: %w", bin, err)
			}
			return nil // not reached
		},
	}
	cmd.SetOut(os.Stderr) // usage and help never pollute the credential JSON on stdout
	cmd.Flags().StringVar(&dir, "dir", "", "host folder")
	cmd.Flags().StringVar(&helper, "helper", "", "aws_signing_helper path (default $LANYARD_SIGNING_HELPER, else PATH)")
	return cmd
}
