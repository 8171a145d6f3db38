package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/store"
)

// leaseName is the one lease: its holder builds CRLs and syncs trust
// anchors.
const leaseName = "leader"

// DefaultLeaseTTL is how long a lease lasts without renewal: a dead
// leader is replaced within about DefaultLeaseTTL, while a renewal every
// third of it survives two missed rounds (a slow query, a pool hiccup).
const DefaultLeaseTTL = 6 * time.Second

// LeaseOptions tune the leader lease.
type LeaseOptions struct {
	// Holder names this replica in the lease row; default host-pid-random.
	Holder string
	// TTL is how long a lease lasts without renewal (default
	// DefaultLeaseTTL).
	TTL time.Duration
}

// lease keeps (or campaigns for) the leader row in table leases. The row
// holds the holder's name, an epoch that grows every time the lease
// changes hands (the fencing token), and an expiry in the database's
// clock, so replicas' clock skew does not matter. Locally the replica
// counts itself leader only until the moment it sent its last successful
// renewal plus TTL (its own monotonic clock), so it stops acting before
// the database lets anyone else take over.
type lease struct {
	db     *DB
	holder string
	ttl    time.Duration

	mu      sync.Mutex
	epoch   int64
	until   time.Time
	changed chan struct{} // closed and replaced on every change

	stopOnce sync.Once
	done     chan struct{}
}

func newLease(db *DB, o LeaseOptions) *lease {
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Holder = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	return &lease{db: db, holder: o.Holder, ttl: o.TTL, changed: make(chan struct{}), done: make(chan struct{})}
}

// current returns the epoch and whether this replica leads now.
func (l *lease) current() (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch, l.epoch > 0 && time.Now().Before(l.until)
}

func (l *lease) set(epoch int64, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.epoch
	l.epoch, l.until = epoch, until
	if was != epoch {
		close(l.changed)
		l.changed = make(chan struct{})
		if epoch > 0 {
			l.db.log.Info("leader lease taken", "holder", l.holder, "epoch", epoch)
		} else {
			l.db.log.Info("leader lease lost or released", "holder", l.holder, "epoch", was)
		}
	}
}

func (l *lease) watch() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *lease) run() {
	defer l.db.wg.Done()
	for {
		start := time.Now()
		epoch, err := l.try()
		switch {
		case err != nil:
			if _, ok := l.current(); ok {
				l.db.log.Warn("leader lease renewal failed", "err", err)
			}
			if !time.Now().Before(l.untilSnapshot()) {
				l.set(0, time.Time{})
			}
		case epoch > 0:
			l.set(epoch, start.Add(l.ttl))
		default:
			l.set(0, time.Time{})
		}
		wait := l.ttl / 3
		if _, ok := l.current(); !ok {
			wait = l.ttl / 6 // campaign a little more often than the leader renews
		}
		t := time.NewTimer(wait)
		select {
		case <-l.done:
			t.Stop()
			l.release()
			return
		case <-t.C:
		}
	}
}

func (l *lease) untilSnapshot() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// try takes an expired (or absent) lease, or extends ours; it returns the
// epoch held, 0 if another replica holds it.
func (l *lease) try() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
	defer cancel()
	var epoch int64
	err := l.db.pool.QueryRow(ctx, `INSERT INTO leases AS l (name, holder, epoch, expires_at)
		VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
			epoch = CASE WHEN l.holder = excluded.holder THEN l.epoch ELSE l.epoch + 1 END
		WHERE l.holder = excluded.holder OR l.expires_at < now()
		RETURNING epoch`, leaseName, l.holder, l.ttl.Milliseconds()).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return epoch, err
}

// release ends our lease at once, so another replica takes over without
// waiting for it to expire (a clean shutdown).
func (l *lease) release() {
	epoch, ok := l.current()
	l.set(0, time.Time{})
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = l.db.pool.Exec(ctx, "UPDATE leases SET expires_at = now() - interval '1 second' WHERE name = $1 AND holder = $2 AND epoch = $3", leaseName, l.holder, epoch)
}

func (l *lease) stop() { l.stopOnce.Do(func() { close(l.done) }) }

// Leader reports the leader epoch and whether this replica holds the
// lease now. Without a lease (Options.Lease nil) the engine always leads
// with epoch 1: a single process.
func (db *DB) Leader() (epoch int64, ok bool) {
	if db.lease == nil {
		return 1, true
	}
	return db.lease.current()
}

// LeaderChanged returns a channel closed at the next change of
// leadership (nil without a lease: it never changes).
func (db *DB) LeaderChanged() <-chan struct{} {
	if db.lease == nil {
		return nil
	}
	return db.lease.watch()
}

var _ store.Leadership = (*DB)(nil)
