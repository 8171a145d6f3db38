package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/store"
)

// newStoreCmd is `lanyard store …`: operations on the store itself.
func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Operations on the store itself (compact, copy between engines)",
	}
	cmd.AddCommand(newStoreCompactCmd(), newStoreCopyCmd())
	return cmd
}

func newStoreCompactCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "compact [--dry-run]",
		Short: "Rewrite the bbolt store without its free pages (offline: stop lanyard serve first)",
		Long: `compact rewrites the bbolt file without the free pages a tidy leaves (bbolt
reuses them but never returns them to the file system). The copy is written
next to the store, checked (it opens, its indexes agree) and then atomically
replaces the store; the compaction is recorded in the audit log. --dry-run
makes and measures the copy, then removes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			ev := &store.AuditEvent{At: cliNow(), Actor: "admin:cli", Action: store.ActionStoreCompact, Subject: cfg.Store}
			res, err := store.Compact(cfg.Store, time.Second, dryRun, ev)
			if err != nil {
				return err
			}
			mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
			if dryRun {
				fmt.Fprintf(cmd.OutOrStdout(), "dry run: %s would shrink from %s to %s (nothing changed)\n", cfg.Store, mib(res.Before), mib(res.After))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "compacted %s: %s → %s (recorded in the audit log)\n", cfg.Store, mib(res.Before), mib(res.After))
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "measure the compacted size without replacing the store")
	return cmd
}
