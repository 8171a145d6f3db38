package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	m "github.com/lanyard/lanyard/migrations"
)

var (
	keyCRLNumber   = []byte("crl_number")
	keyCRLLatest   = []byte("crl_latest") // number(8) | DER of the newest published CRL
	keyRevocations = []byte("revocations")
)

// PublishCRL stores der as the newest CRL if number is above the stored
// one (ErrStaleCRL otherwise).
func (db *DB) PublishCRL(ctx context.Context, number int64, der []byte) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(m.BucketMeta)
		if raw := b.Get(keyCRLLatest); len(raw) >= 8 && int64(binary.BigEndian.Uint64(raw)) >= number {
			return fmt.Errorf("CRL %d: %w", number, ErrStaleCRL)
		}
		v := make([]byte, 8, 8+len(der))
		binary.BigEndian.PutUint64(v, uint64(number))
		return b.Put(keyCRLLatest, append(v, der...))
	})
}

// LatestCRL returns the newest published CRL if its number is above after.
func (db *DB) LatestCRL(after int64) (int64, []byte, error) {
	var n int64
	var der []byte
	err := db.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(m.BucketMeta).Get(keyCRLLatest)
		if len(raw) < 8 || int64(binary.BigEndian.Uint64(raw)) <= after {
			return fmt.Errorf("CRL after %d: %w", after, ErrNotFound)
		}
		n, der = int64(binary.BigEndian.Uint64(raw)), bytes.Clone(raw[8:])
		return nil
	})
	return n, der, err
}

// Revocations counts Revoke calls that changed something.
func (db *DB) Revocations() (int64, error) {
	var n int64
	err := db.view(func(tx *bolt.Tx) error {
		if raw := tx.Bucket(m.BucketMeta).Get(keyRevocations); len(raw) == 8 {
			n = int64(binary.BigEndian.Uint64(raw))
		}
		return nil
	})
	return n, err
}

func bumpRevocationsTx(tx *bolt.Tx) error {
	b := tx.Bucket(m.BucketMeta)
	n := uint64(0)
	if raw := b.Get(keyRevocations); len(raw) == 8 {
		n = binary.BigEndian.Uint64(raw)
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n+1)
	return b.Put(keyRevocations, buf[:])
}

// Leader: the embedded engine is one process, its own leader (epoch 1).
func (db *DB) Leader() (int64, bool) { return 1, true }

// LeaderChanged never fires for the embedded engine.
func (db *DB) LeaderChanged() <-chan struct{} { return nil }

// NextCRLNumber increments and returns the CRL number (RFC 5280 5.2.3:
// monotonically increasing). The new value is durable before it returns,
// so a CRL number is never issued twice, even across crashes.
func (db *DB) NextCRLNumber(ctx context.Context) (int64, error) {
	var n int64
	err := db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(m.BucketMeta)
		cur := int64(0)
		if raw := b.Get(keyCRLNumber); len(raw) == 8 {
			cur = int64(binary.BigEndian.Uint64(raw))
		}
		n = cur + 1
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(n))
		return b.Put(keyCRLNumber, buf[:])
	})
	return n, err
}

// CRLNumber returns the last CRL number handed out (0 if none).
func (db *DB) CRLNumber() (int64, error) {
	var n int64
	err := db.view(func(tx *bolt.Tx) error {
		if raw := tx.Bucket(m.BucketMeta).Get(keyCRLNumber); len(raw) == 8 {
			n = int64(binary.BigEndian.Uint64(raw))
		}
		return nil
	})
	return n, err
}

// PutMeta stores a small JSON value under key in the meta bucket (for
// example the last trust-anchor sync status or the admin password hash).
func (db *DB) PutMeta(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("meta %s: %w", key, err)
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(m.BucketMeta).Put([]byte("x:"+key), raw)
	})
}

// GetMeta decodes the value under key into v; ErrNotFound if absent.
func (db *DB) GetMeta(key string, v any) error {
	return db.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(m.BucketMeta).Get([]byte("x:" + key))
		if raw == nil {
			return fmt.Errorf("meta %s: %w", key, ErrNotFound)
		}
		return json.Unmarshal(raw, v)
	})
}

// Session is an admin web session.
type Session struct {
	ID        string    `json:"id"`
	CSRF      string    `json:"csrf"`
	Actor     string    `json:"actor"`
	ExpiresAt time.Time `json:"expires"`
	// Generation names the admin password the session logged in with
	// (package web): a password change makes every older session invalid.
	Generation string `json:"gen,omitempty"`
}

// PutSession stores a web session keyed by the SHA-256 of its cookie
// value (the caller hashes; the store never sees the cookie).
func (db *DB) PutSession(ctx context.Context, key string, s *Session) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return db.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(m.BucketSessions).Put([]byte(key), raw)
	})
}

// GetSession returns a stored session, or ErrNotFound.
func (db *DB) GetSession(key string) (*Session, error) {
	var s Session
	err := db.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(m.BucketSessions).Get([]byte(key))
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, &s)
	})
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteSession removes a session (logout); absent is not an error.
func (db *DB) DeleteSession(ctx context.Context, key string) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(m.BucketSessions).Delete([]byte(key))
	})
}

// CountCerts summarises certificates by status and profile, and counts
// valid certificates expiring in each of the next hours (len(hours)
// buckets). It walks the expiry and profile indexes (keys only, no record
// is decoded), so it stays well under a second at a million records.
func (db *DB) CountCerts(now time.Time, hours int) (*Counts, error) {
	cnt := &Counts{ByStatus: map[string]int{}, ByProfile: map[string]int{}, ExpiringHours: make([]int, hours)}
	err := db.view(func(tx *bolt.Tx) error {
		revoked := tx.Bucket(m.BucketRevoked)
		nowUnix := now.Unix()
		c := tx.Bucket(m.BucketCertsByExpiry).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < 9 {
				continue
			}
			notAfter := int64(binary.BigEndian.Uint64(k[:8]))
			switch {
			case revoked.Get(k[8:]) != nil:
				cnt.ByStatus[StatusRevoked]++
			case nowUnix >= notAfter:
				cnt.ByStatus[StatusExpired]++
			default:
				cnt.ByStatus[StatusValid]++
				if h := int((notAfter - nowUnix) / 3600); h < hours {
					cnt.ExpiringHours[h]++
				}
			}
		}
		p := tx.Bucket(m.BucketCertsByProf).Cursor()
		for k, _ := p.First(); k != nil; k, _ = p.Next() {
			if i := bytes.IndexByte(k, 0); i >= 0 {
				cnt.ByProfile[string(k[:i])]++
			}
		}
		return nil
	})
	return cnt, err
}
