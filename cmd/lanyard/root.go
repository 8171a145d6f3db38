package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/lanyard/lanyard/admincred"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/clock"
)

// version is set with -ldflags "-X main.version=…".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "lanyard",
		Short:         "A private CA for short-lived IAM Roles Anywhere client certificates",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().String("config", "", "configuration file (default ./lanyard.yaml, else ./.lanyard/lanyard.yaml)")
	root.AddCommand(newInitCmd(), newServeCmd(), newTokenCmd(), newEnrollCmd(), newCertsCmd(), newRevokeCmd(),
		newMigrateCmd(), newBackupCmd(), newEmulatorCmd(), newAdminCmd(), newAgentCmd(), newRenewCmd(), newExecHelperCmd(), newAnchorsCmd(), newCredentialProcessCmd(), newDoctorCmd(),
		newTidyCmd(), newStoreCmd(), newRestoreCmd(), newCACmd(), newACMECmd())
	return root
}

// findConfig returns the configuration file to use: --config, then
// ./lanyard.yaml, then the dev folder's .lanyard/lanyard.yaml; "" if none.
func findConfig(cmd *cobra.Command) string {
	if p, _ := cmd.Flags().GetString("config"); p != "" {
		return p
	}
	if p := os.Getenv("LANYARD_CONFIG"); p != "" {
		return p
	}
	for _, p := range []string{config.FileName, filepath.Join(config.DevDir, config.FileName)} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// loadConfig reads and validates the configuration.
func loadConfig(cmd *cobra.Command, v *viper.Viper) (*config.Config, string, error) {
	if v == nil {
		v = config.NewViper()
	}
	path := findConfig(cmd)
	cfg, err := config.Load(v, path)
	if err != nil {
		return nil, path, err
	}
	return cfg, path, nil
}

// cliNow is the clock of the command line. cmd is the command line's
// composition root: here it chooses the system clock, and every command reads
// the time through cliNow (the server's clock is app.Options.Now).
func cliNow() time.Time { return clock.System{}.Now() }

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// warnAdminExpiry prints on stderr, for every admin command, that the
// admin certificate ends within admincred.WarnBefore.
func warnAdminExpiry(cmd *cobra.Command, leaf *x509.Certificate) {
	if leaf == nil {
		return
	}
	if w := admincred.ExpiryWarning(leaf, cliNow()); w != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
}

// adminClients connects to the configured CA with the admin credential.
func adminClients(cmd *cobra.Command) (*caclient.Clients, *config.Config, error) {
	cfg, path, err := loadConfig(cmd, nil)
	if err != nil {
		return nil, nil, err
	}
	if path == "" {
		return nil, nil, errors.New("no configuration found: run in the folder where `lanyard serve --dev` ran, or pass --config")
	}
	p := ca.PathsIn(cfg.CADir)
	cert, err := ca.LoadAdminCredential(p)
	if err != nil {
		return nil, nil, err
	}
	warnAdminExpiry(cmd, cert.Leaf)
	roots, err := os.ReadFile(p.RootCert)
	if err != nil {
		return nil, nil, fmt.Errorf("CA root: %w", err)
	}
	cl, err := caclient.New(cfg.URL, roots, &cert)
	if err != nil {
		return nil, nil, err
	}
	return cl, cfg, nil
}
