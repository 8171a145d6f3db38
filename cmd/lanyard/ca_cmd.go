package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/store"
)

// newCACmd is `lanyard ca …`: the CA's own certificates and keys.
func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The CA's own certificates: rotate the intermediate, show where a rotation stands",
	}
	cmd.AddCommand(newCARotateIntermediateCmd(), newCAStatusCmd())
	return cmd
}

func newCARotateIntermediateCmd() *cobra.Command {
	var rootKey, passFile string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "rotate-intermediate [--root-key FILE] [--dry-run]",
		Short: "Replace the issuing intermediate with a new one under the same root (offline)",
		Long: `rotate-intermediate makes a new intermediate key (where the old one is: a key
file, softkms, or a new object in the same PKCS#11 token) and certificate,
signed by the root key, and retires the old intermediate to ca/retired/. Run it
with lanyard serve stopped; the server issues from the new intermediate as soon
as it starts again. Certificates of the old intermediate stay valid to their
end and renew onto the new one; lanyard ca status shows how many are left and
when the old key can be destroyed. Recorded in the audit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			if passFile == "" {
				passFile = cfg.PassphraseFile
			}
			pass, err := readPassphrase(passFile)
			if err != nil {
				return err
			}
			// The store records the rotation, and being able to open it
			// means no server is issuing from the old intermediate.
			db, err := store.Open(cfg.Store, store.Options{Timeout: time.Second, NoBackup: true, Logger: newLogger("error")})
			if err != nil {
				return fmt.Errorf("stop lanyard serve first (it loads the new intermediate when it starts): %w", err)
			}
			defer db.Close()
			res, err := ca.RotateIntermediate(ca.RotateOptions{Dir: cfg.CADir, RootKeyPath: rootKey, Passphrase: pass, DryRun: dryRun})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.DryRun {
				fmt.Fprintf(out, "dry run: would retire the intermediate %q (serial %s) to %s\n", res.Old.Subject.CommonName,
					lanyardv1.FormatSerial(res.Old.SerialNumber), res.RetiredCert)
				fmt.Fprintf(out, "and create a new %s intermediate key in %s, signed by the root; nothing changed\n", res.KeyType, res.KeyStore)
				return nil
			}
			ev := &store.AuditEvent{At: time.Now(), Actor: "admin:cli", Action: store.ActionRotateIntermediate,
				Subject: lanyardv1.FormatSerial(res.New.SerialNumber),
				Detail:  fmt.Sprintf("retired %s; new %s key in %s", lanyardv1.FormatSerial(res.Old.SerialNumber), res.KeyType, res.KeyStore)}
			if err := db.AppendAudit(cmd.Context(), ev); err != nil {
				return fmt.Errorf("the rotation is done but could not be audited: %w", err)
			}
			fmt.Fprintf(out, "new intermediate %q (serial %s), valid until %s, %s key in %s\n", res.New.Subject.CommonName,
				lanyardv1.FormatSerial(res.New.SerialNumber), res.New.NotAfter.UTC().Format(time.RFC3339), res.KeyType, res.KeyStore)
			fmt.Fprintf(out, "retired %q (serial %s) to %s; its certificates renew onto the new intermediate\n",
				res.Old.Subject.CommonName, lanyardv1.FormatSerial(res.Old.SerialNumber), res.RetiredCert)
			fmt.Fprintln(out, "start lanyard serve again to issue from it; recorded in the audit log (ca.rotate-intermediate)")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rootKey, "root-key", "", "the root key (default <ca_dir>/root.key)")
	f.StringVar(&passFile, "passphrase-file", "", "passphrase of the root key and the new intermediate key (default passphrase_file)")
	f.BoolVar(&dryRun, "dry-run", false, "say what would happen; change nothing")
	return cmd
}

func newCAStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the roots and intermediates and, per intermediate, the certificates still live",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			st, err := ca.ReadState(cfg.CADir)
			if err != nil {
				return err
			}
			db, err := store.Open(cfg.Store, store.Options{Timeout: time.Second, NoBackup: true, Logger: newLogger("error")})
			if err != nil {
				return fmt.Errorf("ca status reads the store offline (stop lanyard serve, or look at the admin page): %w", err)
			}
			defer db.Close()
			return printCAStatus(cmd.OutOrStdout(), st, db, time.Now())
		},
	}
}

// issuerUse is what ca status says about one intermediate.
type issuerUse struct {
	live     int
	lastLive time.Time
}

func printCAStatus(out io.Writer, st *ca.State, db *store.DB, now time.Time) error {
	use := map[string]*issuerUse{}
	issuers := st.Issuers()
	for _, c := range issuers {
		use[string(c.SubjectKeyId)] = &issuerUse{}
	}
	q := store.CertQuery{Status: store.StatusValid, Now: now, Limit: 1000}
	for {
		page, next, err := db.ListCerts(q)
		if err != nil {
			return err
		}
		for _, r := range page {
			c, err := x509.ParseCertificate(r.DER)
			if err != nil {
				continue // placeholders and test records carry no certificate
			}
			for _, is := range issuers {
				if bytes.Equal(c.AuthorityKeyId, is.SubjectKeyId) {
					u := use[string(is.SubjectKeyId)]
					u.live++
					if c.NotAfter.After(u.lastLive) {
						u.lastLive = c.NotAfter
					}
				}
			}
		}
		if next == "" {
			break
		}
		q.After = next
	}
	for i, r := range st.Roots {
		role := "root"
		if i > 0 {
			role = "extra root (roots.pem)"
		}
		fmt.Fprintf(out, "%-24s %q  serial %s  valid until %s\n", role, r.Subject.CommonName, lanyardv1.FormatSerial(r.SerialNumber), r.NotAfter.UTC().Format(time.RFC3339))
	}
	for i, is := range issuers {
		u := use[string(is.SubjectKeyId)]
		role := "issuing intermediate"
		if i > 0 {
			role = "retired intermediate"
		}
		fmt.Fprintf(out, "%-24s %q  serial %s  valid until %s  %d live certificates\n", role, is.Subject.CommonName,
			lanyardv1.FormatSerial(is.SerialNumber), is.NotAfter.UTC().Format(time.RFC3339), u.live)
		if i > 0 {
			if u.live == 0 {
				fmt.Fprintln(out, "    no live certificate: this rotation is finished; the retired key can be destroyed")
			} else {
				fmt.Fprintf(out, "    the last one expires %s (they renew onto the issuing intermediate); keep its key until then\n",
					u.lastLive.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}
