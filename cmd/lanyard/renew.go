package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/renewal/agent"
)

// newRenewCmd is `lanyard renew --dir DIR [--force] [--allow-key-type-change]`.
func newRenewCmd() *cobra.Command {
	var dir, keyType, tokenFile, logLevel string
	var force, allowKeyTypeChange bool
	var keep int
	cmd := &cobra.Command{
		Use:   "renew --dir DIR [--force] [--allow-key-type-change]",
		Short: "Renew an enrolled host folder once (when its renewal window has come, or now with --force)",
		Long: `renew renews the host folder DIR once: a new key of the same type, a renewal over
mTLS with the current certificate, and a new version folder swapped in atomically
(the previous version stays current on any failure). Without --force it renews
only once the CA's renewal window has started; before that it prints the window
and exits 0. An expired certificate cannot renew itself: pass
--reenroll-token-file (a new enrollment token) or run lanyard enroll again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--dir is required")
			}
			ctx := cmd.Context()
			w := cmd.OutOrStdout()
			if !force {
				st, err := agent.CheckDir(ctx, dir)
				if err != nil {
					return err
				}
				if st.WindowErr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: cannot ask the CA for the renewal window (%v); using the default window\n", st.WindowErr)
				}
				now := cliNow()
				if now.Before(st.Window.Start) && now.Before(st.Version.Cert.NotAfter) {
					fmt.Fprintf(w, "not renewing %s yet: serial %s is valid until %s; renewal window %s to %s (reason %s). Use --force to renew now.\n",
						dir, st.Serial, st.Version.Cert.NotAfter.Local().Format(time.RFC3339),
						st.Window.Start.Local().Format(time.RFC3339), st.Window.End.Local().Format(time.RFC3339), st.Window.Reason)
					return nil
				}
			}
			res, err := agent.RenewDir(ctx, dir, agent.RenewOptions{
				KeyType: keyType, AllowKeyTypeChange: allowKeyTypeChange,
				ReenrollTokenFile: tokenFile, Keep: keep, Logger: newLogger(logLevel),
			})
			if err != nil {
				return err
			}
			verb := "renewed"
			if res.Reenrolled {
				verb = "enrolled again (the certificate had expired)"
			}
			fmt.Fprintf(w, "%s: serial %s (was %s), valid until %s\n", verb, res.Serial, res.PreviousSerial, res.NotAfter.Local().Format(time.RFC3339))
			fmt.Fprintf(w, "  %s/current -> versions/%s (was %s)\n", res.Dir, res.Version, res.PreviousVersion)
			fmt.Fprintf(w, "  next renewal window %s to %s (reason %s)\n",
				res.Window.Start.Local().Format(time.RFC3339), res.Window.End.Local().Format(time.RFC3339), res.Window.Reason)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "host folder (as lanyard enroll --out wrote it)")
	f.BoolVar(&force, "force", false, "renew now, whatever the renewal window says")
	f.BoolVar(&allowKeyTypeChange, "allow-key-type-change", false, "allow --key-type to differ from the current key's type (restart aws_signing_helper serve afterwards)")
	f.StringVar(&keyType, "key-type", "", "key type of the new key (default: the current key's type)")
	f.StringVar(&tokenFile, "reenroll-token-file", "", "enrollment token to use if the certificate has expired")
	f.IntVar(&keep, "keep", 0, "versions to keep (default 5)")
	f.StringVar(&logLevel, "log-level", "warn", "log level of the JSON log on stderr")
	return cmd
}
