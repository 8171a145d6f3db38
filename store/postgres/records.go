package postgres

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lanyard/lanyard/store"
)

func serialKey(serial string) ([]byte, error) {
	k, err := hex.DecodeString(serial)
	if err != nil || len(k) == 0 || len(k) > 20 {
		return nil, fmt.Errorf("serial %q: %w", serial, store.ErrNotFound)
	}
	return k, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// certRec is the immutable part of a record, as JSON (next and
// revocation live in their own columns).
func certRec(c *store.Cert) ([]byte, error) {
	cp := *c
	cp.NextSerial, cp.Revocation, cp.RenewedAt = "", nil, time.Time{}
	return json.Marshal(&cp)
}

func auditArgs(ev *store.AuditEvent) (id []byte, action, actor, subject string, rec []byte, err error) {
	if ev == nil {
		return nil, "", "", "", nil, nil
	}
	id = store.PrepareAudit(ev)
	rec, err = json.Marshal(ev)
	return id, string(ev.Action), ev.Actor, ev.Subject, rec, err
}

// certWrite is what a statement recording a certificate binds: the
// serial's key, the record as stored (certRec) and the audit event's
// columns (auditArgs: the five parameters of withAudit, in order).
type certWrite struct {
	serial, rec []byte
	audit       []any
}

func newCertWrite(c *store.Cert, ev *store.AuditEvent) (*certWrite, error) {
	sk, err := serialKey(c.Serial)
	if err != nil {
		return nil, err
	}
	rec, err := certRec(c)
	if err != nil {
		return nil, err
	}
	id, act, actor, subj, arec, err := auditArgs(ev)
	if err != nil {
		return nil, err
	}
	return &certWrite{serial: sk, rec: rec, audit: []any{id, act, actor, subj, arec}}, nil
}

// args is head, then the audit columns, then tail.
func (w *certWrite) args(head []any, tail ...any) []any {
	return append(append(head, w.audit...), tail...)
}

// The audit insert every batched statement ends with: written only when
// the record was (FROM c) and an event was given ($a1 not NULL).
const auditCTE = `a AS (INSERT INTO audit (id, action, actor, subject, rec)
	SELECT $%[1]d::bytea, $%[2]d, $%[3]d, $%[4]d, $%[5]d::bytea FROM c WHERE $%[1]d::bytea IS NOT NULL
	ON CONFLICT (id) DO UPDATE SET action = excluded.action, actor = excluded.actor, subject = excluded.subject, rec = excluded.rec)`

func withAudit(n int) string { return fmt.Sprintf(auditCTE, n, n+1, n+2, n+3, n+4) }

var (
	// sqlRedeem checks the secret's hash ($14) in the statement itself; a
	// token written by a replica of the release before migration 0003 has
	// no hash column yet and is checked against the hash in its rec.
	sqlRedeem = `WITH t AS (UPDATE tokens SET used_at = $2, serial = $3
	WHERE id = $1 AND used_at IS NULL AND NOT revoked AND expires_at > $2
	AND coalesce(hash, decode(convert_from(rec, 'UTF8')::jsonb->>'hash', 'base64')) = $14 RETURNING id),
c AS (INSERT INTO certs (serial, cn, profile, not_after, token_id, rec)
	SELECT $4, $5, $6, $7, t.id, $8 FROM t RETURNING serial),
` + withAudit(9) + `
SELECT count(*)::int FROM c`

	sqlRenew = `WITH p AS (UPDATE certs SET next_serial = $2, renewed_at = coalesce(renewed_at, $12)
	WHERE serial = $1 AND revocation IS NULL RETURNING serial),
c AS (INSERT INTO certs (serial, cn, profile, not_after, previous_serial, rec)
	SELECT $2, $3, $4, $5, p.serial, $6 FROM p RETURNING serial),
` + withAudit(7) + `
SELECT count(*)::int FROM c`

	sqlInsert = `WITH c AS (INSERT INTO certs (serial, cn, profile, not_after, token_id, rec)
	VALUES ($1, $2, $3, $4, $5, $6) RETURNING serial),
` + withAudit(7) + `
SELECT count(*)::int FROM c`
)

// RedeemToken: one statement redeems the token only while it is unused,
// unrevoked, unexpired and its secret's hash matches, in the transaction
// that records the certificate (READ COMMITTED re-checks the WHERE after a
// concurrent redemption commits), and certs.token_id is UNIQUE as a second
// guard. The token is read only when the statement did not apply, to say
// why (the caller, issuance.AuthorizeToken, has already read it once and
// compared the hash in constant time; comparing SHA-256 hashes in SQL
// leaks nothing an attacker could use).
func (db *DB) RedeemToken(ctx context.Context, tokenID string, tokenHash []byte, now time.Time, c *store.Cert, ev *store.AuditEvent) error {
	c.TokenID = tokenID
	w, err := newCertWrite(c, ev)
	if err != nil {
		return err
	}
	applied, err := db.submit(ctx, &writeOp{sql: sqlRedeem, serial: w.serial,
		args: w.args([]any{tokenID, now, c.Serial, w.serial, c.CN, c.Profile, c.NotAfter, w.rec}, tokenHash)})
	if err != nil {
		return mapErr(err)
	}
	if applied {
		return nil
	}
	// Not redeemed: say why.
	tok, err := db.GetToken(tokenID)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(tok.Hash, tokenHash) != 1 {
		return fmt.Errorf("token %s: %w", tokenID, store.ErrNotFound)
	}
	if err := tokenState(tok, now); err != nil {
		return err
	}
	return fmt.Errorf("token %s: %w", tokenID, store.ErrTokenExpired)
}

func tokenState(t *store.Token, now time.Time) error {
	switch {
	case t.Revoked:
		return fmt.Errorf("token %s: %w", t.ID, store.ErrTokenRevoked)
	case !t.UsedAt.IsZero():
		return fmt.Errorf("token %s: %w", t.ID, store.ErrTokenUsed)
	case !now.Before(t.ExpiresAt):
		return fmt.Errorf("token %s: %w", t.ID, store.ErrTokenExpired)
	}
	return nil
}

// InsertRenewal: the predecessor's row is updated (locked) only if it is
// not revoked, in the statement that inserts the successor; a concurrent
// Revoke locks the same row, so one of them waits for the other.
func (db *DB) InsertRenewal(ctx context.Context, prev string, c *store.Cert, ev *store.AuditEvent) error {
	pk, w, err := newRenewalWrite(prev, c, ev)
	if err != nil {
		return err
	}
	applied, err := db.submit(ctx, &writeOp{sql: sqlRenew, serial: w.serial, args: w.renewArgs(pk, c)})
	if err != nil {
		return mapErr(err)
	}
	if applied {
		return nil
	}
	p, err := db.GetCert(prev)
	if err != nil {
		return err
	}
	return renewRefused(prev, p.Revocation != nil)
}

// newRenewalWrite prepares c, the renewal of prev (whose key it returns),
// for sqlRenew.
func newRenewalWrite(prev string, c *store.Cert, ev *store.AuditEvent) ([]byte, *certWrite, error) {
	pk, err := serialKey(prev)
	if err != nil {
		return nil, nil, err
	}
	c.PreviousSerial = prev
	w, err := newCertWrite(c, ev)
	return pk, w, err
}

// renewArgs are sqlRenew's arguments for c, the renewal of pk.
func (w *certWrite) renewArgs(pk []byte, c *store.Cert) []any {
	return w.args([]any{pk, w.serial, c.CN, c.Profile, c.NotAfter, w.rec}, c.IssuedAt)
}

// renewRefused says why sqlRenew did not apply to prev, a record that
// exists: revoked, or (not revoked now) changed under the statement.
func renewRefused(prev string, revoked bool) error {
	if revoked {
		return fmt.Errorf("renew %s: %w", prev, store.ErrRevoked)
	}
	return fmt.Errorf("renew %s: predecessor changed during the write: %w", prev, store.ErrUnavailable)
}

// InsertCert records a certificate no token paid for.
func (db *DB) InsertCert(ctx context.Context, c *store.Cert, ev *store.AuditEvent) error {
	w, err := newCertWrite(c, ev)
	if err != nil {
		return err
	}
	_, err = db.submit(ctx, &writeOp{sql: sqlInsert, serial: w.serial,
		args: w.args([]any{w.serial, c.CN, c.Profile, c.NotAfter, nullable(c.TokenID), w.rec})})
	return mapErr(err)
}

const certCols = `serial, rec, next_serial, revocation, renewed_at`

func scanCert(row pgx.Row) (*store.Cert, error) {
	var (
		serial, rec, next []byte
		rev               []byte
		renewed           *time.Time
	)
	if err := row.Scan(&serial, &rec, &next, &rev, &renewed); err != nil {
		return nil, err
	}
	var c store.Cert
	if err := json.Unmarshal(rec, &c); err != nil {
		return nil, fmt.Errorf("certificate %x: decode: %w", serial, err)
	}
	if next != nil {
		c.NextSerial = hex.EncodeToString(next)
	}
	if renewed != nil {
		c.RenewedAt = *renewed
	}
	if rev != nil {
		c.Revocation = new(store.Revocation)
		if err := json.Unmarshal(rev, c.Revocation); err != nil {
			return nil, fmt.Errorf("certificate %x: decode revocation: %w", serial, err)
		}
	}
	return &c, nil
}

// GetCert returns the record of serial, or ErrNotFound.
func (db *DB) GetCert(serial string) (*store.Cert, error) {
	sk, err := serialKey(serial)
	if err != nil {
		return nil, err
	}
	var c *store.Cert
	err = db.read(func(ctx context.Context) error {
		var err error
		c, err = scanCert(db.pool.QueryRow(ctx, "SELECT "+certCols+" FROM certs WHERE serial = $1", sk))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("certificate %s: %w", serial, store.ErrNotFound)
	}
	return c, err
}

// Revoke locks the root record, then revokes its unrevoked descendants
// until a pass finds none: each statement sees renewals committed before
// it (READ COMMITTED), and once a record is revoked here, a renewal of it
// waits for this transaction and is then refused. It also bumps the
// revocation counter, which wakes the leader to build a CRL.
func (db *DB) Revoke(ctx context.Context, serial string, rev store.Revocation, ev *store.AuditEvent) (revoked []*store.Cert, changed bool, err error) {
	sk, err := serialKey(serial)
	if err != nil {
		return nil, false, err
	}
	rraw, err := json.Marshal(&rev)
	if err != nil {
		return nil, false, err
	}
	err = db.tx(ctx, func(tx pgx.Tx) error {
		revoked, changed = nil, false
		root, err := scanCert(tx.QueryRow(ctx, "SELECT "+certCols+" FROM certs WHERE serial = $1 FOR UPDATE", sk))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("certificate %s: %w", serial, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		rootDone := false
		for {
			rows, err := tx.Query(ctx, `WITH RECURSIVE lineage(serial) AS (
				SELECT serial FROM certs WHERE serial = $1
				UNION SELECT c.serial FROM certs c JOIN lineage l ON c.previous_serial = l.serial)
			UPDATE certs SET revocation = $2::jsonb
			WHERE serial IN (SELECT serial FROM lineage) AND revocation IS NULL
			RETURNING `+certCols, sk, string(rraw))
			if err != nil {
				return err
			}
			got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Cert, error) { return scanCert(r) })
			if err != nil {
				return err
			}
			if len(got) == 0 {
				break
			}
			for _, c := range got {
				if c.Serial == root.Serial {
					rootDone = true
				}
			}
			revoked = append(revoked, got...)
			changed = true
		}
		if !rootDone && root.Revocation != nil {
			revoked = append([]*store.Cert{root}, revoked...)
		}
		if !changed {
			return nil
		}
		if _, err := tx.Exec(ctx, "UPDATE crl_state SET revocations = revocations + 1 WHERE id = 1"); err != nil {
			return err
		}
		if ev != nil {
			if err := appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return revoked, changed, nil
}

// SerialsByCN returns the serials of every certificate issued to cn.
func (db *DB) SerialsByCN(cn string) ([]string, error) {
	var out []string
	err := db.read(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, "SELECT serial FROM certs WHERE cn = $1 ORDER BY serial", cn)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		for _, k := range keys {
			out = append(out, hex.EncodeToString(k))
		}
		return err
	})
	return out, err
}

// RevokedUnexpired returns what a CRL must list, without DER.
func (db *DB) RevokedUnexpired(now time.Time) ([]*store.Cert, error) {
	var out []*store.Cert
	err := db.read(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, "SELECT serial, cn, profile, not_after, revocation FROM certs WHERE revocation IS NOT NULL AND not_after > $1", now)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Cert, error) {
			var (
				sk  []byte
				c   store.Cert
				rev []byte
			)
			if err := r.Scan(&sk, &c.CN, &c.Profile, &c.NotAfter, &rev); err != nil {
				return nil, err
			}
			c.Serial = hex.EncodeToString(sk)
			c.Revocation = new(store.Revocation)
			return &c, json.Unmarshal(rev, c.Revocation)
		})
		return err
	})
	return out, err
}

// ListCerts pages through certificates: by CN (name order) when a prefix
// is given, by profile, else newest serial first. Page tokens are the
// same as the bbolt engine's (hex of the index key).
func (db *DB) ListCerts(q store.CertQuery) ([]*store.Cert, string, error) {
	limit, after, err := q.Page()
	if err != nil {
		return nil, "", err
	}
	q.Limit = limit
	var (
		where []string
		args  []any
		order string
	)
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	split := func() (string, []byte, error) {
		i := bytes.IndexByte(after, 0)
		if i < 0 {
			return "", nil, fmt.Errorf("page token %q: %w", q.After, store.ErrNotFound)
		}
		return string(after[:i]), after[i+1:], nil
	}
	switch {
	case q.CNPrefix != "":
		order = "cn, serial"
		where = append(where, "cn >= "+arg(q.CNPrefix), "starts_with(cn, "+arg(q.CNPrefix)+")")
		if len(after) > 0 {
			acn, as, err := split()
			if err != nil {
				return nil, "", err
			}
			where = append(where, "(cn, serial) > ("+arg(acn)+"::text COLLATE \"C\", "+arg(as)+"::bytea)")
		}
		if q.Profile != "" {
			where = append(where, "profile = "+arg(q.Profile))
		}
	case q.Profile != "":
		order = "profile, serial"
		where = append(where, "profile = "+arg(q.Profile))
		if len(after) > 0 {
			_, as, err := split()
			if err != nil {
				return nil, "", err
			}
			where = append(where, "serial > "+arg(as))
		}
	default:
		order = "serial DESC"
		if len(after) > 0 {
			where = append(where, "serial < "+arg(after))
		}
	}
	switch q.Status {
	case "":
	case store.StatusRevoked:
		where = append(where, "revocation IS NOT NULL")
	case store.StatusExpired:
		where = append(where, "revocation IS NULL", "not_after <= "+arg(q.Now))
	case store.StatusValid:
		where = append(where, "revocation IS NULL", "not_after > "+arg(q.Now))
	default:
		where = append(where, "false")
	}
	sql := "SELECT " + certCols + " FROM certs"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY " + order + " LIMIT " + arg(q.Limit+1)
	var out []*store.Cert
	err = db.read(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Cert, error) { return scanCert(r) })
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		last := out[len(out)-1]
		sk, _ := serialKey(last.Serial)
		switch {
		case q.CNPrefix != "":
			next = hex.EncodeToString(append(append([]byte(last.CN), 0), sk...))
		case q.Profile != "":
			next = hex.EncodeToString(append(append([]byte(last.Profile), 0), sk...))
		default:
			next = hex.EncodeToString(sk)
		}
	}
	return out, next, nil
}

// CountCerts summarises records for the dashboard.
func (db *DB) CountCerts(now time.Time, hours int) (*store.Counts, error) {
	cnt := &store.Counts{ByStatus: map[string]int{}, ByProfile: map[string]int{}, ExpiringHours: make([]int, hours)}
	err := db.read(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, `SELECT CASE WHEN revocation IS NOT NULL THEN 'revoked'
			WHEN not_after <= $1 THEN 'expired' ELSE 'valid' END, count(*)::int FROM certs GROUP BY 1`, now)
		if err != nil {
			return err
		}
		var k string
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { cnt.ByStatus[k] = n; return nil }); err != nil {
			return err
		}
		rows, err = db.pool.Query(ctx, "SELECT profile, count(*)::int FROM certs GROUP BY 1")
		if err != nil {
			return err
		}
		if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { cnt.ByProfile[k] = n; return nil }); err != nil {
			return err
		}
		nowUnix := now.Unix()
		rows, err = db.pool.Query(ctx, `SELECT ((floor(extract(epoch FROM not_after))::bigint - $1) / 3600)::int AS h, count(*)::int
			FROM certs WHERE revocation IS NULL AND floor(extract(epoch FROM not_after))::bigint > $1
			AND floor(extract(epoch FROM not_after))::bigint < $1 + $2::bigint * 3600 GROUP BY 1`, nowUnix, hours)
		if err != nil {
			return err
		}
		var h int
		_, err = pgx.ForEachRow(rows, []any{&h, &n}, func() error {
			if h >= 0 && h < hours {
				cnt.ExpiringHours[h] = n
			}
			return nil
		})
		return err
	})
	return cnt, err
}
