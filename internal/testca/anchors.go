package testca

import (
	"path/filepath"
	"testing"

	"github.com/lanyard/lanyard/anchors/emulator"
	"github.com/lanyard/lanyard/config"
)

// EmulatedRoleARN is the role of the profile EmulatedAnchors creates.
const EmulatedRoleARN = "arn:aws:iam::123456789012:role/covalent"

// EmulatedAnchors starts a Roles Anywhere emulator for the test and
// returns an anchors section (Options.Anchors) that syncs to it, creating
// the trust anchor and a profile for EmulatedRoleARN, with
// EmulatorCredentials.
func EmulatedAnchors(t testing.TB) (config.Anchors, *emulator.Server) {
	t.Helper()
	emu := emulator.NewServer(emulator.Options{})
	t.Cleanup(emu.Close)
	EmulatorCredentials(t)
	return config.Anchors{Enabled: true, AnchorsTarget: config.AnchorsTarget{Region: emulator.DefaultRegion, Endpoint: emu.URL,
		RoleARN: EmulatedRoleARN, Create: true}}, emu
}

// EmulatorCredentials points the AWS SDK's default credential chain (of
// this process and the commands it runs) at the emulator's default
// credentials, through the environment, for the rest of the test (which
// therefore must not run in parallel).
func EmulatorCredentials(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", emulator.DefaultAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", emulator.DefaultSecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
}

// SeededEmulator starts a Roles Anywhere emulator for the test that
// trusts c's roots (an enabled trust anchor) and has a profile for role,
// and returns it with the anchor's and the profile's ARNs.
func (c *CA) SeededEmulator(t testing.TB, role string) (emu *emulator.Server, anchorARN, profileARN string) {
	t.Helper()
	emu = emulator.NewServer(emulator.Options{})
	t.Cleanup(emu.Close)
	anchorARN, profileARN, err := emu.Seed(c.Authority.Roots(), role)
	if err != nil {
		t.Fatal(err)
	}
	return emu, anchorARN, profileARN
}
