package migrations

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestApplyIsIdempotent(t *testing.T) {
	db := openTemp(t)
	got, err := Apply(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(All) {
		t.Fatalf("applied %v, want all %d", got, len(All))
	}
	again, err := Apply(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("second Apply ran %v, want none", again)
	}
	v, err := Current(db)
	if err != nil || v != Latest() {
		t.Fatalf("Current = %d, %v; want %d", v, err, Latest())
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketCerts, BucketTokens, BucketAudit, BucketSessions} {
			if tx.Bucket(b) == nil {
				t.Errorf("bucket %s missing", b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestApplyRefusesNewerStore(t *testing.T) {
	db := openTemp(t)
	if _, err := Apply(db); err != nil {
		t.Fatal(err)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(BucketMeta).Put(keySchemaVersion, []byte{0, 0, 0, 0, 0, 0, 0x10, 0})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(db); err == nil {
		t.Fatal("Apply on a newer store succeeded")
	}
}

func TestVersionsAreDense(t *testing.T) {
	for i, m := range All {
		if m.Version != i+1 {
			t.Fatalf("migration %d has version %d", i, m.Version)
		}
	}
}

func TestPostgresMigrationsNumbered(t *testing.T) {
	ms := Postgres()
	if len(ms) == 0 || ms[0].Version != 1 || ms[0].SQL == "" {
		t.Fatalf("Postgres() = %+v", ms)
	}
}
