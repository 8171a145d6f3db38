package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/store"
)

// Export writes every record to dst from one REPEATABLE READ snapshot.
func (db *DB) Export(ctx context.Context, dst store.Sink) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return mapErr(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	// Oldest first, so a predecessor is loaded before its renewals (an
	// engine links a renewal to a predecessor it already holds).
	rows, err := tx.Query(ctx, "SELECT "+certCols+" FROM certs ORDER BY (convert_from(rec, 'UTF8')::jsonb->>'iat')::timestamptz, serial")
	if err != nil {
		return mapErr(err)
	}
	var certs []*store.Cert
	flushCerts := func() error {
		if len(certs) == 0 {
			return nil
		}
		err := dst.LoadCerts(ctx, certs)
		certs = nil
		return err
	}
	// Rows are buffered per batch and loaded after the cursor closes, so
	// the snapshot's connection is not held while dst writes.
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Cert, error) { return scanCert(r) })
	if err != nil {
		return mapErr(err)
	}
	for _, c := range all {
		certs = append(certs, c)
		if len(certs) == store.ExportBatch {
			if err := flushCerts(); err != nil {
				return err
			}
		}
	}
	if err := flushCerts(); err != nil {
		return err
	}
	rows, err = tx.Query(ctx, "SELECT rec, used_at, serial, revoked FROM tokens ORDER BY id")
	if err != nil {
		return mapErr(err)
	}
	toks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Token, error) { return scanToken(r) })
	if err != nil {
		return mapErr(err)
	}
	for i := 0; i < len(toks); i += store.ExportBatch {
		if err := dst.LoadTokens(ctx, toks[i:min(i+store.ExportBatch, len(toks))]); err != nil {
			return err
		}
	}
	rows, err = tx.Query(ctx, "SELECT rec FROM audit ORDER BY id")
	if err != nil {
		return mapErr(err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.AuditEvent, error) {
		var raw []byte
		if err := r.Scan(&raw); err != nil {
			return nil, err
		}
		var ev store.AuditEvent
		return &ev, json.Unmarshal(raw, &ev)
	})
	if err != nil {
		return mapErr(err)
	}
	for i := 0; i < len(evs); i += store.ExportBatch {
		if err := dst.LoadAudit(ctx, evs[i:min(i+store.ExportBatch, len(evs))]); err != nil {
			return err
		}
	}
	sessions := map[string]*store.Session{}
	rows, err = tx.Query(ctx, "SELECT key, rec FROM web_sessions")
	if err != nil {
		return mapErr(err)
	}
	var k string
	var raw []byte
	if _, err := pgx.ForEachRow(rows, []any{&k, &raw}, func() error {
		var s store.Session
		sessions[k] = &s
		return json.Unmarshal(raw, &s)
	}); err != nil {
		return mapErr(err)
	}
	meta := map[string][]byte{}
	rows, err = tx.Query(ctx, "SELECT key, value FROM meta")
	if err != nil {
		return mapErr(err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&k, &raw}, func() error {
		meta[k] = append([]byte(nil), raw...)
		return nil
	}); err != nil {
		return mapErr(err)
	}
	var n int64
	if err := tx.QueryRow(ctx, "SELECT crl_number FROM crl_state WHERE id = 1").Scan(&n); err != nil {
		return mapErr(err)
	}
	if err := dst.LoadSessions(ctx, sessions); err != nil {
		return err
	}
	if err := dst.LoadMeta(ctx, meta); err != nil {
		return err
	}
	return dst.LoadCRLNumber(ctx, n)
}

// LoadCerts inserts records whose serial is absent, in one transaction.
func (db *DB) LoadCerts(ctx context.Context, certs []*store.Cert) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, c := range certs {
			sk, err := serialKey(c.Serial)
			if err != nil {
				return err
			}
			rec, err := certRec(c)
			if err != nil {
				return err
			}
			var prev, next []byte
			if c.PreviousSerial != "" {
				if prev, err = serialKey(c.PreviousSerial); err != nil {
					return err
				}
			}
			if c.NextSerial != "" {
				if next, err = serialKey(c.NextSerial); err != nil {
					return err
				}
			}
			var rev any
			if c.Revocation != nil {
				raw, err := json.Marshal(c.Revocation)
				if err != nil {
					return err
				}
				rev = string(raw)
			}
			var renewed any
			if !c.RenewedAt.IsZero() {
				renewed = c.RenewedAt
			}
			b.Queue(`INSERT INTO certs (serial, cn, profile, not_after, token_id, previous_serial, next_serial, revocation, rec, renewed_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10) ON CONFLICT (serial) DO NOTHING`,
				sk, c.CN, c.Profile, c.NotAfter, nullable(c.TokenID), prev, next, rev, rec, renewed)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// LoadTokens inserts tokens whose ID is absent.
func (db *DB) LoadTokens(ctx context.Context, tokens []*store.Token) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, t := range tokens {
			rec, err := tokenRec(t)
			if err != nil {
				return err
			}
			var used any
			if !t.UsedAt.IsZero() {
				used = t.UsedAt
			}
			b.Queue(`INSERT INTO tokens (id, created_at, expires_at, used_at, serial, revoked, hash, rec)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
				t.ID, t.CreatedAt, t.ExpiresAt, used, nullable(t.Serial), t.Revoked, t.Hash, rec)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// LoadAudit inserts events whose ID is absent.
func (db *DB) LoadAudit(ctx context.Context, events []*store.AuditEvent) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, ev := range events {
			id, act, actor, subj, rec, err := auditArgs(ev)
			if err != nil {
				return err
			}
			b.Queue(`INSERT INTO audit (id, action, actor, subject, rec) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`, id, act, actor, subj, rec)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// LoadSessions inserts sessions whose key is absent.
func (db *DB) LoadSessions(ctx context.Context, sessions map[string]*store.Session) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for k, s := range sessions {
			raw, err := json.Marshal(s)
			if err != nil {
				return err
			}
			b.Queue(`INSERT INTO web_sessions (key, rec) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, k, raw)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// LoadMeta inserts values whose key is absent.
func (db *DB) LoadMeta(ctx context.Context, values map[string][]byte) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for k, v := range values {
			b.Queue(`INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, k, v)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// LoadCRLNumber raises the CRL number to n if it is below.
func (db *DB) LoadCRLNumber(ctx context.Context, n int64) error {
	err := db.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE crl_state SET crl_number = greatest(crl_number, $1) WHERE id = 1", n)
		return err
	})
	if err != nil {
		return fmt.Errorf("load CRL number: %w", err)
	}
	return nil
}
