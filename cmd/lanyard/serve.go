package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/internal/atomicfile"
	"github.com/lanyard/lanyard/issuance"
)

func newServeCmd() *cobra.Command {
	var dev, printConfig bool
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the CA: API, admin page, roots, CRL, metrics on one TLS port",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dev {
				if err := prepareDev(cmd); err != nil {
					return err
				}
			}
			v := config.NewViper()
			if listen != "" {
				v.Set("listen", listen)
			}
			cfg, path, err := loadConfig(cmd, v)
			if err != nil {
				return err
			}
			if printConfig {
				enc := yaml.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent(2)
				return enc.Encode(cfg)
			}
			return serve(cmd.Context(), cmd.OutOrStdout(), cfg, path)
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "development mode: CA, store and config in ./.lanyard (created on first run), listen on 127.0.0.1")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the effective configuration and exit")
	cmd.Flags().StringVar(&listen, "listen", "", "TLS listen address (overrides the configuration)")
	return cmd
}

// prepareDev writes the dev configuration and CA on first run and points
// --config at them.
func prepareDev(cmd *cobra.Command) error {
	path := filepath.Join(config.DevDir, config.FileName)
	if err := os.MkdirAll(config.DevDir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(path, []byte(config.DevYAML), 0o600); err != nil {
			return fmt.Errorf("write dev config: %w", err)
		}
	}
	caDir := filepath.Join(config.DevDir, "ca")
	if _, err := os.Stat(ca.PathsIn(caDir).IntermediateCert); errors.Is(err, os.ErrNotExist) {
		if _, err := ca.Init(ca.InitOptions{Dir: caDir, Name: "lanyard dev"}); err != nil {
			return fmt.Errorf("initialise dev CA: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "initialised a development CA in %s\n", caDir)
	}
	return cmd.Flags().Set("config", path)
}

// serveGCPercent is the garbage collector's target for the server unless
// GOGC says otherwise: the live heap is a few MB, and at the default (100)
// the collector took about a tenth of the CPU under load; 400 trades a few
// MB of memory for it.
const serveGCPercent = 400

func serve(ctx context.Context, out io.Writer, cfg *config.Config, cfgPath string) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	// LANYARD_CPUPROFILE=FILE writes a CPU profile of the whole run (for
	// performance work; see bench/).
	if path := os.Getenv("LANYARD_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("LANYARD_CPUPROFILE: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("LANYARD_CPUPROFILE: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	a, err := app.Build(ctx, cfg, app.Options{Logger: newLogger(cfg.LogLevel), AdminPage: newAdminPage})
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	a.Log.Info("lanyard serving", "listen", ln.Addr().String(), "url", cfg.URL, "config", cfgPath, "root_sha256", a.CA.Fingerprint())
	if cfg.Dev {
		if err := printDevWelcome(ctx, a, out); err != nil {
			a.Log.Warn("dev welcome", "err", err)
		}
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	return a.Serve(ctx, ln)
}

// devHostCN is the host name the dev welcome's enroll command uses.
const devHostCN = "host1.covalent.example.net"

// devTokenFile, inside the dev folder, holds the dev welcome's token.
const devTokenFile = "host1.token"

// printDevWelcome prints, in dev mode, how to log in to the admin page
// and a ready-to-paste enroll command with a fresh token (and, with the
// emulator, the flags that make the written AWS profile work).
func printDevWelcome(ctx context.Context, a *app.App, out io.Writer) error {
	secret, _, err := a.Issuance.CreateToken(ctx, issuance.TokenRequest{CN: devHostCN, Profile: "covalent", By: "serve --dev"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nlanyard is running (development mode)\n")
	fmt.Fprintf(out, "  admin page:   %s/admin/\n", a.Config.URL)
	if err := devAdminLogin(ctx, a, out); err != nil {
		return err
	}
	// The token goes to a 0600 file, not into the printed command line
	// (ps, shell history).
	tokenFile := filepath.Join(config.DevDir, devTokenFile)
	if err := atomicfile.Write(tokenFile, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("dev enrollment token: %w", err)
	}
	self := selfCommand()
	args := []string{self, "enroll", "--ca", a.Config.URL, "--fingerprint", a.CA.Fingerprint(), "--cn", devHostCN,
		"--token-file", tokenFile, "--out", "./host1-pki"}
	args = append(args, anchorsEnrollFlags(a)...)
	fmt.Fprintf(out, "  enroll a host (token for %s, valid 1h):\n    %s\n", devHostCN, strings.Join(args, " "))
	if a.Config.Anchors.Enabled && a.Config.Anchors.Emulator {
		// The seeds' own check, answered by the emulator's STS.
		fmt.Fprintf(out, "  then check the host's AWS identity (the emulator answers STS):\n    aws sts get-caller-identity --profile %s --endpoint-url http://%s\n",
			anchorsDevProfile, a.Config.Anchors.EmulatorListen)
	}
	fmt.Fprintf(out, "  more tokens:  %s token --cn NAME.covalent.example.net\n\n", self)
	return nil
}

// selfCommand is how the dev welcome names this binary: "lanyard" when
// that is what PATH finds, else the path it was started by (./bin/lanyard
// under make run), so the printed commands can be pasted as they are.
func selfCommand() string {
	if p, err := exec.LookPath("lanyard"); err == nil {
		if a, err1 := filepath.EvalSymlinks(p); err1 == nil {
			if b, err2 := os.Executable(); err2 == nil {
				if b, err2 = filepath.EvalSymlinks(b); err2 == nil && a == b {
					return "lanyard"
				}
			}
		}
	}
	return os.Args[0]
}
