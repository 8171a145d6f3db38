package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/internal/app"

	"github.com/lanyard/lanyard/store/engine"
	"github.com/lanyard/lanyard/tidy"
)

func newTidyCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "tidy [--dry-run]",
		Short: "Prune expired certificates, spent tokens, expired sessions and old audit events",
		Long: `tidy removes what the retentions in the configuration (tidy.certs,
tidy.tokens, tidy.sessions, tidy.audit) say is no longer needed, with every index
entry, and records the tidy in the audit log. --dry-run only counts. When
lanyard serve holds the store, the tidy runs in the server (admin client
certificate); otherwise the store is opened directly. The server also tidies by
itself every tidy.interval (on the leader).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			var rep *tidy.Report
			where := "offline"
			db, err := engine.Open(cmd.Context(), cfg.Store, engine.Options{Logger: newLogger(cfg.LogLevel), Timeout: time.Second, NoBackup: true})
			if err == nil {
				defer db.Close()
				rep, err = tidy.New(tidy.Config{Store: db, Retention: app.TidyRetention(cfg.Tidy)}).Run(cmd.Context(), "admin:cli", dryRun)
				if err != nil {
					return err
				}
			} else {
				where = "in the server"
				if rep, err = remoteTidy(cmd, dryRun, err); err != nil {
					return err
				}
			}
			printTidy(cmd.OutOrStdout(), rep, where)
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only count what would be removed")
	return cmd
}

// remoteTidy asks the running server to tidy (openErr: why the store
// could not be opened here).
func remoteTidy(cmd *cobra.Command, dryRun bool, openErr error) (*tidy.Report, error) {
	cl, _, err := adminClients(cmd)
	if err != nil {
		return nil, fmt.Errorf("store busy (%v) and the server is unreachable: %w", openErr, err)
	}
	q := url.Values{}
	if dryRun {
		q.Set("dry_run", "1")
	}
	resp, err := cl.HTTP.Post(cl.URL+app.TidyPath+"?"+q.Encode(), "application/json", nil)
	if err != nil {
		return nil, fmt.Errorf("tidy in the server: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tidy in the server: %s: %s", resp.Status, body)
	}
	var rep tidy.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, fmt.Errorf("tidy in the server: %w", err)
	}
	return &rep, nil
}

func printTidy(out io.Writer, rep *tidy.Report, where string) {
	verb := "removed"
	if rep.DryRun {
		verb = "would remove (dry run)"
	}
	cut := func(t time.Time) string {
		if t.IsZero() {
			return "kept forever"
		}
		return "before " + t.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(out, "tidy %s, %s:\n", where, verb)
	fmt.Fprintf(out, "  %7d certificates expired %s\n", rep.Certs, cut(rep.Request.CertsExpiredBefore))
	fmt.Fprintf(out, "  %7d tokens used or expired %s\n", rep.Tokens, cut(rep.Request.TokensBefore))
	fmt.Fprintf(out, "  %7d web sessions expired %s\n", rep.Sessions, cut(rep.Request.SessionsExpiredBefore))
	fmt.Fprintf(out, "  %7d audit events %s\n", rep.Audit, cut(rep.Request.AuditBefore))
	if !rep.DryRun {
		fmt.Fprintln(out, "recorded in the audit log (action tidy)")
	}
}
