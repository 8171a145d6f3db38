package testca

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
)

// Redemptions counts the outcomes of RedeemConcurrently.
type Redemptions struct {
	// OK enrollments succeeded; Refused were answered "token unknown,
	// used, expired or revoked" (Unauthenticated); Retried counts the
	// retryable answers (Unavailable) that were tried again.
	OK, Refused, Retried int64
	// WinnerLost is set when no enrollment succeeded but some were
	// retried: the winning redemption's answer was lost after its commit
	// and its retry was refused. The store still holds one certificate.
	WinnerLost bool
}

// redeemAttempts bounds the tries of one redemption: a retryable answer
// comes from a loaded machine (a connection the handshake cap or hello
// deadline closed, a store that did not answer in time), not from the
// rule under test.
const redeemAttempts = 5

// RedeemConcurrently sends n enrollments with one token and CSR at once,
// spread over the CAs in cas in turn, and counts the outcomes; any other
// answer fails t. Each CA's anonymous client makes one request first, so
// the n share an HTTP/2 connection as a real client's do, instead of n
// TLS handshakes from one address that the per-source cap refuses by
// design. A retryable answer is retried (up to redeemAttempts), as the
// agent retries: every retry is one more redemption attempt.
func RedeemConcurrently(t testing.TB, cas []*CA, token string, csr []byte, n int) Redemptions {
	t.Helper()
	for _, c := range cas {
		if _, err := c.Anonymous.Roots(context.Background()); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	var ok, refused, retried atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		c := cas[i%len(cas)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var err error
			for range redeemAttempts {
				_, err = c.Anonymous.Certificates.Enroll(context.Background(), connect.NewRequest(&v1.EnrollRequest{Token: token, Csr: csr}))
				if connect.CodeOf(err) != connect.CodeUnavailable {
					break
				}
				retried.Add(1)
			}
			switch {
			case err == nil:
				ok.Add(1)
			case connect.CodeOf(err) == connect.CodeUnauthenticated:
				refused.Add(1) // one answer for unknown, used, expired, revoked
			default:
				t.Errorf("enroll: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	r := Redemptions{OK: ok.Load(), Refused: refused.Load(), Retried: retried.Load()}
	r.WinnerLost = r.OK == 0 && r.Retried > 0
	return r
}

// CheckOneWinner fails t unless exactly one of n redemptions succeeded
// and the others were refused (or, when the winner's answer was lost in
// transit, all n were refused after a retry).
func (r Redemptions) CheckOneWinner(t testing.TB, n int) {
	t.Helper()
	want := int64(1)
	if r.WinnerLost {
		want = 0
		t.Log("the winning redemption's answer was lost in transit; its retry was refused")
	}
	t.Logf("%d retryable answers retried", r.Retried)
	if r.OK != want || r.Refused != int64(n)-want {
		t.Fatalf("%d enrollments succeeded and %d were refused; want %d and %d", r.OK, r.Refused, want, int64(n)-want)
	}
}
