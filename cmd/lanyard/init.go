package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/config"
)

func readPassphrase(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	c := &config.Config{PassphraseFile: path}
	return c.Passphrase()
}

func newInitCmd() *cobra.Command {
	var dir, name, keyType, rootKeyOut, passFile, kms string
	var importRoot, importInt, importKey string
	var ifMissing bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new root and intermediate CA and the admin credential (or --import existing ones)",
		Long: `init creates the CA folder: root.crt, intermediate.crt, intermediate.key,
admin.crt and admin.key. The root key is written to --root-key-out (default
<dir>/root.key): put it on a machine that is not the server, or on removable
media, since lanyard serve never needs it. With --passphrase-file the keys
are encrypted at rest; with --kms the intermediate key is held by a KMS.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				cfg, _, err := loadConfig(cmd, nil)
				if err != nil {
					dir = filepath.Join(config.DevDir, "ca")
				} else {
					dir = cfg.CADir
				}
			}
			pass, err := readPassphrase(passFile)
			if err != nil {
				return err
			}
			if _, err := os.Stat(ca.PathsIn(dir).IntermediateCert); err == nil && ifMissing {
				fmt.Fprintf(cmd.OutOrStdout(), "a CA already exists in %s; nothing to do\n", dir)
				return nil
			}
			var p *ca.Paths
			if importRoot != "" || importInt != "" || importKey != "" {
				if importRoot == "" || importInt == "" || importKey == "" {
					return errors.New("--import-root, --import-intermediate and --import-key go together")
				}
				p, err = ca.ImportFiles(dir, importRoot, importInt, importKey, pass, cliNow())
			} else {
				p, err = ca.Init(ca.InitOptions{Dir: dir, Name: name, KeyType: keyType, RootKeyPath: rootKeyOut, Passphrase: pass, KMS: kms})
			}
			if err != nil {
				return err
			}
			a, err := ca.Load(ca.LoadOptions{Dir: dir, Passphrase: pass, KMS: kms, Now: cliNow})
			if err != nil {
				return err
			}
			defer a.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "CA created in %s\n", p.Dir)
			fmt.Fprintf(out, "  root:          %s (SHA-256 %s)\n", p.RootCert, a.Fingerprint())
			if p.RootKey != "" {
				fmt.Fprintf(out, "  root key:      %s  <- keep this offline; lanyard serve does not need it\n", p.RootKey)
			}
			fmt.Fprintf(out, "  intermediate:  %s\n  admin cert:    %s\n", p.IntermediateCert, p.AdminCert)
			if _, err := os.Stat(p.RootKey); err == nil && filepath.Dir(p.RootKey) == filepath.Clean(p.Dir) {
				fmt.Fprintln(out, "note: the root key is inside the CA folder; move it offline with --root-key-out next time")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA folder (default: ca_dir from the configuration, else .lanyard/ca)")
	f.StringVar(&name, "name", "lanyard", "name in the CA certificates' subjects")
	f.StringVar(&keyType, "key-type", "P-256", "CA key type: P-256, P-384, RSA-3072 (also RSA-2048, RSA-4096)")
	f.StringVar(&rootKeyOut, "root-key-out", "", "where to write the root key (default <dir>/root.key); keep it off the server")
	f.StringVar(&passFile, "passphrase-file", "", "file holding the passphrase that encrypts the keys at rest")
	f.StringVar(&kms, "kms", "", "KMS URI for the intermediate key (e.g. softkms:)")
	f.StringVar(&importRoot, "import-root", "", "import an existing root certificate (PEM)")
	f.StringVar(&importInt, "import-intermediate", "", "import an existing intermediate certificate (PEM)")
	f.StringVar(&importKey, "import-key", "", "import the existing intermediate's private key (PEM)")
	f.BoolVar(&ifMissing, "if-missing", false, "do nothing (and succeed) when the folder already holds a CA")
	return cmd
}
