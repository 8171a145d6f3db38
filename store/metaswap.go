package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	m "github.com/lanyard/lanyard/migrations"
)

// MetaWrite is one conditional write of SwapMeta (and InsertCertSwap):
// the condition (If or IfAbsent; neither means none) is checked and the
// write (Value, or Delete) applied in one transaction with the others,
// so a read-modify-write of a Meta value holds across replicas: of two
// writers that read the same value, the second finds it changed and gets
// ErrConflict. Values compare as JSON values (key order and spacing do
// not matter), so If is the value as the writer read it.
type MetaWrite struct {
	Key string
	// If is the value Key must hold; IfAbsent says Key must be absent.
	If       any
	IfAbsent bool
	// Value is written under Key; Delete removes Key instead.
	Value  any
	Delete bool
}

// Holds reports whether w's condition holds for the stored value raw
// (found false: Key is absent). Engines call it inside the transaction.
func (w *MetaWrite) Holds(raw []byte, found bool) (bool, error) {
	switch {
	case w.IfAbsent:
		return !found, nil
	case w.If == nil:
		return true, nil
	case !found:
		return false, nil
	}
	want, err := json.Marshal(w.If)
	if err != nil {
		return false, fmt.Errorf("meta %s: condition: %w", w.Key, err)
	}
	a, err := canonicalJSON(want)
	if err != nil {
		return false, fmt.Errorf("meta %s: condition: %w", w.Key, err)
	}
	b, err := canonicalJSON(raw)
	if err != nil {
		return false, fmt.Errorf("meta %s: stored value: %w", w.Key, err)
	}
	return bytes.Equal(a, b), nil
}

// Encode returns the JSON to store (nil for a delete).
func (w *MetaWrite) Encode() ([]byte, error) {
	if w.Delete {
		return nil, nil
	}
	raw, err := json.Marshal(w.Value)
	if err != nil {
		return nil, fmt.Errorf("meta %s: %w", w.Key, err)
	}
	return raw, nil
}

// canonicalJSON re-encodes raw with sorted object keys and no spacing.
func canonicalJSON(raw []byte) ([]byte, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// conflict names the key whose SwapMeta condition failed.
func conflict(key string) error { return fmt.Errorf("meta %s: %w", key, ErrConflict) }

// SwapMeta applies writes in one transaction if every condition holds,
// else fails with ErrConflict and writes nothing; ev, if set, is audited
// in the same transaction.
func (db *DB) SwapMeta(ctx context.Context, writes []MetaWrite, ev *AuditEvent) error {
	return db.swap(ctx, writes, ev, nil)
}

// InsertCertSwap records c (as InsertCert) and applies writes (as
// SwapMeta) in one transaction: both, or (ErrConflict) neither.
func (db *DB) InsertCertSwap(ctx context.Context, c *Cert, ev *AuditEvent, writes []MetaWrite) error {
	return db.swap(ctx, writes, ev, func(tx *bolt.Tx) error { return putCertTx(tx, c) })
}

// InsertRenewalSwap records c as the renewal of prev (as InsertRenewal)
// and applies writes (as SwapMeta) in one transaction: both, or
// (ErrConflict, ErrNotFound, ErrRevoked) neither.
func (db *DB) InsertRenewalSwap(ctx context.Context, prev string, c *Cert, ev *AuditEvent, writes []MetaWrite) error {
	return db.swap(ctx, writes, ev, func(tx *bolt.Tx) error { return renewTx(tx, prev, c) })
}

// swap applies writes, then record (if set), then audits ev, in one
// transaction: all or nothing.
func (db *DB) swap(ctx context.Context, writes []MetaWrite, ev *AuditEvent, record func(*bolt.Tx) error) error {
	enc, err := encodeWrites(writes)
	if err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		if err := swapMetaTx(tx, writes, enc); err != nil {
			return err
		}
		if record != nil {
			if err := record(tx); err != nil {
				return err
			}
		}
		return appendAuditTx(tx, ev)
	})
}

func encodeWrites(writes []MetaWrite) ([][]byte, error) {
	enc := make([][]byte, len(writes))
	for i := range writes {
		var err error
		if enc[i], err = writes[i].Encode(); err != nil {
			return nil, err
		}
	}
	return enc, nil
}

// swapMetaTx checks every condition, then writes; it fails before
// writing anything, so a retried group sees the same state.
func swapMetaTx(tx *bolt.Tx, writes []MetaWrite, enc [][]byte) error {
	b := tx.Bucket(m.BucketMeta)
	for i := range writes {
		raw := b.Get([]byte("x:" + writes[i].Key))
		ok, err := writes[i].Holds(raw, raw != nil)
		if err != nil {
			return err
		}
		if !ok {
			return conflict(writes[i].Key)
		}
	}
	for i, w := range writes {
		k := []byte("x:" + w.Key)
		var err error
		if w.Delete {
			err = b.Delete(k)
		} else {
			err = b.Put(k, enc[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ListMeta returns the values under keys beginning with prefix, keyed by
// their full key.
func (db *DB) ListMeta(prefix string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(m.BucketMeta).Cursor()
		p := []byte("x:" + prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			out[strings.TrimPrefix(string(k), "x:")] = bytes.Clone(v)
		}
		return nil
	})
	return out, err
}
