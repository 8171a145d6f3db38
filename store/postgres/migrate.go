package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lanyard/lanyard/migrations"
)

// migrationLockID is the advisory lock key every replica takes before it
// looks at the schema: the ASCII of "LANYARD1", so it does not collide
// with other tools' keys (goose, golang-migrate) on a shared server.
const migrationLockID int64 = 0x4c414e5941524431 // "LANYARD1"

// migrationLockTimeout bounds the wait for another replica's migration.
const migrationLockTimeout = 2 * time.Minute

// Migrate applies pending migrations to the database at dsn and returns
// the versions applied (`lanyard migrate`).
func Migrate(ctx context.Context, dsn string) ([]int, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", Redact(dsn), err)
	}
	defer pool.Close()
	applied, err := migrate(ctx, pool, true)
	if err != nil {
		return applied, fmt.Errorf("store %s: %w", Redact(dsn), mapErr(err))
	}
	return applied, nil
}

// migrate holds the session advisory lock on one dedicated connection
// (a pooled connection could hand the lock to another goroutine, or be
// closed under it), re-reads the version under the lock, and applies each
// pending file in its own transaction with its schema_migrations row. Two
// replicas starting together on an empty database: one migrates, the
// other waits on the lock, then finds nothing to do. With apply false it
// only checks that the schema is current.
func migrate(ctx context.Context, pool *pgxpool.Pool, apply bool) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, migrationLockTimeout)
	defer cancel()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	// The connection goes back closed, so the lock can never outlive us
	// on a pooled connection.
	defer func() {
		conn.Conn().Close(context.Background())
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockID); err != nil {
		return nil, fmt.Errorf("take the migration lock: %w", mapErr(err))
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrationLockID) //nolint:errcheck // closing the session releases it anyway
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, mapErr(err)
	}
	var cur int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&cur); err != nil {
		return nil, mapErr(err)
	}
	all := migrations.Postgres()
	latest := all[len(all)-1].Version
	if cur > latest {
		return nil, fmt.Errorf("%w: database at %d, lanyard knows %d", migrations.ErrFutureSchema, cur, latest)
	}
	if !apply && cur < latest {
		return nil, fmt.Errorf("database schema at %d, lanyard needs %d: run `lanyard migrate`", cur, latest)
	}
	var applied []int
	for _, m := range all[cur:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '30s'"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}
