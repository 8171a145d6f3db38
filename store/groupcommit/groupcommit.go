// Package groupcommit owns the group-commit queue both store engines use:
// concurrent writers queue their writes, and a writer goroutine takes them
// in groups that share one durable commit, so the disk's (bbolt) or the
// database's (PostgreSQL) per-commit flush is paid once per group rather
// than once per certificate. The engines own what a group's commit is;
// this package owns only how a group is gathered and how the queue closes.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is what Submit returns once Close has been called. The store
// engines return store.ErrClosed in its place.
var ErrClosed = errors.New("group-commit queue closed")

// depth is how many writes may wait for a writer before Submit blocks:
// far more than the concurrency the server admits (its in-flight limit),
// so a burst never blocks on the queue, only on the commit.
const depth = 4096

// Queue hands writes of type T from many goroutines to one or more writer
// goroutines. Submit and Closed are safe for concurrent use; Next is
// called by the writers; Close once, after which Next drains what was
// queued and then reports false.
type Queue[T any] struct {
	ops    chan T
	mu     sync.RWMutex
	closed bool
	max    int
	linger time.Duration
}

// New returns a queue whose groups hold at most max writes. linger is how
// long Next waits for more writes when the writer's previous group held
// more than one (writers are concurrent, so the next ones are about to
// arrive); 0 never waits. A lone writer is never delayed.
func New[T any](max int, linger time.Duration) *Queue[T] {
	if max < 1 {
		max = 1
	}
	return &Queue[T]{ops: make(chan T, depth), max: max, linger: linger}
}

// Submit queues op. It returns ErrClosed after Close, or ctx's error if
// ctx ends before op is queued. Once Submit returns nil, a writer will
// take op even if ctx ends later: the caller must wait for its outcome
// (the write may commit), never report failure on its own.
func (q *Queue[T]) Submit(ctx context.Context, op T) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	select {
	case q.ops <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Closed reports whether Close has been called.
func (q *Queue[T]) Closed() bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.closed
}

// Close stops new submissions. Writes already queued are still handed
// out by Next. It reports false if the queue was closed already.
func (q *Queue[T]) Close() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.closed = true
	close(q.ops)
	return true
}

// Serve hands each group to commit until the queue is closed and
// drained. An engine runs it in each of its writer goroutines; commit
// must deliver every write's outcome before it returns.
func (q *Queue[T]) Serve(commit func(group []T)) {
	group := make([]T, 0, q.max)
	for {
		var ok bool
		if group, ok = q.Next(group, len(group)); !ok {
			return
		}
		commit(group)
	}
}

// Next blocks for the next write and returns it with whatever else is
// queued, up to the queue's max, reusing buf's storage. When prev (the
// size of the writer's previous group) is above one, it first waits up
// to the queue's linger for more. ok is false once the queue is closed
// and empty.
func (q *Queue[T]) Next(buf []T, prev int) (group []T, ok bool) {
	op, ok := <-q.ops
	if !ok {
		return buf[:0], false
	}
	group = append(buf[:0], op)
	var linger <-chan time.Time
	if prev > 1 && q.linger > 0 {
		timer := time.NewTimer(q.linger)
		defer timer.Stop()
		linger = timer.C
	}
	for len(group) < q.max {
		if linger != nil {
			// Wait for more until the linger ends.
			select {
			case op, ok = <-q.ops:
			case <-linger:
				linger = nil
				continue
			}
		} else {
			// Take only what is queued already.
			select {
			case op, ok = <-q.ops:
			default:
				return group, true
			}
		}
		if !ok {
			return group, true
		}
		group = append(group, op)
	}
	return group, true
}
