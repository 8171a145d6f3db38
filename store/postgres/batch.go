package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/groupcommit"
)

// writeOp is one issuance write: a single statement that returns 1 when
// it applied and 0 when its condition (token unused, predecessor not
// revoked) did not hold, and the serial it records, by which a lost
// commit is resolved.
type writeOp struct {
	sql    string
	args   []any
	serial []byte
	res    chan opResult
}

type opResult struct {
	applied bool
	err     error
}

// submit queues op for a group commit and waits for its outcome. Once
// queued the write runs to its end even if ctx ends (the contract).
func (db *DB) submit(ctx context.Context, op *writeOp) (bool, error) {
	op.res = make(chan opResult, 1)
	if err := db.ops.Submit(ctx, op); err != nil {
		if errors.Is(err, groupcommit.ErrClosed) {
			return false, store.ErrClosed
		}
		return false, err
	}
	r := <-op.res
	return r.applied, r.err
}

// commitGroup sends the group's statements as one pipeline: pgx sends
// them with a single Sync, so PostgreSQL runs them in one implicit
// transaction, committed (and flushed) once.
//   - All answered: each op gets its own result.
//   - The server refused one (a duplicate serial, a deadlock): nothing
//     committed; every op runs again alone, so one bad write fails alone.
//   - The connection broke: the commit may or may not have happened. The
//     outcome is looked up by the serials (they exist iff it committed);
//     ops whose record is absent run again alone. A token is never
//     redeemed twice: the redemption statement only applies to an unused
//     token, whatever happened before.
func (db *DB) commitGroup(group []*writeOp) {
	// The group may wait for a connection behind a burst of reads, then
	// for row locks held by other groups: allow that on top of the query.
	ctx, cancel := context.WithTimeout(context.Background(), db.opts.QueryTimeout+db.opts.ResolveTimeout)
	defer cancel()
	results, sent, err := db.sendGroup(ctx, group)
	if err == nil {
		db.commits.Add(1)
		db.committed.Add(uint64(len(group)))
		for i, op := range group {
			op.res <- opResult{applied: results[i]}
		}
		return
	}
	var pe *pgconn.PgError
	if !sent || errors.As(err, &pe) || pgconn.SafeToRetry(err) {
		// Certainly not committed.
		for _, op := range group {
			op.res <- db.runAlone(op)
		}
		return
	}
	db.log.Warn("group commit outcome unknown; resolving by lookup", "writes", len(group), "err", err)
	for _, op := range group {
		op.res <- db.resolve(op)
	}
}

// sendGroup reports sent false when no connection could be had (nothing
// reached the server).
func (db *DB) sendGroup(ctx context.Context, group []*writeOp) ([]bool, bool, error) {
	b := &pgx.Batch{}
	for _, op := range group {
		b.Queue(op.sql, op.args...)
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	defer conn.Release()
	br := conn.SendBatch(ctx, b)
	results := make([]bool, len(group))
	var firstErr error
	for i := range group {
		var n int
		if err := br.QueryRow().Scan(&n); err != nil {
			firstErr = err
			break
		}
		results[i] = n > 0
	}
	if err := br.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	return results, true, firstErr
}

// runAlone runs one op in its own implicit transaction. While no
// connection can be had (nothing sent) it retries with backoff, bounded by
// ResolveTimeout; a failure after sending is resolved by lookup.
func (db *DB) runAlone(op *writeOp) opResult {
	deadline := time.Now().Add(db.opts.ResolveTimeout)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), db.opts.QueryTimeout)
		conn, err := db.pool.Acquire(ctx)
		if err == nil {
			var n int
			err = conn.QueryRow(ctx, op.sql, op.args...).Scan(&n)
			conn.Release()
			cancel()
			var pe *pgconn.PgError
			switch {
			case err == nil:
				db.commits.Add(1)
				db.committed.Add(1)
				return opResult{applied: n > 0}
			case errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01"):
				continue
			case errors.As(err, &pe) && !isUnavailable(pe):
				return opResult{err: mapErr(err)}
			case !errors.As(err, &pe) && !pgconn.SafeToRetry(err):
				return db.resolve(op) // sent, then the connection broke
			}
		} else {
			cancel()
		}
		if time.Now().After(deadline) {
			return opResult{err: mapErr(err)}
		}
		time.Sleep(wait) // backoff while the database is down
	}
}

// resolve learns whether op's record was committed; if not, it runs op
// again alone. If the database stays out of reach past ResolveTimeout the
// answer is ErrUnavailable with the outcome unknown: the record then
// exists with its token or predecessor, or not at all.
func (db *DB) resolve(op *writeOp) opResult {
	deadline := time.Now().Add(db.opts.ResolveTimeout)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), db.opts.QueryTimeout)
		var found bool
		err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM certs WHERE serial = $1)", op.serial).Scan(&found)
		cancel()
		if err == nil {
			if found {
				db.commits.Add(1)
				db.committed.Add(1)
				return opResult{applied: true}
			}
			return db.runAlone(op)
		}
		if time.Now().After(deadline) {
			return opResult{err: fmt.Errorf("%w: commit outcome unknown: %v", store.ErrUnavailable, err)}
		}
		time.Sleep(wait) // backoff while the database is down
	}
}

func isUnavailable(pe *pgconn.PgError) bool {
	return errors.Is(mapErr(pe), store.ErrUnavailable)
}
