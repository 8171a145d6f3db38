// Package postgres is lanyard's PostgreSQL store engine (pgx v5): the
// store.Store contract on a database that several `lanyard serve`
// replicas share. It owns the connection pool, the schema migrations
// (migrations/postgres, applied under an advisory lock), the batched
// group commit of issuances, and the leader lease.
//
// Durability: the engine never turns synchronous_commit off (it refuses a
// server or DSN that does), so a write returns only after its commit is
// flushed. Concurrent issuances share commits: writer goroutines send a
// group of them as one pipelined implicit transaction (one round trip, one
// WAL flush), as the bbolt engine's single writer does.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/groupcommit"
)

// Options tune Open. Pool limits and connection timeouts are set in the
// URL, as pgx reads them: pool_max_conns, pool_min_conns,
// pool_max_conn_lifetime, pool_max_conn_idle_time,
// pool_health_check_period, connect_timeout (and any server setting, for
// example statement_timeout=5000); so are the fields of Options and
// LeaseOptions.TTL, as lanyard_* parameters (see takeParams).
type Options struct {
	// Logger receives migration, lease and fault messages; nil: slog.Default.
	Logger *slog.Logger
	// QueryTimeout bounds every read and every non-batched write. Default
	// 10s: far above a healthy query, short enough that a client sees
	// Unavailable rather than a hung request when the database is gone.
	QueryTimeout time.Duration
	// ResolveTimeout is how long a write whose commit outcome is unknown
	// (the connection dropped during COMMIT) keeps trying to learn it
	// before answering ErrUnavailable. Default 15s: a PostgreSQL restart.
	ResolveTimeout time.Duration
	// MaxBatch caps the writes that share one commit. Default 256.
	MaxBatch int
	// Linger is how long a writer waits for more writes after a group of
	// several (concurrent clients are about; see store/groupcommit); a
	// lone client is never delayed. Default 1ms, as bbolt's; negative
	// takes only what is queued. Fuller groups cost PostgreSQL less per
	// certificate: enroll at c=64 on one replica went from 4,658/s (p99
	// 31 ms, 4 writers, no linger) to 5,056/s (p99 27 ms), and on two
	// replicas from 3,834/s (p99 57 ms) to 4,724/s (p99 39 ms), with
	// groups of 11 writes instead of 3.5 (make bench, 2026-12-02).
	Linger time.Duration
	// Writers is how many groups commit at once. Default 2: while one
	// group waits for its flush the next one gathers, and a connection
	// that breaks mid-commit (its writer resolving the outcome for up to
	// ResolveTimeout) does not stop every write. One writer measured a
	// little faster still on this loopback test server; two keep that
	// margin against a slow commit.
	Writers int
	// NoMigrate refuses to start on a database whose schema is behind,
	// instead of migrating it.
	NoMigrate bool
	// Lease, when set, makes the engine campaign for the leader lease
	// (see Leader). Commands that only read or copy leave it nil.
	Lease *LeaseOptions
}

// DB is a PostgreSQL-backed store.Store.
type DB struct {
	pool *pgxpool.Pool
	dsn  string // redacted, for messages
	log  *slog.Logger
	opts Options

	ops *groupcommit.Queue[*writeOp]
	wg  sync.WaitGroup

	commits, committed atomic.Uint64

	lease *lease
}

var (
	_ store.Store    = (*DB)(nil)
	_ store.Sink     = (*DB)(nil)
	_ store.Exporter = (*DB)(nil)
)

// IsURL reports whether location names a PostgreSQL database rather
// than a bbolt file.
func IsURL(location string) bool {
	return strings.HasPrefix(location, "postgres://") || strings.HasPrefix(location, "postgresql://")
}

// Redact returns dsn with its password replaced, for logs and errors.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Open connects to dsn, applies pending migrations under the migration
// lock (see Migrate), and starts the writers (and the lease, if asked).
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	red := Redact(dsn)
	if opts.Lease != nil {
		l := *opts.Lease // the caller's struct stays as given
		opts.Lease = &l
	}
	dsn, err := takeParams(dsn, &opts)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", red, err)
	}
	// Defaults after the URL's lanyard_* parameters, which fill only
	// what the caller left unset.
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 10 * time.Second
	}
	if opts.ResolveTimeout <= 0 {
		opts.ResolveTimeout = 15 * time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Writers <= 0 {
		opts.Writers = 2
	}
	if opts.Linger == 0 {
		opts.Linger = time.Millisecond
	}
	red = Redact(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", red, errors.New(strings.ReplaceAll(err.Error(), dsn, red)))
	}
	if v, ok := cfg.ConnConfig.RuntimeParams["synchronous_commit"]; ok && v != "on" && v != "remote_write" && v != "remote_apply" {
		return nil, fmt.Errorf("store %s: synchronous_commit=%s would hand out certificates that a crash forgets; remove it", red, v)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// Writers, readers, the lease and the migration lock: enough that
		// a burst of reads (every redemption reads its token first) does
		// not starve the writers.
		cfg.MaxConns = int32(opts.Writers) + 28
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", red, err)
	}
	db := &DB{pool: pool, dsn: red, log: opts.Logger.With("store", red), opts: opts, ops: groupcommit.New[*writeOp](opts.MaxBatch, opts.Linger)}
	if err := db.checkServer(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	applied, err := migrate(ctx, pool, !opts.NoMigrate)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store %s: %w", red, err)
	}
	if len(applied) > 0 {
		db.log.Info("store migrated", "applied", applied)
	}
	// Several writers, so one group gathers while another waits for
	// its flush.
	for range opts.Writers {
		db.wg.Go(func() { db.ops.Serve(db.commitGroup) })
	}
	if opts.Lease != nil {
		db.lease = newLease(db, *opts.Lease)
		db.wg.Add(1)
		go db.lease.run()
	}
	return db, nil
}

func (db *DB) checkServer(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, db.opts.QueryTimeout)
	defer cancel()
	var sc string
	if err := db.pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&sc); err != nil {
		return fmt.Errorf("store %s: %w", db.dsn, mapErr(err))
	}
	if sc == "off" {
		return fmt.Errorf("store %s: the server runs with synchronous_commit=%s, which would hand out certificates that a crash forgets; set it on", db.dsn, sc)
	}
	return nil
}

// Close stops the lease (releasing it), waits for queued writes and closes
// the pool.
func (db *DB) Close() error {
	if !db.ops.Close() {
		return nil
	}
	if db.lease != nil {
		db.lease.stop()
	}
	db.wg.Wait()
	db.pool.Close()
	return nil
}

// Ping reports whether the database answers (for /healthz).
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, db.opts.QueryTimeout)
	defer cancel()
	return mapErr(db.pool.Ping(ctx))
}

// PoolStats returns the connection pool's counters (for /metrics).
func (db *DB) PoolStats() store.PoolStats {
	st := db.pool.Stat()
	return store.PoolStats{
		Acquired: st.AcquiredConns(), Idle: st.IdleConns(), Total: st.TotalConns(), Max: st.MaxConns(),
		Acquires: st.AcquireCount(), EmptyAcquires: st.EmptyAcquireCount(), AcquireWait: st.AcquireDuration(),
	}
}

// CommitStats reports group commits and the writes they held.
func (db *DB) CommitStats() (commits, writes uint64) {
	return db.commits.Load(), db.committed.Load()
}

// Stats reports the database's size.
func (db *DB) Stats() (int64, error) {
	var n int64
	err := db.read(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
	})
	return n, err
}

// Backup writes the whole store, from one snapshot, as a bbolt file at
// dst (which `lanyard serve` or `lanyard store copy` can open). For a
// physical backup of the database itself use pg_dump.
func (db *DB) Backup(dst string) error {
	dir := filepath.Dir(dst)
	tmp, err := os.MkdirTemp(dir, ".backup-")
	if err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "lanyard.db")
	b, err := store.Open(path, store.Options{NoBackup: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	if err := db.Export(context.Background(), b); err != nil {
		b.Close()
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	if err := b.Backup(dst); err != nil {
		b.Close()
		return err
	}
	return b.Close()
}

// BackupTo streams the same bbolt copy to w.
func (db *DB) BackupTo(w io.Writer) error {
	tmp, err := os.MkdirTemp("", "lanyard-backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "backup.db")
	if err := db.Backup(path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// read runs fn with a context bounded by QueryTimeout and maps errors.
func (db *DB) read(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), db.opts.QueryTimeout)
	defer cancel()
	return mapErr(fn(ctx))
}

// tx runs fn in one transaction (READ COMMITTED), retrying the whole
// transaction on a serialization failure or deadlock, and on a connection
// error that struck before anything was sent.
func (db *DB) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	if db.ops.Closed() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), db.opts.QueryTimeout)
	defer cancel()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = pgx.BeginFunc(ctx, db.pool, fn)
		if !retryable(err) {
			break
		}
	}
	return mapErr(err)
}

// retryable: the transaction certainly did not commit and running it
// again is the right answer.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return err != nil && pgconn.SafeToRetry(err)
}

// mapErr turns driver errors into the store's sentinels: a unique
// violation is ErrExists, anything that says the database is out of
// reach (connection failures, shutdown, a standby, too many connections,
// our own timeouts) is ErrUnavailable. Errors that already carry a store
// sentinel pass through.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{store.ErrNotFound, store.ErrExists, store.ErrTokenUsed, store.ErrTokenExpired,
		store.ErrTokenRevoked, store.ErrRevoked, store.ErrUnavailable, store.ErrStaleCRL, store.ErrClosed, store.ErrNotLeader, store.ErrConflict} {
		if errors.Is(err, s) {
			return err
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return fmt.Errorf("%w: %s", store.ErrExists, pe.Message)
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57P"), pe.Code == "25006", pe.Code == "53300", pe.Code == "57014":
			return fmt.Errorf("%w: %s (SQLSTATE %s)", store.ErrUnavailable, pe.Message, pe.Code)
		}
		return fmt.Errorf("store: %w", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	// Not an answer from the server: the connection failed, timed out or
	// could not be made.
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}
