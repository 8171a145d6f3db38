// Command lanyard-agent is `lanyard agent` on its own: the same agent
// (package renewal/agent) in a binary that links nothing of the CA — no
// zlint, no AWS SDK, no store — so an idle host pays about half the
// memory (see bench/RESULTS.md). Hosts that also enroll, doctor or run
// exec-helper use the full lanyard binary for those commands.
//
//	lanyard-agent --config /etc/lanyard/agent.yaml [--log-level info]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lanyard/lanyard/renewal/agent"
)

func main() {
	cfgPath := flag.String("config", "", "agent configuration file (YAML)")
	logLevel := flag.String("log-level", "", "debug, info, warn or error (default: the file's log_level, else info)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: lanyard-agent --config FILE [--log-level LEVEL]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Serve(ctx, *cfgPath, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "lanyard-agent:", err)
		os.Exit(1)
	}
}
