package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/internal/pembundle"
)

// newEmulatorCmd returns `lanyard emulator`: the local IAM Roles Anywhere
// emulator (package anchors/emulator) as a standalone server, for
// demos and docker-compose.
func newEmulatorCmd() *cobra.Command {
	var (
		listen, accessKey, secretKey, region, account string
		seedFrom, roleArn, tlsCert, tlsKey            string
	)
	cmd := &cobra.Command{
		Use:   "emulator",
		Short: "Run a local IAM Roles Anywhere emulator (control plane and CreateSession)",
		Long: `Runs a local emulator of AWS IAM Roles Anywhere: the trust-anchor, profile and
CRL APIs (SigV4 with --access-key/--secret-key) and CreateSession (POST /sessions),
verified as the service does. Point the AWS SDK or aws_signing_helper at it with
--endpoint. State lives in memory only.

With --seed-anchor-from, an enabled trust anchor holding the PEM certificates of
that file and an enabled profile allowing --role-arn are created at start, and
their ARNs printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (tlsCert == "") != (tlsKey == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			emu := emulator.New(emulator.Options{
				Region: region, AccountID: account, AccessKeyID: accessKey, SecretAccessKey: secretKey, Logger: logger,
			})
			out := cmd.OutOrStdout()
			if seedFrom != "" {
				data, err := os.ReadFile(seedFrom)
				if err != nil {
					return err
				}
				roots, err := pembundle.ParseNonEmpty(data)
				if err != nil {
					return fmt.Errorf("%s: %w", seedFrom, err)
				}
				anchorArn, profileArn, err := emu.Seed(roots, roleArn)
				if err != nil {
					return fmt.Errorf("seeding from %s: %w", seedFrom, err)
				}
				fmt.Fprintf(out, "trust anchor: %s\nprofile:      %s\nrole:         %s\n", anchorArn, profileArn, roleArn)
			}

			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			scheme := "http"
			if tlsCert != "" {
				scheme = "https"
			}
			fmt.Fprintf(out, "Roles Anywhere emulator on %s://%s (region %s, access key %s)\n", scheme, ln.Addr(), emu.Region(), emu.AccessKeyID())

			srv := &http.Server{Handler: emu.Handler(), ReadHeaderTimeout: 10 * time.Second}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			errc := make(chan error, 1)
			go func() {
				if tlsCert != "" {
					errc <- srv.ServeTLS(ln, tlsCert, tlsKey)
				} else {
					errc <- srv.Serve(ln)
				}
			}()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(shutdownCtx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:9443", "address to listen on")
	f.StringVar(&accessKey, "access-key", emulator.DefaultAccessKeyID, "the access key ID the control plane accepts")
	f.StringVar(&secretKey, "secret-key", emulator.DefaultSecretAccessKey, "the secret access key of --access-key")
	f.StringVar(&region, "region", emulator.DefaultRegion, "region served (ARNs and SigV4 scope)")
	f.StringVar(&account, "account-id", emulator.DefaultAccountID, "account ID used in ARNs")
	f.StringVar(&seedFrom, "seed-anchor-from", "", "PEM file of 1-2 CA certificates: create an enabled trust anchor and profile at start")
	f.StringVar(&roleArn, "role-arn", "arn:aws:iam::"+emulator.DefaultAccountID+":role/lanyard", "role the seeded profile allows")
	f.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM, with --tls-key)")
	f.StringVar(&tlsKey, "tls-key", "", "private key of --tls-cert")
	return cmd
}
