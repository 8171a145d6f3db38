package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/testca"
)

// TestAnchorsTargetsCLI: `lanyard anchors` with several targets in one
// lanyard.yaml: sync creates each on its own and a refused target fails
// alone; drift in one target's profile is shown by --dry-run and repaired
// by sync; the kill switch holds one target; status lists every target.
func TestAnchorsTargetsCLI(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, err := ca.Init(ca.InitOptions{Dir: caDir}); err != nil {
		t.Fatal(err)
	}
	us := emulator.NewServer(emulator.Options{})
	defer us.Close()
	eu := emulator.NewServer(emulator.Options{Region: "eu-west-1"})
	defer eu.Close()
	denied := emulator.NewServer(emulator.Options{AccessKeyID: "AKIAOTHERACCOUNT0000"})
	defer denied.Close()
	testca.EmulatorCredentials(t)
	role := "arn:aws:iam::123456789012:role/covalent"
	yaml := `data_dir: ` + dir + `
ca_dir: ` + caDir + `
listen: 127.0.0.1:0
profiles:
  covalent:
    cn: ["*.covalent.example.net"]
anchors:
  region: us-east-1
  endpoint: ` + us.URL + `
  role_arn: ` + role + `
  create: true
  manage: true
  profile:
    duration_seconds: 1800
    source_ips: [192.0.2.0/24]
  targets:
    - target: eu
      region: eu-west-1
      endpoint: ` + eu.URL + `
      role_arn: ` + role + `
      create: true
      manage: true
    - target: denied
      region: us-east-1
      endpoint: ` + denied.URL + `
      role_arn: ` + role + `
      create: true
`
	cfgPath := filepath.Join(dir, "lanyard.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	lanyard := func(args ...string) (string, error) {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--config", cfgPath))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}

	out, err := lanyard("anchors", "sync")
	if err == nil || !strings.Contains(out, "== target denied") || !strings.Contains(out, "UnrecognizedClient") {
		t.Fatalf("sync: err %v, want the denied target's error\n%s", err, out)
	}
	if len(us.TrustAnchors()) != 1 || len(eu.TrustAnchors()) != 1 || len(denied.TrustAnchors()) != 0 {
		t.Fatalf("anchors created: us %d, eu %d, denied %d", len(us.TrustAnchors()), len(eu.TrustAnchors()), len(denied.TrustAnchors()))
	}

	// Drift in the eu profile only.
	euAPI := ra.NewFromConfig(eu.Config())
	profiles, err := euAPI.ListProfiles(context.Background(), &ra.ListProfilesInput{})
	if err != nil || len(profiles.Profiles) != 1 {
		t.Fatalf("eu profiles %v %v", profiles, err)
	}
	pid := profiles.Profiles[0].ProfileId
	if _, err := euAPI.UpdateProfile(context.Background(), &ra.UpdateProfileInput{ProfileId: pid, DurationSeconds: aws.Int32(43200)}); err != nil {
		t.Fatal(err)
	}
	out, err = lanyard("anchors", "sync", "--dry-run", "--target", "eu")
	if err != nil || !strings.Contains(out, "~ profile durationSeconds: 43200 -> 3600 (would change)") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if p, _ := euAPI.GetProfile(context.Background(), &ra.GetProfileInput{ProfileId: pid}); aws.ToInt32(p.Profile.DurationSeconds) != 43200 {
		t.Fatal("the dry run changed the profile")
	}
	if out, err = lanyard("anchors", "sync", "--target", "eu"); err != nil || !strings.Contains(out, "~ profile durationSeconds: 43200 -> 3600") {
		t.Fatalf("sync eu: %v\n%s", err, out)
	}
	if p, _ := euAPI.GetProfile(context.Background(), &ra.GetProfileInput{ProfileId: pid}); aws.ToInt32(p.Profile.DurationSeconds) != 3600 {
		t.Fatal("sync did not repair the duration")
	}

	// The kill switch on eu holds eu only.
	if out, err = lanyard("anchors", "disable", "--target", "eu", "--reason", "drill"); err != nil || !strings.Contains(out, "ENGAGED") {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	if eu.TrustAnchors()[0].Enabled || !us.TrustAnchors()[0].Enabled {
		t.Fatal("the kill switch did not hold eu alone")
	}
	out, _ = lanyard("anchors", "sync")
	if eu.TrustAnchors()[0].Enabled || !strings.Contains(out, "KILL SWITCH ENGAGED") {
		t.Fatalf("sync undid the kill switch:\n%s", out)
	}
	out, _ = lanyard("anchors", "status")
	for _, want := range []string{"target eu, recorded:", "KILL SWITCH:   engaged", "drill", "target denied, recorded:", "last error:"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// TestAnchorsStatusFromServer: `lanyard anchors status` while the server
// runs (and holds the store) prints what the server's sync recorded,
// through the GetAnchorStatus admin RPC, then what AWS holds live.
func TestAnchorsStatusFromServer(t *testing.T) {
	acfg, emu := testca.EmulatedAnchors(t)
	c := testca.Start(t, testca.Options{Anchors: acfg})
	n := c.Revocation.Current().Number
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.App.Anchors.WaitCRL(wctx, n); err != nil {
		t.Fatalf("CRL %d did not reach the emulated trust anchor: %v", n, err)
	}
	cfgPath := filepath.Join(t.TempDir(), "lanyard.yaml")
	yaml := "data_dir: " + c.Dir + "\nca_dir: " + c.Paths.Dir + "\nurl: " + c.URL + "\nprofiles:\n  covalent:\n    cn: [\"*.covalent.example.net\"]\n" +
		"anchors:\n  enabled: true\n  region: " + acfg.Region + "\n  endpoint: " + emu.URL + "\n  role_arn: " + acfg.RoleARN + "\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runLanyard(t, "anchors", "status", "--config", cfgPath)
	if err != nil {
		t.Fatalf("anchors status: %v\n%s", err, out)
	}
	arn := emu.TrustAnchors()[0].Arn
	for _, want := range []string{"recorded status (from the running server):", "trust anchor:  " + arn,
		fmt.Sprintf("CRL at AWS:    number %d (0 entries), pushed 20", n), "bundle:        " + c.Authority.Roots()[0].Subject.String(),
		fmt.Sprintf("CRL: number %d, 0 entries, enabled true", n)} {
		if !strings.Contains(out, want) {
			t.Errorf("anchors status lacks %q:\n%s", want, out)
		}
	}
}
