package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store"
)

// TestACMEEABCLI: `lanyard acme eab create/list/revoke` through the admin
// API: the HMAC key is printed once, bad input is refused writing
// nothing, and each change is audited under the admin certificate.
func TestACMEEABCLI(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	cfgPath := filepath.Join(t.TempDir(), "lanyard.yaml")
	yaml := "data_dir: " + c.Dir + "\nca_dir: " + c.Paths.Dir + "\nurl: " + c.URL + "\nprofiles:\n  covalent:\n    cn: [\"*.covalent.example.net\"]\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runLanyard(t, "acme", "eab", "create", "--profile", "covalent", "--cn", "web1.covalent.example.net", "--config", cfgPath)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	kid := regexp.MustCompile(`key id: +(\S+)`).FindStringSubmatch(out)
	hm := regexp.MustCompile(`hmac key: +(\S+)`).FindStringSubmatch(out)
	if kid == nil || hm == nil || !strings.Contains(out, c.URL+"/acme/covalent/directory") || strings.Contains(out, "--hmac") {
		t.Fatalf("create output lacks the key id, HMAC key or directory (or puts the key in argv):\n%s", out)
	}
	for _, args := range [][]string{
		{"create"},                      // no profile
		{"create", "--profile", "nope"}, // unknown profile
		{"create", "--profile", "covalent", "--cn", "evil.example.com"}, // CN outside the profile
	} {
		if out, _, err := runLanyard(t, append(append([]string{"acme", "eab"}, args...), "--config", cfgPath)...); err == nil {
			t.Fatalf("acme eab %v succeeded:\n%s", args, out)
		}
	}
	if keys, _ := c.Store.ListMeta("acme/eab/"); len(keys) != 1 {
		t.Fatalf("refused creations wrote keys: %d in the store", len(keys))
	}
	list, _, err := runLanyard(t, "acme", "eab", "list", "--config", cfgPath)
	if err != nil || !strings.Contains(list, kid[1]) || !strings.Contains(list, "web1.covalent.example.net") || strings.Contains(list, hm[1]) {
		t.Fatalf("list (%v) lacks the key or shows its secret:\n%s", err, list)
	}
	if out, _, err := runLanyard(t, "acme", "eab", "revoke", kid[1], "--config", cfgPath); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if _, _, err := runLanyard(t, "acme", "eab", "revoke", "AAAAAAAAAAAAAAAA", "--config", cfgPath); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("revoking an unknown key: %v, want not found", err)
	}
	if list, _, _ := runLanyard(t, "acme", "eab", "list", "--config", cfgPath); !strings.Contains(list, "revoked") {
		t.Fatalf("list after revoke:\n%s", list)
	}
	for action, want := range map[store.AuditAction]int{store.ActionACMEEABCreate: 1, store.ActionACMEEABRevoke: 1} {
		evs, _, err := c.Store.ListAudit(store.AuditQuery{Action: action})
		if err != nil || len(evs) != want || !strings.HasPrefix(evs[0].Actor, "admin:cert:") {
			t.Fatalf("audit %s: %+v (%v), want %d by the admin certificate", action, evs, err, want)
		}
	}
}
