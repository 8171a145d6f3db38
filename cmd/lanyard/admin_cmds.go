package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/migrations"
	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/engine"
	"github.com/lanyard/lanyard/store/postgres"
)

func newTokenCmd() *cobra.Command {
	var cn, profile string
	var dns []string
	var ttl time.Duration
	var quiet bool
	cmd := &cobra.Command{
		Use:   "token --cn NAME [--profile P] [--ttl 1h]",
		Short: "Create a single-use enrollment token for one host",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cn == "" {
				return errors.New("--cn is required")
			}
			cl, cfg, err := adminClients(cmd)
			if err != nil {
				return err
			}
			resp, err := cl.Admin.CreateEnrollmentToken(cmd.Context(), connect.NewRequest(&v1.CreateEnrollmentTokenRequest{
				Cn: cn, Profile: profile, DnsNames: dns, TtlSeconds: int64(ttl / time.Second)}))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				fmt.Fprintln(out, resp.Msg.GetToken())
				return nil
			}
			fmt.Fprintf(out, "token for %s (id %s), single use, expires %s:\n%s\n", cn, resp.Msg.GetTokenId(),
				resp.Msg.GetExpiresAt().AsTime().Local().Format(time.RFC3339), resp.Msg.GetToken())
			fmt.Fprintf(out, "\non the host (paste the token when asked, or save it to a 0600 file and pass --token-file FILE):\n  %s\n",
				enrollCommand(cfg.URL, rootFingerprint(cfg.CADir), cn, dns, "-"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cn, "cn", "", "common name the certificate will carry")
	f.StringVar(&profile, "profile", "", "profile (default: the configured default profile)")
	f.StringSliceVar(&dns, "dns", nil, "DNS SANs the token grants (must pass the profile's policy)")
	f.DurationVar(&ttl, "ttl", 0, "token lifetime (default 1h, at most 168h)")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the token")
	return cmd
}

// enrollCommand is the `lanyard enroll` line the token views print (the CLI,
// the dev banner): the token comes from tokenArg ("-" for stdin, or a file
// for --token-file), never from the command line itself.
func enrollCommand(caURL, fingerprint, cn string, dns []string, tokenArg string) string {
	args := []string{"lanyard", "enroll", "--ca", caURL, "--fingerprint", fingerprint, "--cn", cn}
	for _, n := range dns {
		args = append(args, "--dns-name", n)
	}
	if tokenArg == "-" {
		args = append(args, "--token", "-")
	} else {
		args = append(args, "--token-file", tokenArg)
	}
	return strings.Join(append(args, "--out", "/etc/lanyard/pki"), " ")
}

// rootFingerprint is the SHA-256 of the CA root in caDir, or a placeholder
// when it cannot be read here.
func rootFingerprint(caDir string) string {
	b, err := os.ReadFile(ca.PathsIn(caDir).RootCert)
	if err != nil {
		return "<root sha256>"
	}
	certs, err := caclient.ParseCertificates(b)
	if err != nil {
		return "<root sha256>"
	}
	return caclient.Fingerprint(certs[0])
}

func newCertsCmd() *cobra.Command {
	var q v1.ListCertificatesRequest
	var size int
	cmd := &cobra.Command{
		Use:   "certs [--cn PREFIX] [--status valid|expired|revoked] [--profile P]",
		Short: "List issued certificates",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, _, err := adminClients(cmd)
			if err != nil {
				return err
			}
			q.PageSize = int32(size)
			resp, err := cl.Admin.ListCertificates(cmd.Context(), connect.NewRequest(&q))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tCN\tPROFILE\tSTATUS\tNOT AFTER")
			for _, c := range resp.Msg.GetCertificates() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.GetSerial(), c.GetCn(), c.GetProfile(), c.GetStatus(), c.GetNotAfter().AsTime().Format(time.RFC3339))
			}
			if resp.Msg.GetNextPageToken() != "" {
				fmt.Fprintf(tw, "(more: --after %s)\n", resp.Msg.GetNextPageToken())
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.CnPrefix, "cn", "", "CN prefix")
	f.StringVar(&q.Status, "status", "", "valid, expired or revoked")
	f.StringVar(&q.Profile, "profile", "", "profile")
	f.StringVar(&q.Serial, "serial", "", "one serial")
	f.StringVar(&q.PageToken, "after", "", "page token from a previous listing")
	f.IntVar(&size, "limit", 50, "page size")
	return cmd
}

func newRevokeCmd() *cobra.Command {
	var serial, cn, reason, comment, dir string
	cmd := &cobra.Command{
		Use:   "revoke (--serial S | --cn NAME | --dir HOSTDIR) [--reason keyCompromise] [--comment TEXT]",
		Short: "Revoke a certificate (and its renewals), publish a new CRL",
		Long: `revoke revokes a certificate and every renewal descending from it, and the
CA publishes a new CRL at once (pushed to the Roles Anywhere trust anchor when
the sync runs). An admin names it by --serial or --cn (admin credential); on a
host, --dir revokes the folder's current certificate with that certificate
itself over mTLS (default reason keyCompromise), no admin credential needed.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := revocation.ParseReason(reason)
			if err != nil {
				return err
			}
			if dir != "" {
				return revokeSelf(cmd, dir, code)
			}
			cl, _, err := adminClients(cmd)
			if err != nil {
				return err
			}
			resp, err := cl.Admin.RevokeCertificate(cmd.Context(), connect.NewRequest(&v1.RevokeCertificateRequest{
				Serial: serial, Cn: cn, Reason: int32(code), Comment: comment}))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, c := range resp.Msg.GetCertificates() {
				fmt.Fprintf(out, "revoked %s (%s) reason %s at %s\n", c.GetSerial(), c.GetCn(), revocation.ReasonName(int(c.GetRevocationReason())),
					c.GetRevokedAt().AsTime().Format(time.RFC3339))
			}
			if len(resp.Msg.GetCertificates()) == 0 {
				fmt.Fprintln(out, "nothing to revoke")
			}
			fmt.Fprintf(out, "listed on CRL number %d\n", resp.Msg.GetCrlNumber())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&serial, "serial", "", "serial (hex)")
	f.StringVar(&cn, "cn", "", "revoke every valid certificate with this CN")
	f.StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: "+strings.Join([]string{"unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn"}, ", "))
	f.StringVar(&comment, "comment", "", "free text kept in the audit log")
	f.StringVar(&dir, "dir", "", "on a host: revoke this enrolled folder's current certificate with itself")
	return cmd
}

// revokeSelf revokes an enrolled folder's current certificate over mTLS
// with that certificate (CertificateService.RevokeSelf).
func revokeSelf(cmd *cobra.Command, dir string, reason int) error {
	e, roots, err := hostdir.ReadEnrollment(dir)
	if err != nil {
		return err
	}
	d, err := hostdir.OpenReadOnly(dir)
	if err != nil {
		return err
	}
	v, err := d.LoadCurrent()
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(append(append([]byte{}, v.CertPEM...), v.ChainPEM...), v.KeyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", v.Path, err)
	}
	cl, err := caclient.New(e.CA, roots, &cert)
	if err != nil {
		return err
	}
	resp, err := cl.Certificates.RevokeSelf(cmd.Context(), connect.NewRequest(&v1.RevokeSelfRequest{Reason: int32(reason)}))
	if err != nil {
		return fmt.Errorf("revoke at %s: %w", e.CA, err)
	}
	c := resp.Msg.GetCertificate()
	fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (%s) reason %s at %s\n", c.GetSerial(), c.GetCn(),
		revocation.ReasonName(int(c.GetRevocationReason())), c.GetRevokedAt().AsTime().Format(time.RFC3339))
	return nil
}

func newMigrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending store migrations (serve does this at start, after a backup copy)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			if engine.IsPostgres(cfg.Store) {
				applied, err := postgres.Migrate(cmd.Context(), cfg.Store)
				if err != nil {
					return err
				}
				pg := migrations.Postgres()
				fmt.Fprintf(cmd.OutOrStdout(), "store %s at schema version %d (applied %v)\n", engine.Describe(cfg.Store), pg[len(pg)-1].Version, applied)
				return nil
			}
			db, err := store.Open(cfg.Store, store.Options{Logger: newLogger(cfg.LogLevel)})
			if err != nil {
				return err
			}
			defer db.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "store %s at schema version %d\n", cfg.Store, migrations.Latest())
			return nil
		},
	}
}

func newBackupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the store, online (through the server) or offline",
		Long: `backup copies the store atomically to FILE (mode 0600). When lanyard serve
holds the store, the copy is streamed from the running server over the admin
client certificate into a new file next to FILE, checked (whole, and a sound
store) and only then renamed to FILE; otherwise the store file is opened
directly. For a PostgreSQL store the copy is the same bbolt-format snapshot, read
from one consistent transaction of the database (pg_dump remains its physical
backup).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			// PostgreSQL: a bbolt-format snapshot read straight from the
			// database (any replica may run; pg_dump is the physical backup).
			db, err := engine.Open(cmd.Context(), cfg.Store, engine.Options{Logger: newLogger(cfg.LogLevel), Timeout: time.Second, NoBackup: true})
			if err == nil {
				defer db.Close()
				if err := db.Backup(args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s (offline)\n", args[0])
				return nil
			}
			cl, _, cerr := adminClients(cmd)
			if cerr != nil {
				return fmt.Errorf("store busy (%v) and the server is unreachable: %w", err, cerr)
			}
			n, err := downloadBackup(cmd.Context(), cl.HTTP, cl.URL, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s (%d bytes, online)\n", args[0], n)
			return nil
		},
	}
}
