package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	m "github.com/lanyard/lanyard/migrations"
)

// TidyRequest says what Tidy may remove: records whose cut-off is before
// the given time. A zero cut-off keeps that kind of record forever.
type TidyRequest struct {
	// CertsExpiredBefore: certificates whose NotAfter is before it (revoked
	// or not: an expired certificate is off every CRL already).
	CertsExpiredBefore time.Time
	// TokensBefore: tokens used, or expired (used or not, revoked or
	// not), before it.
	TokensBefore time.Time
	// SessionsExpiredBefore: web sessions that expired before it.
	SessionsExpiredBefore time.Time
	// AuditBefore: audit events that happened before it.
	AuditBefore time.Time
	// DryRun counts what would go and writes nothing.
	DryRun bool
	// Event, when set, is appended to the audit log in the last
	// transaction (not in a dry run), with Detail set to the counts.
	Event *AuditEvent
}

// TidyResult counts what Tidy removed (or, in a dry run, would remove).
type TidyResult struct {
	Certs    int `json:"certs"`
	Tokens   int `json:"tokens"`
	Sessions int `json:"sessions"`
	Audit    int `json:"audit"`
}

// tidyBatch is how many records one tidy transaction deletes: large enough
// that a tidy of a year's backlog takes few commits, small enough that the
// single writer is never held for more than a few milliseconds, so
// issuance keeps flowing while a tidy runs.
const tidyBatch = 2000

// Tidy removes expired certificates (with every index entry naming them:
// CN, profile, expiry, revoked, renewal links), spent tokens, expired
// sessions and old audit events, as req allows, in transactions of at
// most tidyBatch records. Each transaction is consistent on its own (a
// record and its index entries go together), so a tidy that is
// interrupted leaves a smaller, consistent store and the next one goes
// on. A certificate's successor keeps its PreviousSerial (history) after
// the predecessor is removed.
func (db *DB) Tidy(ctx context.Context, req TidyRequest) (*TidyResult, error) {
	res := &TidyResult{}
	steps := []struct {
		count *int
		cut   time.Time
		find  func(tx *bolt.Tx, cut time.Time, limit int) ([][]byte, error)
		del   func(tx *bolt.Tx, key []byte) error
	}{
		{&res.Certs, req.CertsExpiredBefore, expiredCertKeys, deleteCertTx},
		{&res.Tokens, req.TokensBefore, spentTokenKeys, bucketDelete(m.BucketTokens)},
		{&res.Sessions, req.SessionsExpiredBefore, expiredSessionKeys, bucketDelete(m.BucketSessions)},
		{&res.Audit, req.AuditBefore, oldAuditKeys, bucketDelete(m.BucketAudit)},
	}
	for _, st := range steps {
		if st.cut.IsZero() {
			continue
		}
		limit := tidyBatch
		if req.DryRun {
			limit = -1
		}
		for {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			var keys [][]byte
			if err := db.view(func(tx *bolt.Tx) error {
				var err error
				keys, err = st.find(tx, st.cut, limit)
				return err
			}); err != nil {
				return res, err
			}
			if req.DryRun {
				*st.count += len(keys)
				break
			}
			if len(keys) == 0 {
				break
			}
			n := 0
			if err := db.update(ctx, func(tx *bolt.Tx) error {
				n = 0
				for _, k := range keys {
					if err := st.del(tx, k); err != nil {
						return err
					}
					n++
				}
				return nil
			}); err != nil {
				return res, err
			}
			*st.count += n
			if len(keys) < tidyBatch {
				break
			}
		}
	}
	if req.Event != nil && !req.DryRun {
		detail, _ := json.Marshal(res)
		req.Event.Detail = string(detail)
		if err := db.update(ctx, func(tx *bolt.Tx) error { return appendAuditTx(tx, req.Event) }); err != nil {
			return res, err
		}
	}
	return res, nil
}

// expiredCertKeys walks the expiry index from the oldest: the serial keys
// of certificates whose NotAfter is before cut (at most limit, -1: all).
func expiredCertKeys(tx *bolt.Tx, cut time.Time, limit int) ([][]byte, error) {
	var out [][]byte
	c := tx.Bucket(m.BucketCertsByExpiry).Cursor()
	cutUnix := cut.Unix()
	for k, _ := c.First(); k != nil && limit != 0; k, _ = c.Next() {
		if len(k) < 9 || int64(binary.BigEndian.Uint64(k[:8])) >= cutUnix {
			break
		}
		out = append(out, bytes.Clone(k[8:]))
		limit--
	}
	return out, nil
}

// deleteCertTx removes one certificate record and every index entry that
// names it. A record already gone is not an error.
func deleteCertTx(tx *bolt.Tx, sk []byte) error {
	certs := tx.Bucket(m.BucketCerts)
	raw := certs.Get(sk)
	if raw == nil {
		return nil
	}
	var c Cert
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	if err := certs.Delete(sk); err != nil {
		return err
	}
	for _, ix := range append(certIndexes(&c, sk), certIndex{m.BucketRevoked, sk}) {
		if err := tx.Bucket(ix.bucket).Delete(ix.key); err != nil {
			return err
		}
	}
	ren := tx.Bucket(m.BucketRenewals)
	// Links to successors (sk|next) ...
	var links [][]byte
	rc := ren.Cursor()
	for k, _ := rc.Seek(sk); k != nil && bytes.HasPrefix(k, sk) && len(k) > len(sk); k, _ = rc.Next() {
		links = append(links, bytes.Clone(k))
	}
	// ... and the link from the predecessor (prev|sk).
	if c.PreviousSerial != "" {
		if pk, err := hex.DecodeString(c.PreviousSerial); err == nil {
			links = append(links, append(pk, sk...))
		}
	}
	for _, k := range links {
		if err := ren.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// spentTokenKeys returns the ids of tokens used before cut, or expired
// before cut.
func spentTokenKeys(tx *bolt.Tx, cut time.Time, limit int) ([][]byte, error) {
	type token struct {
		ExpiresAt time.Time `json:"expires"`
		UsedAt    time.Time `json:"used"`
	}
	return staleKeys(tx, m.BucketTokens, limit, func(t *token) bool {
		return (!t.UsedAt.IsZero() && t.UsedAt.Before(cut)) || t.ExpiresAt.Before(cut)
	})
}

// expiredSessionKeys returns the keys of sessions that expired before cut.
func expiredSessionKeys(tx *bolt.Tx, cut time.Time, limit int) ([][]byte, error) {
	type session struct {
		ExpiresAt time.Time `json:"expires"`
	}
	return staleKeys(tx, m.BucketSessions, limit, func(s *session) bool { return s.ExpiresAt.Before(cut) })
}

// staleKeys returns the keys of up to limit records of bucket (limit < 0:
// all) that stale says are stale, each record decoded from JSON into a T.
func staleKeys[T any](tx *bolt.Tx, bucket []byte, limit int, stale func(*T) bool) ([][]byte, error) {
	var out [][]byte
	c := tx.Bucket(bucket).Cursor()
	for k, v := c.First(); k != nil && limit != 0; k, v = c.Next() {
		var rec T
		if err := json.Unmarshal(v, &rec); err != nil {
			return nil, err
		}
		if stale(&rec) {
			out = append(out, bytes.Clone(k))
			limit--
		}
	}
	return out, nil
}

// oldAuditKeys walks the audit log from the oldest event (its keys start
// with the event's Unix nanoseconds) up to cut.
func oldAuditKeys(tx *bolt.Tx, cut time.Time, limit int) ([][]byte, error) {
	var out [][]byte
	c := tx.Bucket(m.BucketAudit).Cursor()
	cutNanos := uint64(cut.UnixNano())
	for k, _ := c.First(); k != nil && limit != 0; k, _ = c.Next() {
		if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) >= cutNanos {
			break
		}
		out = append(out, bytes.Clone(k))
		limit--
	}
	return out, nil
}

func bucketDelete(name []byte) func(tx *bolt.Tx, key []byte) error {
	return func(tx *bolt.Tx, key []byte) error { return tx.Bucket(name).Delete(key) }
}

// CheckIndexes verifies that the certificate indexes and the records agree:
// every record has its CN, profile and expiry entries (and a revoked entry
// exactly when it is revoked), and every index entry names a record. It
// returns the first inconsistency found, or nil. It reads the whole store.
func (db *DB) CheckIndexes() error {
	return db.view(func(tx *bolt.Tx) error {
		certs := tx.Bucket(m.BucketCerts)
		count := 0
		err := certs.ForEach(func(sk, raw []byte) error {
			count++
			var c Cert
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			for _, ix := range certIndexes(&c, sk) {
				if tx.Bucket(ix.bucket).Get(ix.key) == nil {
					return inconsistency("certificate %s has no %s entry", c.Serial, ix.bucket)
				}
			}
			if (tx.Bucket(m.BucketRevoked).Get(sk) != nil) != (c.Revocation != nil) {
				return inconsistency("certificate %s: revoked index and record disagree", c.Serial)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, ix := range []struct {
			bucket []byte
			serial func(k []byte) [][]byte
		}{
			{m.BucketCertsByCN, afterNUL},
			{m.BucketCertsByProf, afterNUL},
			{m.BucketCertsByExpiry, func(k []byte) [][]byte { return [][]byte{k[8:]} }},
			{m.BucketRevoked, func(k []byte) [][]byte { return [][]byte{k} }},
			{m.BucketRenewals, func(k []byte) [][]byte {
				// prev|next, both serial keys of equal length (lanyard's serials).
				h := len(k) / 2
				return [][]byte{k[:h], k[h:]}
			}},
		} {
			n := 0
			if err := tx.Bucket(ix.bucket).ForEach(func(k, _ []byte) error {
				n++
				for _, sk := range ix.serial(k) {
					if certs.Get(sk) == nil {
						return inconsistency("%s entry %x names no certificate", ix.bucket, k)
					}
				}
				return nil
			}); err != nil {
				return err
			}
			if bytes.Equal(ix.bucket, m.BucketCertsByExpiry) && n != count {
				return inconsistency("%d expiry entries for %d certificates", n, count)
			}
		}
		return nil
	})
}

func afterNUL(k []byte) [][]byte {
	if i := bytes.IndexByte(k, 0); i >= 0 {
		return [][]byte{k[i+1:]}
	}
	return [][]byte{k}
}

// ErrInconsistent is what CheckIndexes wraps: an index and the records
// disagree.
var ErrInconsistent = errors.New("store indexes inconsistent")

func inconsistency(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInconsistent, fmt.Sprintf(format, args...))
}
