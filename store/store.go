// Package store owns lanyard's durable state: certificates and their
// indexes (by CN, profile, expiry, renewal and revocation), enrollment
// tokens, the audit log, CRL numbers and admin sessions. The contract
// every engine implements is the Store interface (contract.go), proved by
// the conformance suite in store/storetest; services depend on Store, or
// on one of its parts, never on an engine. DB is the embedded engine: one
// bbolt file.
//
// Writes go through a single writer goroutine that groups concurrent
// requests into one transaction (group commit): every caller returns only
// after the transaction holding its write is fsynced, so a certificate is
// durable before the server hands it out, while hundreds of requests share
// one fsync. The schema belongs to package migrations, applied on Open.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lanyard/lanyard/internal/atomicfile"
	"github.com/lanyard/lanyard/migrations"
	"github.com/lanyard/lanyard/store/groupcommit"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound     = errors.New("not found")
	ErrTokenUsed    = errors.New("enrollment token already used")
	ErrTokenExpired = errors.New("enrollment token expired")
	ErrTokenRevoked = errors.New("enrollment token revoked")
	ErrRevoked      = errors.New("certificate revoked")
	ErrClosed       = errors.New("store closed")
	ErrExists       = errors.New("already exists")
	// ErrUnavailable means the engine could not be reached (a database
	// restarting, a lost connection); the write did not happen and the
	// client may retry. The server answers it with a retryable status.
	ErrUnavailable = errors.New("store unavailable")
	// ErrStaleCRL means a CRL number at or below the newest stored one
	// was offered: a CRL can never go back.
	ErrStaleCRL = errors.New("CRL number not newer than the stored one")
	// ErrNotLeader means this replica does not hold the leader lease (or
	// its epoch was superseded), so it may not take a CRL number.
	ErrNotLeader = errors.New("not the leader")
	// ErrConflict means a condition of SwapMeta (or InsertCertSwap) did
	// not hold: another writer changed the value first; nothing was
	// written.
	ErrConflict = errors.New("meta value changed by another writer")
	// ErrNotAPath means Open was given a URL (postgres://…), which only
	// store/engine opens.
	ErrNotAPath = errors.New("not a bbolt file path")
)

// Options tune Open.
type Options struct {
	// Logger receives migration and backup messages; nil means slog.Default.
	Logger *slog.Logger
	// NoBackup skips the copy taken before pending migrations run.
	NoBackup bool
	// MaxBatch caps how many writes share one transaction. Default 512:
	// large enough that at c=64 a burst fits in one or two commits, small
	// enough that one transaction never holds the writer for long.
	MaxBatch int
	// Linger is how long the writer waits for more writes when the
	// previous group held more than one (so a lone writer never waits).
	// Default 1ms, a fraction of one fsync on this kind of disk.
	Linger time.Duration
	// Timeout for acquiring the file lock (another lanyard holds it).
	Timeout time.Duration
}

// DB is the bbolt-backed store. All methods are safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	path string
	log  *slog.Logger
	ops  *groupcommit.Queue[*writeOp]
	done chan struct{}
	opts Options
	wg   sync.WaitGroup
	// commits and committed count transactions and the writes they held.
	commits, committed atomic.Uint64
}

type writeOp struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// Open opens (creating if needed) the store at path, takes a backup copy
// when migrations are pending, and applies them.
func Open(path string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.Linger == 0 {
		opts.Linger = time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if strings.Contains(path, "://") {
		// A postgres:// URL given to the bbolt engine would become a
		// folder named "postgres:" holding a new, empty store.
		return nil, fmt.Errorf("open store %s: a URL, not a bbolt file path (open it through store/engine): %w", path, ErrNotAPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	_, statErr := os.Stat(path)
	existed := statErr == nil
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        opts.Timeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	cur, err := migrations.Current(bdb)
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open store %s: read schema: %w", path, err)
	}
	if existed && cur < migrations.Latest() && cur > 0 && !opts.NoBackup {
		backup := fmt.Sprintf("%s.pre-migration-%d.bak", path, cur)
		if err := copyDB(bdb, backup); err != nil {
			bdb.Close()
			return nil, fmt.Errorf("open store %s: backup before migrating: %w", path, err)
		}
		opts.Logger.Info("store backed up before migration", "backup", backup, "from", cur, "to", migrations.Latest())
	}
	applied, err := migrations.Apply(bdb)
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if len(applied) > 0 {
		opts.Logger.Info("store migrated", "path", path, "applied", applied)
	}
	db := &DB{bolt: bdb, path: path, log: opts.Logger, ops: groupcommit.New[*writeOp](opts.MaxBatch, opts.Linger), done: make(chan struct{}), opts: opts}
	// One writer: bbolt allows one write transaction at a time.
	db.wg.Go(func() { db.ops.Serve(db.commitGroup) })
	return db, nil
}

// Path is the file the store lives in.
func (db *DB) Path() string { return db.path }

// Close stops the writer after pending writes and closes the file.
func (db *DB) Close() error {
	if !db.ops.Close() {
		return nil
	}
	db.wg.Wait()
	return db.bolt.Close()
}

func copyDB(bdb *bolt.DB, dst string) error {
	return bdb.View(func(tx *bolt.Tx) error { return writeFileAtomic(dst, tx) })
}

// writeFileAtomic writes a snapshot of tx to dst (0600) with atomicfile.
func writeFileAtomic(dst string, tx *bolt.Tx) error {
	return atomicfile.WriteFunc(dst, 0o600, func(w io.Writer) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

// Backup writes a consistent copy of the store to dst (atomically,
// mode 0600) while the store stays online.
func (db *DB) Backup(dst string) error {
	if err := db.bolt.View(func(tx *bolt.Tx) error { return writeFileAtomic(dst, tx) }); err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	return nil
}

// BackupTo streams a consistent copy of the store to w.
func (db *DB) BackupTo(w io.Writer) error {
	return db.bolt.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

// update runs fn in a write transaction shared with other concurrent
// writers and returns once that transaction is durable. fn may run more
// than once (when another write in its group fails, each is retried
// alone), so it must be idempotent given the same database state.
func (db *DB) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	op := &writeOp{fn: fn, err: make(chan error, 1)}
	if err := db.ops.Submit(ctx, op); err != nil {
		if errors.Is(err, groupcommit.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	// Once queued the write will happen; wait for its outcome even if the
	// caller's context ends, so a caller never reports failure for a write
	// that then commits.
	return <-op.err
}

// view runs a read-only transaction.
func (db *DB) view(fn func(*bolt.Tx) error) error { return db.bolt.View(fn) }

// commitGroup runs every op of the group in one transaction. If one of
// them fails, the transaction is rolled back and every op is run alone.
func (db *DB) commitGroup(group []*writeOp) {
	var failed error
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for _, op := range group {
			if err := safeRun(op.fn, tx); err != nil {
				failed = err
				return err
			}
		}
		return nil
	})
	if err == nil {
		db.commits.Add(1)
		db.committed.Add(uint64(len(group)))
		for _, op := range group {
			op.err <- nil
		}
		return
	}
	if failed == nil || len(group) == 1 {
		// The commit itself failed (the disk): every write shares its fate,
		// and retrying them one by one would fail the same way.
		err = storageError(err)
		for _, op := range group {
			op.err <- err
		}
		return
	}
	for _, op := range group {
		op.err <- storageError(db.bolt.Update(func(tx *bolt.Tx) error { return safeRun(op.fn, tx) }))
	}
}

// storageError marks a write that failed because the disk is full (no
// space, quota, or the file-size limit) as ErrUnavailable: nothing was
// committed (bbolt writes its meta page last), the store stays usable,
// and the same write succeeds once space returns, so the client may
// retry. bbolt reports a failed file resize with the cause formatted into
// the message, hence the text match beside errors.Is.
func storageError(err error) error {
	if err == nil {
		return nil
	}
	full := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
	if !full {
		msg := err.Error()
		for _, s := range []string{syscall.ENOSPC.Error(), syscall.EDQUOT.Error(), syscall.EFBIG.Error()} {
			if strings.Contains(msg, s) {
				full = true
				break
			}
		}
	}
	if !full {
		return err
	}
	return fmt.Errorf("%w: disk full: %v", ErrUnavailable, err)
}

func safeRun(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store write panicked: %v", r)
		}
	}()
	return fn(tx)
}

// CommitStats reports how many durable transactions the writer made and
// how many writes they held (their ratio is the mean group size).
func (db *DB) CommitStats() (commits, writes uint64) {
	return db.commits.Load(), db.committed.Load()
}

// Stats reports bbolt's file size, for metrics and the dashboard.
func (db *DB) Stats() (size int64, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	return size, err
}
