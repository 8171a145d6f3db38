package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
)

func newACMECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acme",
		Short: "ACME (RFC 8555) at /acme/<profile>/directory: external account binding keys",
	}
	eab := &cobra.Command{
		Use:   "eab",
		Short: "Mint, list and revoke ACME external account binding keys (admin credential)",
		Long: `An ACME client opens an account at /acme/<profile>/directory only with an
external account binding (EAB) key minted here: each key is bound to one
profile (its CN rules, TTL and key types) and optionally to one CN, opens one
account (or any number with --reusable) and can be revoked.`,
	}
	eab.AddCommand(newACMEEABCreateCmd(), newACMEEABListCmd(), newACMEEABRevokeCmd())
	cmd.AddCommand(eab)
	return cmd
}

func newACMEEABCreateCmd() *cobra.Command {
	var profile, cn string
	var reusable bool
	cmd := &cobra.Command{
		Use:   "create --profile P [--cn NAME] [--reusable]",
		Short: "Mint an EAB key; its HMAC key is printed once",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if profile == "" {
				return errors.New("--profile is required")
			}
			cl, cfg, err := adminClients(cmd)
			if err != nil {
				return err
			}
			resp, err := cl.Admin.CreateAcmeEabKey(cmd.Context(), connect.NewRequest(&v1.CreateAcmeEabKeyRequest{
				Profile: profile, Cn: cn, Reusable: reusable}))
			if err != nil {
				return err
			}
			m := resp.Msg
			use := "one account"
			if reusable {
				use = "any number of accounts"
			}
			bound := ""
			if cn != "" {
				bound = ", CN " + cn + " only"
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "EAB key for profile %s (%s%s); the HMAC key is shown only now:\n", m.GetProfile(), use, bound)
			fmt.Fprintf(out, "  directory: %s/acme/%s/directory\n  key id:    %s\n  hmac key:  %s\n", cfg.URL, m.GetProfile(), m.GetKeyId(), m.GetHmacKey())
			fmt.Fprintf(out, "\nlego reads the HMAC key from the environment (LEGO_EAB_HMAC), so it stays out of ps:\n"+
				"  LEGO_EAB_HMAC=<hmac key> lego --server %s/acme/%s/directory --eab --eab.kid %s --http -d <CN> run\n",
				cfg.URL, m.GetProfile(), m.GetKeyId())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "", "profile the key opens accounts under")
	f.StringVar(&cn, "cn", "", "bind the key to this one CN (default: any CN the profile allows)")
	f.BoolVar(&reusable, "reusable", false, "the key opens any number of accounts (default: one)")
	return cmd
}

func newACMEEABListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List EAB keys (never their secrets)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, _, err := adminClients(cmd)
			if err != nil {
				return err
			}
			resp, err := cl.Admin.ListAcmeEabKeys(cmd.Context(), connect.NewRequest(&v1.ListAcmeEabKeysRequest{}))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY ID\tPROFILE\tCN\tUSE\tSTATE\tCREATED")
			for _, k := range resp.Msg.GetKeys() {
				cn, use, state := k.GetCn(), "single", "unused"
				if cn == "" {
					cn = "*"
				}
				if k.GetReusable() {
					use = "reusable"
				}
				switch {
				case k.GetRevoked():
					state = "revoked"
				case k.GetUsed():
					state = "used"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.GetKeyId(), k.GetProfile(), cn, use, state, k.GetCreatedAt().AsTime().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func newACMEEABRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke an EAB key: it opens no new account",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, _, err := adminClients(cmd)
			if err != nil {
				return err
			}
			if _, err := cl.Admin.RevokeAcmeEabKey(cmd.Context(), connect.NewRequest(&v1.RevokeAcmeEabKeyRequest{KeyId: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "EAB key %s revoked: it opens no new account (accounts it opened keep theirs).\n", args[0])
			return nil
		},
	}
}
