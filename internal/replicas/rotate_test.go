package replicas_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/store/postgres"
)

// TestRotateIntermediateRolling rotates the intermediate of two replicas
// on one database under enroll and renewal load, the way the soak does
// and the operations guide says (rotate on the shared CA folder, then
// restart the replicas one at a time): traffic keeps flowing, every
// certificate a client received is recorded, both replicas issue from the
// new intermediate afterwards, and a host of the old intermediate still
// gets credentials at the emulator and is refused there once revoked.
func TestRotateIntermediateRolling(t *testing.T) {
	c := newCluster(t, 2)
	for _, r := range c.reps {
		c.start(t, r)
	}
	for _, r := range c.reps {
		waitHealthy(t, r)
	}
	c.waitLeader(t, 3*postgres.DefaultLeaseTTL)
	ra := c.rolesAnywhere(t)
	old := currentIntermediate(t, c.caDir)
	b, key := soakEnroll(t, c.reps[0], "before.covalent.example.net")
	h := writeHostFiles(t, filepath.Join(t.TempDir(), "before"), b, key)

	led := servetest.NewLedger()
	l := startLoad(t, c, led, 4)
	inter := c.rotateIntermediate(t)
	if bytes.Equal(inter.SubjectKeyId, old.SubjectKeyId) {
		t.Fatal("rotate-intermediate kept the old intermediate")
	}
	for _, r := range c.reps {
		nb, _ := soakEnroll(t, r, fmt.Sprintf("after-%s.covalent.example.net", strings.ToLower(r.name)))
		if leaf := bundleLeaf(t, nb); !bytes.Equal(leaf.AuthorityKeyId, inter.SubjectKeyId) {
			t.Fatalf("replica %s issued from %x after the rotation to %x", r.name, leaf.AuthorityKeyId, inter.SubjectKeyId)
		}
	}
	l.stop()
	if n := c.checkLedger(t, led); n == 0 {
		t.Fatal("no certificate was issued during the rotation")
	}

	// The old intermediate's host: still trusted, then revoked and refused.
	if err := ra.credentialProcess(t, h); err != nil {
		t.Fatalf("a host of the retired intermediate: %v", err)
	}
	_, n := soakRevoke(t, c.reps[1], b.GetSerial())
	c.waitPushed(t, n)
	if err := ra.credentialProcess(t, h); err == nil {
		t.Fatalf("host %s of the retired intermediate still gets credentials after its revocation (CRL %d pushed)", b.GetSerial(), n)
	}
}
