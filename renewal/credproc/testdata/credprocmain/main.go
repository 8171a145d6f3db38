// Command credprocmain is a stand-in for `lanyard credential-process`, used by
// credproc's SDK test only when cmd/lanyard does not build (colleagues work
// in the same tree) or does not register the command yet. It takes the same
// flags and prints the same JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/lanyard/lanyard/renewal/credproc"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "credential-process" {
		args = args[1:]
	}
	var o credproc.Options
	fs := flag.NewFlagSet("credential-process", flag.ExitOnError)
	fs.StringVar(&o.Dir, "dir", "", "host folder")
	fs.StringVar(&o.TrustAnchorARN, "trust-anchor-arn", "", "")
	fs.StringVar(&o.ProfileARN, "profile-arn", "", "")
	fs.StringVar(&o.RoleARN, "role-arn", "", "")
	fs.StringVar(&o.Region, "region", "", "")
	fs.StringVar(&o.Endpoint, "endpoint", "", "")
	fs.IntVar(&o.DurationSeconds, "session-duration", 3600, "")
	fs.StringVar(&o.RoleSessionName, "role-session-name", "", "")
	_ = fs.Parse(args)
	out, err := credproc.Credentials(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b, _ := json.Marshal(out)
	os.Stdout.Write(b)
}
