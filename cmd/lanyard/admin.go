package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/term"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/renewal/agent"
	"github.com/lanyard/lanyard/revocation"

	"github.com/lanyard/lanyard/store/engine"
	"github.com/lanyard/lanyard/web"
)

// newAdminCmd groups the commands that administer the admin credential
// and the admin web page.
func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer the admin credential (admin.crt) and the admin web page",
	}
	cmd.AddCommand(newAdminPasswdCmd(), newAdminRotateCertCmd(), newAdminRenewCertCmd())
	return cmd
}

// newAdminRotateCertCmd replaces the admin credential and revokes the old one.
func newAdminRotateCertCmd() *cobra.Command {
	var reason string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "rotate-cert [--reason superseded|keyCompromise] [--dry-run]",
		Short: "Issue a new admin credential (admin.crt, admin.key) and revoke every other admin certificate",
		Long: "rotate-cert makes a new key here, has the running server issue a new admin certificate for it (valid " +
			fmt.Sprint(ca.AdminValidity/(24*time.Hour)) + " days),\n" +
			"revokes every other live admin certificate (the current one included; --reason keyCompromise when the key leaked)\n" +
			"and replaces admin.crt and admin.key in the CA folder atomically (key mode 0600). All of it is in the audit log.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := revocation.ParseReason(reason)
			if err != nil {
				return err
			}
			cl, cfg, err := adminClients(cmd)
			if err != nil {
				return err
			}
			p := ca.PathsIn(cfg.CADir)
			out := cmd.OutOrStdout()
			if dryRun {
				fmt.Fprintf(out, "dry run: would issue a new admin certificate for a new P-256 key, revoke every other live admin certificate (reason %s)\n"+
					"  and replace %s and %s; nothing was changed\n", revocation.ReasonName(code), p.AdminCert, p.AdminKey)
				return nil
			}
			var resp *connect.Response[v1.RotateAdminCertificateResponse]
			b, err := replaceAdmin(p, "rotate-cert", func(csr []byte) (b *v1.Bundle, err error) {
				resp, err = cl.Admin.RotateAdminCertificate(cmd.Context(), connect.NewRequest(&v1.RotateAdminCertificateRequest{Csr: csr, Reason: int32(code)}))
				if err != nil {
					return nil, fmt.Errorf("rotate the admin credential: %w", err)
				}
				return resp.Msg.GetBundle(), nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "new admin certificate %s, valid until %s, written to %s (key %s)\n", b.GetSerial(),
				b.GetNotAfter().AsTime().UTC().Format(time.RFC3339), p.AdminCert, p.AdminKey)
			for _, s := range resp.Msg.GetRevokedSerials() {
				fmt.Fprintf(out, "revoked admin certificate %s (%s)\n", s, revocation.ReasonName(code))
			}
			if n := resp.Msg.GetCrlNumber(); n > 0 {
				fmt.Fprintf(out, "listed in CRL #%d\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "superseded", "why the old admin certificates are revoked: superseded, or keyCompromise when the key leaked")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be done and change nothing")
	return cmd
}

// replaceAdmin makes a new P-256 admin key, has issue turn a CSR of it
// into a certificate, checks that certificate (checkAdminIssued) and
// replaces the CA folder's admin credential with it; again names the
// command to run again when the write fails after the server issued.
func replaceAdmin(p *ca.Paths, again string, issue func(csr []byte) (*v1.Bundle, error)) (*v1.Bundle, error) {
	key, err := agent.NewKey("P-256")
	if err != nil {
		return nil, err
	}
	csr, keyPEM, err := agent.NewCSR(key, caclient.Names{CN: ca.AdminCommonName})
	if err != nil {
		return nil, err
	}
	b, err := issue(csr)
	if err != nil {
		return nil, err
	}
	if err := checkAdminIssued(p, b); err != nil {
		return nil, err
	}
	if err := ca.ReplaceAdminCredential(p, []byte(b.GetCertificatePem()), keyPEM); err != nil {
		return nil, fmt.Errorf("the server issued admin certificate %s but writing it failed (run %s again): %w", b.GetSerial(), again, err)
	}
	return b, nil
}

// checkAdminIssued verifies, before anything is written, that the
// certificate the CA returned chains to the CA folder's root and is an
// admin credential (the key pair is checked by ReplaceAdminCredential).
func checkAdminIssued(p *ca.Paths, b *v1.Bundle) error {
	roots, err := os.ReadFile(p.RootCert)
	if err != nil {
		return fmt.Errorf("CA root: %w", err)
	}
	leaf, err := caclient.VerifyIssued(roots, []byte(b.GetCertificatePem()), []byte(b.GetChainPem()), &caclient.Names{CN: ca.AdminCommonName}, cliNow())
	if err != nil {
		return err
	}
	if !ca.IsAdminCertificate(leaf) {
		return fmt.Errorf("%w: the CA returned certificate %s without the admin marker", caclient.ErrUntrustedIssue, b.GetSerial())
	}
	return nil
}

// newAdminRenewCertCmd renews the admin credential over mTLS, as a host renews.
func newAdminRenewCertCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "renew-cert [--dry-run]",
		Short: "Renew the admin credential over mTLS with itself, as a host renews (a new key; the old certificate is not revoked)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, cfg, err := adminClients(cmd)
			if err != nil {
				return err
			}
			p := ca.PathsIn(cfg.CADir)
			out := cmd.OutOrStdout()
			if dryRun {
				fmt.Fprintf(out, "dry run: would renew the admin certificate for a new P-256 key and replace %s and %s; nothing was changed\n", p.AdminCert, p.AdminKey)
				return nil
			}
			var resp *connect.Response[v1.RenewResponse]
			b, err := replaceAdmin(p, "renew-cert", func(csr []byte) (b *v1.Bundle, err error) {
				resp, err = cl.Certificates.Renew(cmd.Context(), connect.NewRequest(&v1.RenewRequest{Csr: csr}))
				if err != nil {
					return nil, fmt.Errorf("renew the admin credential: %w", err)
				}
				return resp.Msg.GetBundle(), nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "admin certificate renewed: %s (renews %s), valid until %s, written to %s\n", b.GetSerial(), resp.Msg.GetPreviousSerial(),
				b.GetNotAfter().AsTime().UTC().Format(time.RFC3339), p.AdminCert)
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be done and change nothing")
	return cmd
}

// newAdminPasswdCmd sets the admin web page's password.
func newAdminPasswdCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "passwd [--password-file FILE]",
		Short: "Set the admin web page's password (read from stdin, or --password-file)",
		Long: "Set the password of the admin web page at /admin/. The password is read from the terminal (twice, not echoed),\n" +
			"from standard input (its first line) or from --password-file (its first line), and stored as an argon2id hash.\n" +
			"It needs the store file, which a running `lanyard serve` holds: stop the server first.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readNewPassword(cmd, file)
			if err != nil {
				return err
			}
			cfg, path, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			if path == "" {
				return errors.New("no configuration found: run in the folder where `lanyard serve --dev` ran, or pass --config")
			}
			db, err := engine.Open(cmd.Context(), cfg.Store, engine.Options{Timeout: 2 * time.Second})
			if err != nil {
				if errors.Is(err, bolterrors.ErrTimeout) {
					return fmt.Errorf("the store %s is locked by a running `lanyard serve`: stop the server, run `lanyard admin passwd` again, then start it (%w)", cfg.Store, err)
				}
				return fmt.Errorf("open the store: %w", err)
			}
			defer db.Close()
			if err := web.SetPassword(cmd.Context(), db, pw); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "admin password set; log in at", strings.TrimRight(cfg.URL, "/")+"/admin/")
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "password-file", "", "read the new password from the first line of this file")
	return cmd
}

// readNewPassword reads the password from file, a terminal (asked twice,
// no echo) or standard input (its first line).
func readNewPassword(cmd *cobra.Command, file string) (string, error) {
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read password file: %w", err)
		}
		return firstLine(string(raw)), nil
	}
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		out := cmd.ErrOrStderr()
		fmt.Fprint(out, "New admin password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(out, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(a) != string(b) {
			return "", errors.New("the two passwords differ; nothing was changed")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	return firstLine(line), nil
}

// firstLine is s up to its first line break.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
