package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/term"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/web"
)

// newAdminCmd groups the commands that administer the admin web page.
func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer the admin web page",
	}
	cmd.AddCommand(newAdminPasswdCmd())
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
			db, err := store.Open(cfg.Store, store.Options{Timeout: 2 * time.Second})
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
