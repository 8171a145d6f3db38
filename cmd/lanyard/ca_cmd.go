package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/engine"
)

// newCACmd is `lanyard ca …`: the CA's own certificates and keys.
func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The CA's own certificates: rotate the intermediate or the root, show where a rotation stands, destroy retired keys",
	}
	cmd.AddCommand(newCARotateIntermediateCmd(), newCARotateRootCmd(), newCAStatusCmd(), newCADestroyRetiredKeyCmd())
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
as it starts again. With the store on PostgreSQL (several replicas sharing the
CA folder), run it while they serve, then restart the replicas one at a time:
each issues from the new intermediate once restarted, and until the last one
restarts the CRL is signed by the intermediate the leader loaded (both chain to
the same root). Refused while an earlier retired intermediate keeps its key:
IAM Roles Anywhere holds two CRLs per trust anchor (the current intermediate's
and one retired one's), so destroy that key first (destroy-retired-key, once its
certificates have expired). Certificates of the old intermediate stay valid to their
end and renew onto the new one; lanyard ca status shows how many are left and
when the old key can be destroyed. Recorded in the audit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			pass, err := readPassphrase(cmp.Or(passFile, cfg.PassphraseFile))
			if err != nil {
				return err
			}
			// The store records the rotation. On bbolt, being able to open
			// it means no server is issuing from the old intermediate; on
			// PostgreSQL the replicas are restarted afterwards (Long).
			db, err := openOffline(cmd.Context(), cfg.Store)
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
			if err := auditCLI(cmd.Context(), db, cliNow(), store.ActionRotateIntermediate, lanyardv1.FormatSerial(res.New.SerialNumber),
				fmt.Sprintf("retired %s; new %s key in %s", lanyardv1.FormatSerial(res.Old.SerialNumber), res.KeyType, res.KeyStore)); err != nil {
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

func newCARotateRootCmd() *cobra.Command {
	var rootKey, passFile string
	var dryRun, finish bool
	cmd := &cobra.Command{
		Use:   "rotate-root [--root-key FILE] [--dry-run] | --finish [--dry-run]",
		Short: "Replace the root (and the intermediate) with cross-signed new ones; --finish retires the old root (offline)",
		Long: `rotate-root starts a root rotation: a new root (its key replaces the old root key
at --root-key, the old one is kept beside it as root-<serial>.retired.key), a new
intermediate under it, and cross-certificates of both issued by the old root.
Run it with lanyard serve stopped. When the server starts again it trusts both
roots (never more than two), serves both and the new root's cross-certificate at
/roots.pem, syncs both to the trust anchor, issues from the new intermediate, and
renewal info asks every certificate of the old root to renew now, spread over
the first quarter of its lifetime (at most a day). Hosts that pinned the old
root learn the new one through its cross-certificate (the pinning rule).

--finish ends the rotation once no certificate of the old root is in use (not
revoked, not expired, and not renewed more than 15 minutes ago): the old root,
the cross-certificates and the old root's intermediates move to
ca/retired/roots/<serial>/; started again, the server trusts and serves only the
new root, the anchors sync removes the old one from the trust anchor, and hosts
drop it at their next renewal. lanyard ca status shows where a rotation stands
and when it can finish. A second rotation is refused until then. Both steps are
recorded in the audit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			db, err := openOffline(cmd.Context(), cfg.Store)
			if err != nil {
				return fmt.Errorf("stop lanyard serve first (it loads the new roots when it starts): %w", err)
			}
			defer db.Close()
			out := cmd.OutOrStdout()
			if finish {
				return finishRootRotation(cmd, out, cfg.CADir, db, dryRun)
			}
			pass, err := readPassphrase(cmp.Or(passFile, cfg.PassphraseFile))
			if err != nil {
				return err
			}
			res, err := ca.RotateRoot(ca.RootRotateOptions{Dir: cfg.CADir, RootKeyPath: rootKey, Passphrase: pass, DryRun: dryRun})
			if err != nil {
				return err
			}
			if res.DryRun {
				fmt.Fprintf(out, "dry run: would replace the root %q (serial %s) and the intermediate %q (serial %s)\n",
					res.OldRoot.Subject.CommonName, lanyardv1.FormatSerial(res.OldRoot.SerialNumber),
					res.OldIntermediate.Subject.CommonName, lanyardv1.FormatSerial(res.OldIntermediate.SerialNumber))
				fmt.Fprintf(out, "with a new %s root (key to %s, the old one kept as %s) and a new intermediate (key in %s), cross-signed by the old root; nothing changed\n",
					res.KeyType, res.RootKey, res.RetiredRootKey, res.KeyStore)
				return nil
			}
			if err := auditCLI(cmd.Context(), db, cliNow(), store.ActionRotateRoot, lanyardv1.FormatSerial(res.NewRoot.SerialNumber),
				fmt.Sprintf("old root %s, new intermediate %s (retired %s), cross-signed by the old root",
					lanyardv1.FormatSerial(res.OldRoot.SerialNumber), lanyardv1.FormatSerial(res.NewIntermediate.SerialNumber),
					lanyardv1.FormatSerial(res.OldIntermediate.SerialNumber))); err != nil {
				return fmt.Errorf("the rotation is done but could not be audited: %w", err)
			}
			fmt.Fprintf(out, "new root %q (serial %s), valid until %s, SHA-256 %s (the fingerprint for new enrollments)\n",
				res.NewRoot.Subject.CommonName, lanyardv1.FormatSerial(res.NewRoot.SerialNumber),
				res.NewRoot.NotAfter.UTC().Format(time.RFC3339), caclient.Fingerprint(res.NewRoot))
			fmt.Fprintf(out, "new intermediate %q (serial %s) under it, %s key in %s\n", res.NewIntermediate.Subject.CommonName,
				lanyardv1.FormatSerial(res.NewIntermediate.SerialNumber), res.KeyType, res.KeyStore)
			fmt.Fprintf(out, "both cross-signed by the old root %q: hosts that pinned it learn the new root at their next renewal\n", res.OldRoot.Subject.CommonName)
			fmt.Fprintf(out, "the new root key is %s; the old root key is kept as %s until the rotation is finished\n", res.RootKey, res.RetiredRootKey)
			fmt.Fprintln(out, "start lanyard serve again; `lanyard ca status` says when `lanyard ca rotate-root --finish` can retire the old root")
			fmt.Fprintln(out, "recorded in the audit log (ca.rotate-root)")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rootKey, "root-key", "", "the root key (default <ca_dir>/root.key); the new root key replaces it there")
	f.StringVar(&passFile, "passphrase-file", "", "passphrase of the root key and of the new keys (default passphrase_file)")
	f.BoolVar(&finish, "finish", false, "retire the old root, once no certificate of it is in use")
	f.BoolVar(&dryRun, "dry-run", false, "say what would happen; change nothing")
	return cmd
}

// finishRootRotation is `lanyard ca rotate-root --finish`.
func finishRootRotation(cmd *cobra.Command, out io.Writer, dir string, db store.Store, dryRun bool) error {
	now := cliNow()
	res, err := ca.FinishRootRotation(ca.FinishOptions{Dir: dir, DryRun: dryRun,
		Live: func(issuers []*x509.Certificate) (int, time.Time, error) {
			use, err := issuance.IssuerUsage(db, issuers, now)
			if err != nil {
				return 0, time.Time{}, err
			}
			var n int
			var until time.Time
			for _, u := range use {
				n += u.InUse
				if u.InUseUntil.After(until) {
					until = u.InUseUntil
				}
			}
			return n, until, nil
		}})
	if err != nil {
		return err
	}
	verb := "retired"
	if res.DryRun {
		verb = "dry run: would retire"
	}
	fmt.Fprintf(out, "%s the old root %q (serial %s) and its %d intermediate(s) to %s\n", verb, res.OldRoot.Subject.CommonName,
		lanyardv1.FormatSerial(res.OldRoot.SerialNumber), len(res.Intermediates), res.RetiredTo)
	if res.DryRun {
		fmt.Fprintln(out, "nothing changed")
		return nil
	}
	if err := auditCLI(cmd.Context(), db, now, store.ActionFinishRootRotation, lanyardv1.FormatSerial(res.OldRoot.SerialNumber),
		fmt.Sprintf("root %s alone trusted; %d intermediate(s) retired with the old root", lanyardv1.FormatSerial(res.Root.SerialNumber), len(res.Intermediates))); err != nil {
		return fmt.Errorf("the rotation is finished but could not be audited: %w", err)
	}
	fmt.Fprintf(out, "the root %q alone is trusted now; start lanyard serve again: /roots.pem and the trust anchor drop the old root, hosts drop it at their next renewal\n",
		res.Root.Subject.CommonName)
	fmt.Fprintf(out, "the old root's keys can be destroyed: %s/*.key and the retired root key beside the root key\n", res.RetiredTo)
	fmt.Fprintln(out, "recorded in the audit log (ca.rotate-root.finish)")
	return nil
}

func newCADestroyRetiredKeyCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "destroy-retired-key SERIAL [--dry-run]",
		Short: "Destroy the key of a retired intermediate no live certificate needs (offline)",
		Long: `destroy-retired-key destroys the key of the retired intermediate SERIAL (as
lanyard ca status prints it): a key file is overwritten and removed, a key in a
PKCS#11 token is deleted from the token. It refuses while any certificate the
intermediate issued is live (unexpired and unrevoked), since the retired key
signs their CRL. The intermediate's certificate stays in ca/retired. Run it with
lanyard serve stopped. Backups of the CA folder still hold a key file: destroy
those too. Recorded in the audit log.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			st, err := ca.ReadState(cfg.CADir)
			if err != nil {
				return err
			}
			var retired *x509.Certificate
			for _, r := range st.Retired {
				if lanyardv1.FormatSerial(r.SerialNumber) == strings.ToLower(args[0]) {
					retired = r
				}
			}
			if retired == nil {
				return fmt.Errorf("%w: %s (lanyard ca status lists the retired intermediates)", ca.ErrNoRetiredKey, args[0])
			}
			db, err := openOffline(cmd.Context(), cfg.Store)
			if err != nil {
				return fmt.Errorf("stop lanyard serve first (it holds the retired key while it runs): %w", err)
			}
			defer db.Close()
			now := cliNow()
			use, err := issuance.IssuerUsage(db, []*x509.Certificate{retired}, now)
			if err != nil {
				return err
			}
			if u := use[string(retired.SubjectKeyId)]; u.Live > 0 {
				return fmt.Errorf("the retired intermediate %q still has %d live certificate(s), the last expiring %s: its key signs their CRL until then",
					retired.Subject.CommonName, u.Live, u.LastLive.UTC().Format(time.RFC3339))
			}
			res, err := ca.DestroyRetiredKey(ca.DestroyOptions{Dir: cfg.CADir, Serial: args[0], DryRun: dryRun})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			where := "key file " + res.Key
			if res.InKMS {
				where = "key " + res.Key
			}
			if res.DryRun {
				fmt.Fprintf(out, "dry run: would destroy the %s of the retired intermediate %q; nothing changed\n", where, res.Subject)
				return nil
			}
			if err := auditCLI(cmd.Context(), db, now, store.ActionDestroyRetiredKey, lanyardv1.FormatSerial(retired.SerialNumber),
				"destroyed "+where); err != nil {
				return fmt.Errorf("the key is destroyed but could not be audited: %w", err)
			}
			fmt.Fprintf(out, "destroyed the %s of the retired intermediate %q; recorded in the audit log (%s)\n", where, res.Subject, store.ActionDestroyRetiredKey)
			if !res.InKMS {
				fmt.Fprintln(out, "backups of the CA folder still hold the key file: destroy them too")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be destroyed; change nothing")
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
			db, err := openOffline(cmd.Context(), cfg.Store)
			if err != nil {
				return fmt.Errorf("ca status reads the store offline (stop lanyard serve, or look at the admin page): %w", err)
			}
			defer db.Close()
			return printCAStatus(cmd.OutOrStdout(), st, db, cliNow())
		},
	}
}

// auditCLI records what an offline command (run by the admin at the
// machine, actor admin:cli) did; subject is what it acted on.
func auditCLI(ctx context.Context, db store.Store, at time.Time, action store.AuditAction, subject, detail string) error {
	return db.AppendAudit(ctx, &store.AuditEvent{At: at, Actor: "admin:cli", Action: action, Subject: subject, Detail: detail})
}

// openOffline opens the store for a CA command (either engine; on bbolt
// it gives up after one second when `lanyard serve` holds the file).
func openOffline(ctx context.Context, location string) (store.Store, error) {
	return engine.Open(ctx, location, engine.Options{Timeout: time.Second, NoBackup: true, Logger: newLogger("error")})
}

func printCAStatus(out io.Writer, st *ca.State, db store.Store, now time.Time) error {
	issuers := st.Issuers()
	use, err := issuance.IssuerUsage(db, issuers, now)
	if err != nil {
		return err
	}
	old := st.OldRoot()
	for i, r := range st.Roots {
		role := "root"
		switch {
		case i > 0 && old != nil && r.Equal(old):
			role = "old root (rotating out)"
		case i > 0:
			role = "extra root (roots.pem)"
		}
		fmt.Fprintf(out, "%-24s %q  serial %s  valid until %s\n", role, r.Subject.CommonName, lanyardv1.FormatSerial(r.SerialNumber), r.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, r := range st.RetiredRoots {
		fmt.Fprintf(out, "%-24s %q  serial %s  (a finished rotation; no longer trusted)\n", "retired root", r.Subject.CommonName, lanyardv1.FormatSerial(r.SerialNumber))
	}
	if old != nil {
		n, until := 0, time.Time{}
		var cns []string
		for _, is := range st.UnderOldRoot() {
			u := use[string(is.SubjectKeyId)]
			n += u.InUse
			cns = append(cns, u.InUseCNs...)
			if u.InUseUntil.After(until) {
				until = u.InUseUntil
			}
		}
		started := st.Cross.NotBefore.UTC().Format(time.RFC3339) // backdated a few minutes
		if n > 0 {
			fmt.Fprintf(out, "%-24s in progress since %s: %d certificate(s) under the old root still in use, until %s at the latest\n",
				"root rotation", started, n, until.UTC().Format(time.RFC3339))
			fmt.Fprintf(out, "    among them: %s\n", strings.Join(cns, ", "))
			if slices.Contains(cns, ca.AdminCommonName) {
				fmt.Fprintln(out, "    the admin credential is one: renew it (lanyard admin renew-cert) to move it to the new root")
			}
			fmt.Fprintln(out, "    renewal info asks them to renew now (spread); when none is left: lanyard ca rotate-root --finish")
		} else {
			fmt.Fprintf(out, "%-24s in progress since %s: no certificate under the old root in use; it can finish now: lanyard ca rotate-root --finish\n",
				"root rotation", started)
		}
	}
	for i, is := range issuers {
		u := use[string(is.SubjectKeyId)]
		role := "issuing intermediate"
		if i > 0 {
			role = "retired intermediate"
		}
		fmt.Fprintf(out, "%-24s %q  serial %s  valid until %s  %d live certificates\n", role, is.Subject.CommonName,
			lanyardv1.FormatSerial(is.SerialNumber), is.NotAfter.UTC().Format(time.RFC3339), u.Live)
		switch {
		case i > 0 && old != nil && is.CheckSignatureFrom(old) == nil:
			fmt.Fprintln(out, "    under the old root: it signs its CRL until the rotation is finished, and goes with the old root then")
		case i > 0:
			if u.Live == 0 {
				fmt.Fprintf(out, "    no live certificate: this rotation is finished; destroy the retired key: lanyard ca destroy-retired-key %s\n", lanyardv1.FormatSerial(is.SerialNumber))
			} else {
				fmt.Fprintf(out, "    the last one expires %s (they renew onto the issuing intermediate); keep its key until then\n",
					u.LastLive.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}
