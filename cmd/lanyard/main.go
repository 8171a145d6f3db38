// Command lanyard is the one binary of the lanyard CA: the server
// (serve, init, migrate, backup), the admin tools (token, certs, revoke,
// anchors, admin), and the host side (enroll, renew, agent,
// credential-process, exec-helper, doctor).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			os.Exit(int(ex))
		}
		fmt.Fprintln(os.Stderr, "lanyard:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a status and no further message (the
// command already printed what went wrong).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
