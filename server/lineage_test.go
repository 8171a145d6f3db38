package server_test

import (
	"context"
	"crypto"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
)

// held is one certificate of a lineage and the key it was issued for.
type held struct {
	b   *v1.Bundle
	key crypto.Signer
}

// renewWith renews h over mTLS with a new key.
func renewWith(t *testing.T, c *testca.CA, h held) (held, error) {
	t.Helper()
	key := newKey(t)
	resp, err := c.Client(t, tlsCert(t, h.b, h.key)).Certificates.Renew(context.Background(), connect.NewRequest(&v1.RenewRequest{Csr: csr(t, key, nil)}))
	if err != nil {
		return held{}, err
	}
	return held{resp.Msg.GetBundle(), key}, nil
}

func mustRenew(t *testing.T, c *testca.CA, h held) held {
	t.Helper()
	n, err := renewWith(t, c, h)
	if err != nil {
		t.Fatalf("renew %s: %v", h.b.GetSerial(), err)
	}
	return n
}

// Revoking any certificate of a lineage stops the identity: after A→B→C,
// revoking B revokes A and C too, and A can no longer renew into a fresh,
// unrevoked certificate (issue 9, item 3).
func TestRevokingAnyCertificateStopsTheLineage(t *testing.T) {
	for _, reason := range []int{revocation.ReasonKeyCompromise, revocation.ReasonCessationOfOperation, revocation.ReasonSuperseded} {
		t.Run(revocation.ReasonName(reason), func(t *testing.T) {
			c := testca.Start(t, testca.Options{})
			b, key := enroll(t, c, "lineage.covalent.example.net")
			a := held{b, key}
			bb := mustRenew(t, c, a)
			cc := mustRenew(t, c, bb)
			res, err := c.Revocation.Revoke(context.Background(), revocation.Request{Serial: bb.b.GetSerial(), Reason: reason, By: "test"})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Certificates) != 3 {
				t.Errorf("revoked %d certificates, want the 3 of the lineage", len(res.Certificates))
			}
			for _, h := range []held{a, bb, cc} {
				rec, err := c.Store.GetCert(h.b.GetSerial())
				if err != nil {
					t.Fatal(err)
				}
				if rec.Revocation == nil || rec.Revocation.Reason != reason {
					t.Errorf("%s: revocation %+v, want reason %d", rec.Serial, rec.Revocation, reason)
				}
			}
			if _, err := renewWith(t, c, a); connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("the predecessor renewed after its successor was revoked: err = %v", err)
			}
		})
	}
}

// A certificate whose successor exists may renew again only within
// RenewalRetryGrace of its first renewal (the agent's crash-retry case);
// renewing it again does not extend the grace (issue 9, item 3).
func TestSupersededCertificateCannotRenewAfterTheGrace(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := testca.Start(t, testca.Options{Clock: clk})
	b, key := enroll(t, c, "retry.covalent.example.net")
	a := held{b, key}
	next := mustRenew(t, c, a)

	clk.Advance(issuance.RenewalRetryGrace / 2)
	mustRenew(t, c, a) // the crash retry: the host never wrote next

	clk.Advance(issuance.RenewalRetryGrace/2 + time.Minute)
	_, err := renewWith(t, c, a)
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("renewing a certificate %s after its first renewal: err = %v, want FailedPrecondition", issuance.RenewalRetryGrace+time.Minute, err)
	}
	mustRenew(t, c, next) // the successor renews as usual
}
