package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/store"
)

// SwapMeta: each key's row is locked (SELECT ... FOR UPDATE) and its
// condition checked before anything is written; an absent key cannot be
// locked, so a write conditioned on absence inserts with ON CONFLICT DO
// NOTHING and counts the row: a concurrent insert of the same key makes
// it a conflict. Everything is one transaction.
func (db *DB) SwapMeta(ctx context.Context, writes []store.MetaWrite, ev *store.AuditEvent) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		if err := swapMetaTx(ctx, tx, writes); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
}

// InsertCertSwap records c and applies writes in one transaction (not a
// group commit: the conditions need row locks read back).
func (db *DB) InsertCertSwap(ctx context.Context, c *store.Cert, ev *store.AuditEvent, writes []store.MetaWrite) error {
	w, err := newCertWrite(c, ev)
	if err != nil {
		return err
	}
	return db.swapTx(ctx, writes, func(tx pgx.Tx) error {
		var n int
		return tx.QueryRow(ctx, sqlInsert, w.args([]any{w.serial, c.CN, c.Profile, c.NotAfter, nullable(c.TokenID), w.rec})...).Scan(&n)
	})
}

// InsertRenewalSwap records c as the renewal of prev (sqlRenew, as
// InsertRenewal) and applies writes in one transaction; the meta rows are
// locked before the predecessor's row, and Revoke locks no meta row, so
// the two cannot deadlock.
func (db *DB) InsertRenewalSwap(ctx context.Context, prev string, c *store.Cert, ev *store.AuditEvent, writes []store.MetaWrite) error {
	pk, w, err := newRenewalWrite(prev, c, ev)
	if err != nil {
		return err
	}
	return db.swapTx(ctx, writes, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, sqlRenew, w.renewArgs(pk, c)...).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		// Not applied: say why, and roll the meta writes back.
		var revoked bool
		err := tx.QueryRow(ctx, "SELECT revocation IS NOT NULL FROM certs WHERE serial = $1", pk).Scan(&revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("certificate %s: %w", prev, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		return renewRefused(prev, revoked)
	})
}

// swapTx applies writes, then record, in one transaction.
func (db *DB) swapTx(ctx context.Context, writes []store.MetaWrite, record func(pgx.Tx) error) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		if err := swapMetaTx(ctx, tx, writes); err != nil {
			return err
		}
		return record(tx)
	})
}

func swapMetaTx(ctx context.Context, tx pgx.Tx, writes []store.MetaWrite) error {
	for i := range writes {
		w := &writes[i]
		if w.IfAbsent {
			continue // checked by the insert below
		}
		var raw []byte
		err := tx.QueryRow(ctx, "SELECT value FROM meta WHERE key = $1 FOR UPDATE", w.Key).Scan(&raw)
		found := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		ok, err := w.Holds(raw, found)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("meta %s: %w", w.Key, store.ErrConflict)
		}
	}
	for i := range writes {
		w := &writes[i]
		raw, err := w.Encode()
		if err != nil {
			return err
		}
		switch {
		case w.IfAbsent && w.Delete:
			// absent and to be deleted: nothing to do, but the key must
			// still be absent.
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*)::int FROM meta WHERE key = $1", w.Key).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("meta %s: %w", w.Key, store.ErrConflict)
			}
		case w.IfAbsent:
			tag, err := tx.Exec(ctx, "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", w.Key, raw)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("meta %s: %w", w.Key, store.ErrConflict)
			}
		case w.Delete:
			if _, err := tx.Exec(ctx, "DELETE FROM meta WHERE key = $1", w.Key); err != nil {
				return err
			}
		default:
			if _, err := tx.Exec(ctx, "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", w.Key, raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// ListMeta returns the values under keys beginning with prefix.
func (db *DB) ListMeta(prefix string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	err := db.read(func(ctx context.Context) error {
		// A range on the primary key, not LIKE (the prefix may hold % or _).
		rows, err := db.pool.Query(ctx, "SELECT key, value FROM meta WHERE key >= $1 AND left(key, $2) = $1 ORDER BY key",
			prefix, len([]rune(prefix)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var v []byte
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			if strings.HasPrefix(k, prefix) {
				out[k] = v
			}
		}
		return rows.Err()
	})
	return out, err
}
