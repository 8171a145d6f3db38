package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	m "github.com/lanyard/lanyard/migrations"
)

func getTokenTx(tx *bolt.Tx, id string) (*Token, error) {
	raw := tx.Bucket(m.BucketTokens).Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	var t Token
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("token %s: decode: %w", id, err)
	}
	return &t, nil
}

func putTokenTx(tx *bolt.Tx, t *Token) error {
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return tx.Bucket(m.BucketTokens).Put([]byte(t.ID), raw)
}

// PutToken stores a new enrollment token (ErrExists if its ID is taken).
func (db *DB) PutToken(ctx context.Context, t *Token, ev *AuditEvent) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(m.BucketTokens).Get([]byte(t.ID)) != nil {
			return fmt.Errorf("token %s: %w", t.ID, ErrExists)
		}
		if err := putTokenTx(tx, t); err != nil {
			return err
		}
		return appendAuditTx(tx, ev)
	})
}

// GetToken returns the token record with id, or ErrNotFound.
func (db *DB) GetToken(id string) (*Token, error) {
	var t *Token
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		t, err = getTokenTx(tx, id)
		return err
	})
	return t, err
}

// ListUnusedTokens returns tokens neither used, revoked nor expired at
// now, newest first.
func (db *DB) ListUnusedTokens(now time.Time) ([]*Token, error) {
	var out []*Token
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(m.BucketTokens).ForEach(func(_, raw []byte) error {
			var t Token
			if err := json.Unmarshal(raw, &t); err != nil {
				return err
			}
			if t.UsedAt.IsZero() && !t.Revoked && now.Before(t.ExpiresAt) {
				t.Hash = nil
				out = append(out, &t)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, err
}

// RevokeToken withdraws an unused token. A used token cannot be revoked
// (ErrTokenUsed): revoke its certificate instead.
func (db *DB) RevokeToken(ctx context.Context, id string, ev *AuditEvent) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		t, err := getTokenTx(tx, id)
		if err != nil {
			return err
		}
		if !t.UsedAt.IsZero() {
			return fmt.Errorf("token %s: %w", id, ErrTokenUsed)
		}
		if t.Revoked {
			return nil
		}
		t.Revoked = true
		if err := putTokenTx(tx, t); err != nil {
			return err
		}
		return appendAuditTx(tx, ev)
	})
}
