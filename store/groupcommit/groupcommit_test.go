package groupcommit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// newQueue is the queue every test starts from: groups of at most 4, and
// a linger long enough that a test would notice waiting for it.
func newQueue(t *testing.T, linger time.Duration) *Queue[int] {
	t.Helper()
	return New[int](4, linger)
}

func TestNextGathersWhatIsQueuedUpToMax(t *testing.T) {
	q := newQueue(t, 0)
	for i := range 6 {
		if err := q.Submit(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	g, ok := q.Next(nil, 0)
	if !ok || len(g) != 4 || g[0] != 0 || g[3] != 3 {
		t.Fatalf("first group = %v, %v; want [0 1 2 3]", g, ok)
	}
	g, ok = q.Next(g, len(g))
	if !ok || len(g) != 2 || g[0] != 4 || g[1] != 5 {
		t.Fatalf("second group = %v, %v; want [4 5]", g, ok)
	}
}

func TestNextLingersOnlyAfterAGroup(t *testing.T) {
	q := newQueue(t, time.Hour)
	q.Submit(context.Background(), 1)
	// A lone writer (previous group of one) is never delayed: with an
	// hour's linger this would hang.
	if g, ok := q.Next(nil, 1); !ok || len(g) != 1 {
		t.Fatalf("group = %v, %v; want [1]", g, ok)
	}
	// After a group of several, Next waits for more, up to max.
	done := make(chan []int)
	go func() {
		g, _ := q.Next(nil, 2)
		done <- g
	}()
	for i := range 4 {
		q.Submit(context.Background(), 10+i)
	}
	if g := <-done; len(g) != 4 {
		t.Fatalf("lingering group = %v; want 4 writes", g)
	}
}

func TestCloseDrainsThenStops(t *testing.T) {
	q := newQueue(t, time.Hour)
	q.Submit(context.Background(), 1)
	q.Submit(context.Background(), 2)
	if !q.Close() || q.Close() {
		t.Fatal("Close reports true once, then false")
	}
	if !q.Closed() {
		t.Fatal("Closed() = false after Close")
	}
	if err := q.Submit(context.Background(), 3); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close = %v; want ErrClosed", err)
	}
	// The lingering writer stops at the closed channel instead of waiting.
	if g, ok := q.Next(nil, 2); !ok || len(g) != 2 {
		t.Fatalf("drain = %v, %v; want [1 2]", g, ok)
	}
	if _, ok := q.Next(nil, 2); ok {
		t.Fatal("Next on a closed, empty queue reports ok")
	}
}

func TestSubmitGivesUpWithItsContext(t *testing.T) {
	q := New[int](1, 0)
	for range depth {
		q.Submit(context.Background(), 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Submit(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit on a full queue with an ended context = %v; want context.Canceled", err)
	}
}
