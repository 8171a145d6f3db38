package awsconfig

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"gopkg.in/ini.v1"
)

// FuzzWriteProfile feeds arbitrary existing config files to WriteProfile. It
// must never panic; a refused file must be left untouched; an accepted one
// must re-parse (ini.v1 and the AWS SDK) and hold the profile exactly once,
// reading back as written. Seeds live in testdata/fuzz/FuzzWriteProfile.
func FuzzWriteProfile(f *testing.F) {
	f.Add([]byte(otherContent), false)
	f.Add([]byte("[profile covalent]\nregion = old\n[profile covalent]\nx = y\n"), false)
	f.Add([]byte("[default]\r\nregion = a\r\n[profile default]\nregion = b"), true)
	f.Add([]byte(""), false)
	p := covalentProfile("/etc/covalent pki/host")
	p.Extra = map[string]string{"output": "json"}
	f.Fuzz(func(t *testing.T, content []byte, asDefault bool) {
		prof := p
		if asDefault {
			prof.Name = "default"
		}
		path := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		err := WriteProfile(path, prof)
		got, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			if !bytes.Equal(got, content) {
				t.Fatalf("refused (%v) but the file changed", err)
			}
			return
		}
		if _, err := ini.LoadSources(loadOptions, got); err != nil {
			t.Fatalf("result does not parse with ini.v1: %v\n%q", err, got)
		}
		rp, err := parseProfile(got, prof.Name)
		if err != nil || rp.CredentialProcess != prof.CredentialProcess || rp.Region != prof.Region || rp.Extra["output"] != "json" || len(rp.Extra) != 1 {
			t.Fatalf("profile reads back as %+v, %v\n%q", rp, err, got)
		}
		n := 0
		for _, l := range splitLines(got) {
			if names, _ := header(l); len(names) > 0 {
				for _, h := range names {
					if h == prof.sectionName() || asDefault && h == "profile default" {
						n++
						break
					}
				}
			}
		}
		if n != 1 {
			t.Fatalf("profile header appears %d times\n%q", n, got)
		}
		// The AWS SDK's own loader agrees, unless the input alone already
		// trips it (its parser panics on some values, e.g. a lone quote).
		sc, sdkErr := sdkLoad(path, prof.Name)
		if sdkErr != nil {
			in := filepath.Join(t.TempDir(), "in")
			_ = os.WriteFile(in, append(append([]byte{}, content...), "\n[profile zz]\nregion = x\n"...), 0o600)
			if _, inErr := sdkLoad(in, "zz"); inErr != nil {
				return
			}
			t.Fatalf("AWS SDK cannot load the result: %v\n%q", sdkErr, got)
		}
		if sc.CredentialProcess != prof.CredentialProcess || sc.Region != prof.Region {
			t.Fatalf("AWS SDK reads credential_process %q region %q\n%q", sc.CredentialProcess, sc.Region, got)
		}
		if !strings.Contains(string(got), "credential_process = "+prof.CredentialProcess+"\n") {
			t.Fatalf("credential_process not on one line\n%q", got)
		}
	})
}

func sdkLoad(path, name string) (sc config.SharedConfig, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("AWS SDK panicked: %v", r)
		}
	}()
	return config.LoadSharedConfigProfile(context.Background(), name, func(o *config.LoadSharedConfigOptions) {
		o.ConfigFiles = []string{path}
		o.CredentialsFiles = []string{}
	})
}
