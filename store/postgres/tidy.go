package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/store"
)

// tidyBatch is how many rows one tidy transaction deletes: few commits for
// a large backlog, short row locks so issuance keeps flowing.
const tidyBatch = 2000

// Tidy removes what req allows in transactions of at most tidyBatch rows
// (the same rules as the bbolt engine; PostgreSQL's own indexes follow
// the rows). A successor keeps its previous_serial after its predecessor
// goes.
func (db *DB) Tidy(ctx context.Context, req store.TidyRequest) (*store.TidyResult, error) {
	res := &store.TidyResult{}
	var cutKey [8]byte
	binary.BigEndian.PutUint64(cutKey[:], uint64(req.AuditBefore.UnixNano()))
	steps := []struct {
		count *int
		zero  bool
		where string
		arg   any
		table string
		key   string
	}{
		{&res.Certs, req.CertsExpiredBefore.IsZero(), "not_after < $1", req.CertsExpiredBefore, "certs", "serial"},
		{&res.Tokens, req.TokensBefore.IsZero(), "(used_at IS NOT NULL AND used_at < $1) OR expires_at < $1", req.TokensBefore, "tokens", "id"},
		{&res.Sessions, req.SessionsExpiredBefore.IsZero(), "(convert_from(rec, 'UTF8')::jsonb->>'expires')::timestamptz < $1", req.SessionsExpiredBefore, "web_sessions", "key"},
		{&res.Audit, req.AuditBefore.IsZero(), "id < $1", cutKey[:], "audit", "id"},
	}
	for _, st := range steps {
		if st.zero {
			continue
		}
		if req.DryRun {
			if err := db.read(func(ctx context.Context) error {
				return db.pool.QueryRow(ctx, "SELECT count(*)::int FROM "+st.table+" WHERE "+st.where, st.arg).Scan(st.count)
			}); err != nil {
				return res, err
			}
			continue
		}
		for {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			var n int
			err := db.tx(ctx, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, fmt.Sprintf("DELETE FROM %[1]s WHERE %[2]s IN (SELECT %[2]s FROM %[1]s WHERE %[3]s LIMIT %[4]d)",
					st.table, st.key, st.where, tidyBatch), st.arg)
				n = int(tag.RowsAffected())
				return err
			})
			if err != nil {
				return res, err
			}
			*st.count += n
			if n < tidyBatch {
				break
			}
		}
	}
	if req.Event != nil && !req.DryRun {
		detail, _ := json.Marshal(res)
		req.Event.Detail = string(detail)
		if err := db.AppendAudit(ctx, req.Event); err != nil {
			return res, err
		}
	}
	return res, nil
}

// CheckIndexes verifies that the columns the engine indexes and updates
// in place agree with the records they were written from (PostgreSQL keeps
// its own indexes consistent with the rows).
func (db *DB) CheckIndexes() error {
	var serial []byte
	err := db.read(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, `SELECT serial FROM certs, LATERAL (SELECT convert_from(rec, 'UTF8')::jsonb AS j) r
			WHERE cn <> r.j->>'cn' OR profile <> r.j->>'profile' OR not_after <> (r.j->>'naf')::timestamptz
			   OR (previous_serial IS NOT NULL AND encode(previous_serial, 'hex') <> r.j->>'prev')
			LIMIT 1`).Scan(&serial)
	})
	if err == pgx.ErrNoRows {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: certificate %x: indexed columns disagree with its record", store.ErrInconsistent, serial)
}
