package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/restore"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

func newRestoreCmd() *cobra.Command {
	var crlFiles []string
	var noAnchor, allowNoCRL, dryRun bool
	cmd := &cobra.Command{
		Use:   "restore BACKUP [--crl FILE]... [--dry-run]",
		Short: "Put a store backup back in place without un-revoking anything (offline)",
		Long: `restore replaces the store with BACKUP (taken with lanyard backup), offline:
stop lanyard serve first. A backup is older than what was published since, so
restore re-applies the revocations and the CRL number of the last published
CRLs — the one kept in the store being replaced, the trust anchor's (when the
anchors sync is configured and reachable), and any --crl FILE (DER or PEM) —
after checking each is signed by this CA. Revoked certificates the backup does
not know get a placeholder record so the CRL keeps listing them; the next CRL
is numbered above every CRL given. The backup's unused enrollment tokens are
withdrawn (they may have been redeemed after the backup), and tokens minted
after the backup are not in it, so they are refused. The replaced store is kept
as <store>.before-restore-<time>. --dry-run prints what would be re-applied.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			sources, err := restoreSources(cmd.Context(), cfg, crlFiles, noAnchor, out)
			if err != nil {
				return err
			}
			issuers, err := crlIssuers(cfg.CADir)
			if err != nil {
				return err
			}
			rep, err := restore.Restore(cmd.Context(), restore.Options{
				Backup: args[0], Store: cfg.Store, CRLs: sources, AllowNoCRL: allowNoCRL, Issuers: issuers,
				MaxValidity: maxValidity(cfg), DryRun: dryRun, Now: cliNow(), Actor: "admin:cli",
			})
			if errors.Is(err, restore.ErrNoCRL) {
				return fmt.Errorf("%w: give the last CRL with --crl FILE (for example a copy of /crl), or --allow-no-crl if nothing was revoked since the backup", err)
			}
			if err != nil {
				return err
			}
			printRestore(out, args[0], cfg.Store, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&crlFiles, "crl", nil, "a published CRL to re-apply (DER or PEM; repeatable)")
	f.BoolVar(&noAnchor, "no-anchor", false, "do not ask the trust anchor for its CRL")
	f.BoolVar(&allowNoCRL, "allow-no-crl", false, "restore even when no published CRL is available")
	f.BoolVar(&dryRun, "dry-run", false, "print what would be re-applied; change nothing")
	return cmd
}

// restoreSources gathers the published CRLs: the store being replaced,
// the trust anchor, the files given.
func restoreSources(ctx context.Context, cfg *config.Config, files []string, noAnchor bool, out io.Writer) ([]restore.Source, error) {
	var sources []restore.Source
	var anchorARN string
	if _, err := os.Stat(cfg.Store); err == nil {
		db, err := openOffline(ctx, cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("the store %s is in use or damaged (stop lanyard serve first): %w", cfg.Store, err)
		}
		if der, err := revocation.StoredCRL(db); err == nil {
			sources = append(sources, restore.Source{Name: "the replaced store " + cfg.Store, Data: der})
		} else if !errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(out, "warning: the replaced store's CRL: %v\n", err)
		}
		if st, err := anchors.LoadStatus(db); err == nil {
			anchorARN = st.TrustAnchorARN
		}
		db.Close()
	}
	if cfg.Anchors.Enabled && !noAnchor {
		acfg, err := app.AnchorsConfig(cfg.Anchors)
		if err == nil && acfg.TrustAnchorARN == "" {
			acfg.TrustAnchorARN = anchorARN
		}
		var data []byte
		if err == nil {
			data, err = anchorCRL(ctx, cfg, acfg)
		}
		switch {
		case err != nil:
			fmt.Fprintf(out, "warning: the trust anchor's CRL is not available (%v); using the other sources\n", err)
		case data != nil:
			sources = append(sources, restore.Source{Name: "the trust anchor " + acfg.TrustAnchorARN, Data: data})
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--crl: %w", err)
		}
		sources = append(sources, restore.Source{Name: f, Data: data})
	}
	return sources, nil
}

// anchorCRL fetches the trust anchor's CRL (nil if it has none).
func anchorCRL(ctx context.Context, cfg *config.Config, acfg anchors.Config) ([]byte, error) {
	if acfg.TrustAnchorARN == "" {
		return nil, errors.New("no trust anchor ARN known")
	}
	c, err := anchorsLoadCA(cfg.CADir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := anchors.NewClient(ctx, acfg)
	if err != nil {
		return nil, err
	}
	r, err := anchors.New(acfg, client, c, nil, nil, newLogger("error")).RemoteCRL(ctx)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, nil
	}
	return r.Data, nil
}

// crlIssuers are the CA certificates a published CRL may be signed by:
// the current intermediate and the retired ones still publishing CRLs.
func crlIssuers(caDir string) ([]*x509.Certificate, error) {
	st, err := ca.ReadState(caDir)
	if err != nil {
		return nil, err
	}
	return st.Issuers(), nil
}

// maxValidity bounds how long any certificate this CA issued lives: the
// longest profile max_ttl, the admin credential and the TLS certificates.
func maxValidity(cfg *config.Config) time.Duration {
	d := max(ca.AdminValidity, ca.DefaultTLSValidity)
	for _, p := range cfg.Profiles {
		d = max(d, p.MaxTTL)
	}
	return d
}

func printRestore(out io.Writer, backup, storePath string, rep *restore.Report) {
	if rep.DryRun {
		fmt.Fprintf(out, "dry run: restoring %s to %s would re-apply:\n", backup, storePath)
	} else {
		fmt.Fprintf(out, "restored %s to %s, re-applying:\n", backup, storePath)
	}
	if !rep.BackupTakenAt.IsZero() {
		fmt.Fprintf(out, "  backup's last activity: %s\n", rep.BackupTakenAt.UTC().Format(time.RFC3339))
	}
	if len(rep.CRLs) == 0 {
		fmt.Fprintln(out, "  no published CRL (--allow-no-crl): revocations after the backup are NOT re-applied")
	}
	for _, c := range rep.CRLs {
		fmt.Fprintf(out, "  CRL #%d of %s (%d entries) from %s\n", c.Number, c.ThisUpdate.UTC().Format(time.RFC3339), c.Entries, c.Source)
	}
	fmt.Fprintf(out, "  %d revocations re-applied to certificates the backup held as valid\n", len(rep.Revoked))
	for _, s := range rep.Revoked {
		fmt.Fprintf(out, "    %s\n", s)
	}
	fmt.Fprintf(out, "  %d revoked certificates unknown to the backup kept on the CRL (placeholder records)\n", len(rep.Placeholders))
	for _, s := range rep.Placeholders {
		fmt.Fprintf(out, "    %s\n", s)
	}
	fmt.Fprintf(out, "  %d revocations the backup already had\n", rep.AlreadyRevoked)
	fmt.Fprintf(out, "  CRL number %d → %d: the next CRL is #%d\n", rep.CRLNumberBefore, rep.CRLNumberAfter, rep.CRLNumberAfter+1)
	fmt.Fprintf(out, "  %d unused enrollment tokens of the backup withdrawn (issue new ones)\n", len(rep.TokensWithdrawn))
	fmt.Fprintln(out, "  tokens minted after the backup are not in it and will be refused")
	fmt.Fprintln(out, "  certificates issued after the backup have no record: their hosts must enroll again")
	if rep.MovedAside != "" {
		fmt.Fprintf(out, "the replaced store is kept as %s\n", rep.MovedAside)
	}
	if !rep.DryRun {
		fmt.Fprintln(out, "recorded in the restored store's audit log (action restore)")
	}
}
