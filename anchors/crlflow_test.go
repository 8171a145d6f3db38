package anchors

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	"github.com/lanyard/lanyard/revocation"
)

// pushLog is the Roles Anywhere API with the number of every CRL sent to
// it (ImportCrl, UpdateCrl) recorded in order; while hold is set, a push
// reports on entered and waits for hold to close.
type pushLog struct {
	API
	mu      sync.Mutex
	numbers []int64
	hold    chan struct{}
	entered chan struct{}
}

func (p *pushLog) record(data []byte) {
	p.mu.Lock()
	hold := p.hold
	if l := parseCRL(data); l != nil {
		p.numbers = append(p.numbers, l.Number.Int64())
	}
	p.mu.Unlock()
	if hold != nil {
		p.entered <- struct{}{}
		<-hold
	}
}

func (p *pushLog) ImportCrl(ctx context.Context, in *rolesanywhere.ImportCrlInput, o ...func(*rolesanywhere.Options)) (*rolesanywhere.ImportCrlOutput, error) {
	p.record(in.CrlData)
	return p.API.ImportCrl(ctx, in, o...)
}

func (p *pushLog) UpdateCrl(ctx context.Context, in *rolesanywhere.UpdateCrlInput, o ...func(*rolesanywhere.Options)) (*rolesanywhere.UpdateCrlOutput, error) {
	p.record(in.CrlData)
	return p.API.UpdateCrl(ctx, in, o...)
}

func (p *pushLog) pushed() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int64(nil), p.numbers...)
}

// TestCRLBurstReachesAnchorNewest: CRLs flow one way, revocation ->
// PublishCRL -> one latest-wins queue. While a push is slow, a burst of
// CRLs is made (and an older CRL handed in late): the trust anchor then
// gets the newest one only, the numbers it receives only go up, and a
// stale CRL queues nothing.
func TestCRLBurstReachesAnchorNewest(t *testing.T) {
	var api *pushLog
	f, rev, s := crlFixture(t, func(cl API) API {
		api = &pushLog{API: cl, entered: make(chan struct{}, 1)}
		return api
	})
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	first := rev.Current()
	rev.SetPublisher(s)
	_, err := s.WaitCRL(wctx, first.Number)
	must(t, err)

	// The next push hangs at AWS while the burst is made.
	hold := make(chan struct{})
	api.mu.Lock()
	api.hold = hold
	api.mu.Unlock()
	slow, err := rev.Rebuild(ctx)
	must(t, err)
	select {
	case <-api.entered:
	case <-wctx.Done():
		t.Fatal("the push of the CRL after the first never started")
	}
	api.mu.Lock()
	api.hold = nil
	api.mu.Unlock()
	var newest *revocation.CRL
	for range 20 {
		newest, err = rev.Rebuild(ctx)
		must(t, err)
	}
	s.PublishCRL(ctx, slow) // late and older: dropped
	close(hold)
	_, err = s.WaitCRL(wctx, newest.Number)
	must(t, err)

	got := api.pushed()
	want := []int64{first.Number, slow.Number, newest.Number}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("CRLs pushed %v, want %v: the one in flight, then the newest of the burst", got, want)
	}
	if n := f.srv.CRLs()[0].List.Number.Int64(); n != newest.Number {
		t.Fatalf("AWS holds CRL %d, want the newest %d", n, newest.Number)
	}

	// A stale CRL queues nothing (dropped before the queue).
	s.PublishCRL(ctx, first)
	s.crlMu.Lock()
	queued := s.pending != nil
	s.crlMu.Unlock()
	if queued {
		t.Fatal("an older CRL was queued after a newer one")
	}
}
