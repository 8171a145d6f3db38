package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lanyard/lanyard/internal/clock"
	m "github.com/lanyard/lanyard/migrations"
)

// newEventID is time-ordered (8 bytes of Unix nanoseconds) with 4 random
// bytes, so the audit bucket is appended to and reads newest-first by
// walking backwards.
func newEventID(at time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(at.UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// PrepareAudit fills in an event's time (the system clock's now, if the
// caller left it zero: services stamp events from their own clock) and its
// time-ordered ID (if empty) and returns the ID's key bytes: what every
// engine stores events under, so that keys sort by time.
func PrepareAudit(ev *AuditEvent) []byte {
	if ev.At.IsZero() {
		ev.At = clock.System{}.Now()
	}
	if ev.ID == "" {
		ev.ID = newEventID(ev.At)
	}
	k, err := hex.DecodeString(ev.ID)
	if err != nil {
		k = []byte(ev.ID)
	}
	return k
}

func appendAuditTx(tx *bolt.Tx, ev *AuditEvent) error {
	if ev == nil {
		return nil
	}
	k := PrepareAudit(ev)
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return tx.Bucket(m.BucketAudit).Put(k, raw)
}

// AppendAudit records one event on its own.
func (db *DB) AppendAudit(ctx context.Context, ev *AuditEvent) error {
	return db.update(ctx, func(tx *bolt.Tx) error { return appendAuditTx(tx, ev) })
}

// ListAudit returns events newest first matching q (Action exact, Actor and
// Subject as substrings) and the token of the next page.
func (db *DB) ListAudit(q AuditQuery) ([]*AuditEvent, string, error) {
	const maxScan = 20000
	limit, before := q.Page()
	q.Limit = limit
	var out []*AuditEvent
	next := ""
	err := db.view(func(tx *bolt.Tx) error {
		cur := tx.Bucket(m.BucketAudit).Cursor()
		k, v := lastBelow(cur, before)
		scanned := 0
		for ; k != nil; k, v = cur.Prev() {
			if len(out) == q.Limit || scanned == maxScan {
				return nil
			}
			scanned++
			next = hex.EncodeToString(k)
			var ev AuditEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			if q.Action != "" && ev.Action != q.Action {
				continue
			}
			if q.Actor != "" && !strings.Contains(ev.Actor, q.Actor) {
				continue
			}
			if q.Subject != "" && !strings.Contains(ev.Subject, q.Subject) {
				continue
			}
			out = append(out, &ev)
		}
		next = ""
		return nil
	})
	return out, next, err
}
