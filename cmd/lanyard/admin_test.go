package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/web"
)

func TestAdminPasswd(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "lanyard.yaml")
	yaml := "data_dir: " + dir + "\nlisten: 127.0.0.1:8443\nprofiles:\n  covalent:\n    cn: [\"*.covalent.example.net\"]\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from the file 123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "lanyard.db")
	tests := []struct {
		name    string
		args    []string
		stdin   string
		lock    bool
		wantErr string
		wantPW  string
	}{
		{name: "stdin", args: []string{"--config", cfgPath}, stdin: "from stdin 12345\nignored\n", wantPW: "from stdin 12345"},
		{name: "file", args: []string{"--config", cfgPath, "--password-file", pwFile}, wantPW: "from the file 123"},
		{name: "too short", args: []string{"--config", cfgPath}, stdin: "short\n", wantErr: "at least 12"},
		{name: "missing file", args: []string{"--config", cfgPath, "--password-file", filepath.Join(dir, "nope")}, wantErr: "read password file"},
		{name: "store locked by the server", args: []string{"--config", cfgPath}, stdin: "while serving 123\n", lock: true, wantErr: "locked by a running `lanyard serve`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.lock {
				db, err := store.Open(dbPath, store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
			}
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetIn(strings.NewReader(tt.stdin))
			root.SetArgs(append([]string{"admin", "passwd"}, tt.args...))
			err := root.ExecuteContext(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "admin password set") {
				t.Fatalf("output %q", out.String())
			}
			db, err := store.Open(dbPath, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ok, err := web.CheckPassword(db, tt.wantPW)
			if err != nil || !ok {
				t.Fatalf("the stored password does not verify: %v", err)
			}
		})
	}
}
