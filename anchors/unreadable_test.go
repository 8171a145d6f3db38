package anchors_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store"
)

// downMeta is a store whose reads fail as an unreachable database's do
// while down is set.
type downMeta struct {
	store.Meta
	down atomic.Bool
}

func (m *downMeta) GetMeta(key string, v any) error {
	if m.down.Load() {
		return fmt.Errorf("read %s: %w", key, store.ErrUnavailable)
	}
	return m.Meta.GetMeta(key, v)
}

// TestSyncCreatesNoSecondAnchorWhileTheStatusIsUnreadable: a replica that
// starts (or takes the lease) while the database is down could not read
// the recorded status, and took the empty status for "no trust anchor
// yet": its sync created a second trust anchor, which took every later
// CRL while the hosts kept using the first, so revoked hosts kept getting
// credentials (found by the chaos soak). Now the sync refuses to create
// while the store cannot confirm that none is recorded, and once it can,
// it carries on with the recorded anchor.
func TestSyncCreatesNoSecondAnchorWhileTheStatusIsUnreadable(t *testing.T) {
	c := testca.Start(t, testca.Options{})
	emu, _, first, rep := syncedEmulator(t, c)
	first.Close()

	db := &downMeta{Meta: c.Store}
	db.down.Store(true)
	cfg := emuConfig(emu)
	cl, err := anchors.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := anchors.New(cfg, cl, c.Authority, db, c.Now, nil)
	defer s.Close()
	if _, err := s.Sync(context.Background(), false); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("sync with the status unreadable: %v, want %v and nothing created", err, store.ErrUnavailable)
	}
	s.Reload() // a change of leader while the store is down keeps what it knows
	db.down.Store(false)
	got, err := s.Sync(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Created || got.TrustAnchorARN != rep.TrustAnchorARN {
		t.Fatalf("sync once the store answers: created %v, anchor %s; want the recorded %s", got.Created, got.TrustAnchorARN, rep.TrustAnchorARN)
	}
	if n := len(emu.TrustAnchors()); n != 1 {
		t.Fatalf("the emulator holds %d trust anchors, want 1", n)
	}
}
