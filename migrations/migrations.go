// Package migrations owns the schema of lanyard's stores: for bbolt a
// numbered, forward-only list of migrations and the code that applies the
// pending ones; for PostgreSQL the numbered, forward-only SQL files in
// postgres/ (applied by the engine in store/postgres under an advisory
// lock, see Postgres).
//
// A migration runs inside one bbolt write transaction together with the
// update of the schema version, so a crash leaves the store either before
// or after it, never half-way. Applying twice is a no-op.
package migrations

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket names shared with the store package. They live here because the
// migrations create them; the store only uses them.
var (
	BucketMeta          = []byte("meta")
	BucketCerts         = []byte("certs")           // serial(16) -> cert record
	BucketCertsByCN     = []byte("certs_by_cn")     // cn 0x00 serial -> nil
	BucketCertsByExpiry = []byte("certs_by_expiry") // notAfter(8, unix s) serial -> nil
	BucketCertsByProf   = []byte("certs_by_profile")
	BucketRenewals      = []byte("renewals") // previous serial | next serial -> nil
	BucketRevoked       = []byte("revoked")  // serial -> nil (revoked, for CRLs)
	BucketTokens        = []byte("tokens")   // token id -> token record
	BucketAudit         = []byte("audit")    // time-ordered id -> event
	BucketSessions      = []byte("web_sessions")
)

// keySchemaVersion holds the number of the last applied migration.
var keySchemaVersion = []byte("schema_version")

// Migration is one forward-only schema step.
type Migration struct {
	// Version is its number, starting at 1, without gaps.
	Version int
	// Name says what it does, for logs.
	Name string
	// Apply changes the schema. It must be idempotent (a store restored
	// from a backup taken mid-way may see it twice).
	Apply func(tx *bolt.Tx) error
}

// All is the ordered list of migrations.
var All = []Migration{
	{1, "create buckets for certificates, indexes, tokens, audit", func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketMeta, BucketCerts, BucketCertsByCN, BucketCertsByExpiry,
			BucketCertsByProf, BucketRenewals, BucketRevoked, BucketTokens, BucketAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	}},
	{2, "create bucket for admin web sessions", func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(BucketSessions)
		return err
	}},
}

// ErrFutureSchema means the store was written by a newer lanyard.
var ErrFutureSchema = errors.New("store schema is newer than this lanyard")

// Latest is the version the newest migration brings the store to.
func Latest() int { return All[len(All)-1].Version }

// Current reads the schema version of an open store (0 for a new file).
func Current(db *bolt.DB) (int, error) {
	v := 0
	err := db.View(func(tx *bolt.Tx) error {
		v = currentTx(tx)
		return nil
	})
	return v, err
}

func currentTx(tx *bolt.Tx) int {
	b := tx.Bucket(BucketMeta)
	if b == nil {
		return 0
	}
	raw := b.Get(keySchemaVersion)
	if len(raw) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(raw))
}

// Apply runs every pending migration, each in its own transaction, and
// returns the versions it applied. It refuses a store newer than All.
func Apply(db *bolt.DB) ([]int, error) {
	var applied []int
	for _, m := range All {
		var ran bool
		err := db.Update(func(tx *bolt.Tx) error {
			cur := currentTx(tx)
			if cur > Latest() {
				return fmt.Errorf("%w: store at %d, lanyard knows %d", ErrFutureSchema, cur, Latest())
			}
			if cur >= m.Version {
				return nil
			}
			if cur != m.Version-1 {
				return fmt.Errorf("migration %d: store at %d, expected %d", m.Version, cur, m.Version-1)
			}
			if err := m.Apply(tx); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
			}
			meta, err := tx.CreateBucketIfNotExists(BucketMeta)
			if err != nil {
				return err
			}
			var buf [8]byte
			binary.BigEndian.PutUint64(buf[:], uint64(m.Version))
			ran = true
			return meta.Put(keySchemaVersion, buf[:])
		})
		if err != nil {
			return applied, err
		}
		if ran {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}
