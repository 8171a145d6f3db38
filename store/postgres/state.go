package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/store"
)

// tokenRec is the immutable part of a token, as JSON.
func tokenRec(t *store.Token) ([]byte, error) {
	cp := *t
	cp.UsedAt, cp.Serial, cp.Revoked = time.Time{}, "", false
	return json.Marshal(&cp)
}

func scanToken(row pgx.Row) (*store.Token, error) {
	var (
		rec    []byte
		used   *time.Time
		serial *string
		t      store.Token
	)
	if err := row.Scan(&rec, &used, &serial, &t.Revoked); err != nil {
		return nil, err
	}
	revoked := t.Revoked
	if err := json.Unmarshal(rec, &t); err != nil {
		return nil, fmt.Errorf("token: decode: %w", err)
	}
	t.Revoked = revoked
	if used != nil {
		t.UsedAt = *used
	}
	if serial != nil {
		t.Serial = *serial
	}
	return &t, nil
}

// PutToken stores a new token and ev.
func (db *DB) PutToken(ctx context.Context, t *store.Token, ev *store.AuditEvent) error {
	rec, err := tokenRec(t)
	if err != nil {
		return err
	}
	err = db.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO tokens (id, created_at, expires_at, hash, rec) VALUES ($1, $2, $3, $4, $5)", t.ID, t.CreatedAt, t.ExpiresAt, t.Hash, rec); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("token %s: %w", t.ID, store.ErrExists)
	}
	return err
}

func appendAudit(ctx context.Context, tx pgx.Tx, ev *store.AuditEvent) error {
	id, act, actor, subj, rec, err := auditArgs(ev)
	if err != nil || id == nil {
		return err
	}
	// An event written again under its ID replaces itself (as in bbolt).
	_, err = tx.Exec(ctx, `INSERT INTO audit (id, action, actor, subject, rec) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET action = excluded.action, actor = excluded.actor, subject = excluded.subject, rec = excluded.rec`, id, act, actor, subj, rec)
	return err
}

// GetToken returns the token with id, or ErrNotFound.
func (db *DB) GetToken(id string) (*store.Token, error) {
	var t *store.Token
	err := db.read(func(ctx context.Context) error {
		var err error
		t, err = scanToken(db.pool.QueryRow(ctx, "SELECT rec, used_at, serial, revoked FROM tokens WHERE id = $1", id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("token %s: %w", id, store.ErrNotFound)
	}
	return t, err
}

// ListUnusedTokens returns redeemable tokens, newest first, without hashes.
func (db *DB) ListUnusedTokens(now time.Time) ([]*store.Token, error) {
	var out []*store.Token
	err := db.read(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, `SELECT rec, used_at, serial, revoked FROM tokens
			WHERE used_at IS NULL AND NOT revoked AND expires_at > $1 ORDER BY created_at DESC`, now)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Token, error) {
			t, err := scanToken(r)
			if t != nil {
				t.Hash = nil
			}
			return t, err
		})
		return err
	})
	return out, err
}

// RevokeToken withdraws an unused token.
func (db *DB) RevokeToken(ctx context.Context, id string, ev *store.AuditEvent) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		var used *time.Time
		var revoked bool
		err := tx.QueryRow(ctx, "SELECT used_at, revoked FROM tokens WHERE id = $1 FOR UPDATE", id).Scan(&used, &revoked)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
		case err != nil:
			return err
		case used != nil:
			return fmt.Errorf("token %s: %w", id, store.ErrTokenUsed)
		case revoked:
			return nil
		}
		if _, err := tx.Exec(ctx, "UPDATE tokens SET revoked = true WHERE id = $1", id); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
}

// AppendAudit records one event.
func (db *DB) AppendAudit(ctx context.Context, ev *store.AuditEvent) error {
	return db.tx(ctx, func(tx pgx.Tx) error { return appendAudit(ctx, tx, ev) })
}

// ListAudit returns events newest first matching q.
func (db *DB) ListAudit(q store.AuditQuery) ([]*store.AuditEvent, string, error) {
	limit, before := q.Page()
	q.Limit = limit
	var out []*store.AuditEvent
	var keys [][]byte
	err := db.read(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, `SELECT id, rec FROM audit
			WHERE ($1::bytea IS NULL OR id < $1) AND ($2 = '' OR action = $2)
			AND ($3 = '' OR strpos(actor, $3) > 0) AND ($4 = '' OR strpos(subject, $4) > 0)
			ORDER BY id DESC LIMIT $5`, before, string(q.Action), q.Actor, q.Subject, q.Limit+1)
		if err != nil {
			return err
		}
		var id, rec []byte
		_, err = pgx.ForEachRow(rows, []any{&id, &rec}, func() error {
			var ev store.AuditEvent
			if err := json.Unmarshal(rec, &ev); err != nil {
				return err
			}
			out = append(out, &ev)
			keys = append(keys, append([]byte(nil), id...))
			return nil
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		next = hex.EncodeToString(keys[q.Limit-1])
	}
	return out, next, nil
}

// PutMeta stores v under key.
func (db *DB) PutMeta(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("meta %s: %w", key, err)
	}
	return db.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, raw)
		return err
	})
}

// GetMeta decodes the value under key into v.
func (db *DB) GetMeta(key string, v any) error {
	var raw []byte
	err := db.read(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT value FROM meta WHERE key = $1", key).Scan(&raw)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("meta %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// PutSession stores or replaces a session.
func (db *DB) PutSession(ctx context.Context, key string, s *store.Session) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return db.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO web_sessions (key, rec) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET rec = excluded.rec", key, raw)
		return err
	})
}

// GetSession returns a session, or ErrNotFound.
func (db *DB) GetSession(key string) (*store.Session, error) {
	var raw []byte
	err := db.read(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT rec FROM web_sessions WHERE key = $1", key).Scan(&raw)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var s store.Session
	return &s, json.Unmarshal(raw, &s)
}

// DeleteSession removes a session.
func (db *DB) DeleteSession(ctx context.Context, key string) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM web_sessions WHERE key = $1", key)
		return err
	})
}

// NextCRLNumber takes the next CRL number. With a lease (a replica), only
// the current leader can: the UPDATE re-checks, in the database, that
// this replica's epoch is the lease's current one and not older than the
// epoch that took the last number, so a paused leader that lost its lease
// gets ErrNotLeader instead of a number (fencing).
func (db *DB) NextCRLNumber(ctx context.Context) (int64, error) {
	var n int64
	err := db.tx(ctx, func(tx pgx.Tx) error {
		if db.lease == nil {
			return tx.QueryRow(ctx, "UPDATE crl_state SET crl_number = crl_number + 1 WHERE id = 1 RETURNING crl_number").Scan(&n)
		}
		epoch, ok := db.lease.current()
		if !ok {
			return store.ErrNotLeader
		}
		err := tx.QueryRow(ctx, `UPDATE crl_state SET crl_number = crl_number + 1, epoch = $1
			WHERE id = 1 AND epoch <= $1 AND EXISTS (SELECT 1 FROM leases
				WHERE name = $2 AND holder = $3 AND epoch = $1 AND expires_at > now())
			RETURNING crl_number`, epoch, leaseName, db.lease.holder).Scan(&n)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("CRL number with epoch %d: %w", epoch, store.ErrNotLeader)
		}
		return err
	})
	return n, err
}

// CRLNumber returns the last number taken.
func (db *DB) CRLNumber() (int64, error) {
	var n int64
	err := db.read(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT crl_number FROM crl_state WHERE id = 1").Scan(&n)
	})
	return n, err
}

// PublishCRL makes der the newest CRL. On the crl_state row, in one
// transaction: the number must be above the last published one (the row
// lock serialises publishers and the WHERE is re-checked after a
// concurrent one commits), and, with a lease, this replica's epoch must be
// the lease's current one. Both are checked in the database at commit
// time, so a leader paused past its lease (boulder #6897's two updaters)
// can neither publish an older number nor overwrite a newer CRL.
func (db *DB) PublishCRL(ctx context.Context, number int64, der []byte) error {
	epoch, holder := int64(0), ""
	if db.lease != nil {
		var ok bool
		if epoch, ok = db.lease.current(); !ok {
			return fmt.Errorf("publish CRL %d: %w", number, store.ErrNotLeader)
		}
		holder = db.lease.holder
	}
	return db.tx(ctx, func(tx pgx.Tx) error {
		var revs int64
		err := tx.QueryRow(ctx, `UPDATE crl_state SET published = $1
			WHERE id = 1 AND published < $1 AND ($2 = '' OR EXISTS (SELECT 1 FROM leases
				WHERE name = $3 AND holder = $2 AND epoch = $4 AND expires_at > now()))
			RETURNING revocations`, number, holder, leaseName, epoch).Scan(&revs)
		if errors.Is(err, pgx.ErrNoRows) {
			var pub int64
			if err := tx.QueryRow(ctx, "SELECT published FROM crl_state WHERE id = 1").Scan(&pub); err == nil && pub >= number {
				return fmt.Errorf("publish CRL %d (newest is %d): %w", number, pub, store.ErrStaleCRL)
			}
			return fmt.Errorf("publish CRL %d with epoch %d: %w", number, epoch, store.ErrNotLeader)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO crls (number, epoch, revocations, der) VALUES ($1, $2, $3, $4)", number, epoch, revs, der)
		return err
	})
}

// LatestCRL returns the newest published CRL if its number is above after.
func (db *DB) LatestCRL(after int64) (int64, []byte, error) {
	var n int64
	var der []byte
	err := db.read(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT number, der FROM crls WHERE number > $1 ORDER BY number DESC LIMIT 1", after).Scan(&n, &der)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, fmt.Errorf("CRL after %d: %w", after, store.ErrNotFound)
	}
	return n, der, err
}

// Revocations is the counter every changing Revoke bumps.
func (db *DB) Revocations() (int64, error) {
	var n int64
	err := db.read(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT revocations FROM crl_state WHERE id = 1").Scan(&n)
	})
	return n, err
}
