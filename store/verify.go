package store

import (
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lanyard/lanyard/migrations"
)

// Verify checks, without changing it, that the file at path is a whole
// lanyard bbolt store: it opens read-only, is at least as long as its
// newest meta page says (a truncated copy is not), every page passes
// bbolt's consistency check, and its schema version is one this binary
// knows. `lanyard backup` runs it on a downloaded copy before the copy
// takes its name.
func Verify(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("verify store %s: %w", path, err)
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("verify store %s: %w", path, err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("truncated: %d bytes of %d", fi.Size(), tx.Size())
		}
		// Check sends every problem it finds and closes the channel when
		// done: read it to the end (the check uses the transaction).
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		return first
	})
	if err != nil {
		return fmt.Errorf("verify store %s: %w", path, err)
	}
	v, err := migrations.Current(bdb)
	if err != nil {
		return fmt.Errorf("verify store %s: %w", path, err)
	}
	if v == 0 {
		return fmt.Errorf("verify store %s: not a lanyard store (no schema version)", path)
	}
	if v > migrations.Latest() {
		return fmt.Errorf("verify store %s: schema version %d is newer than this lanyard (%d)", path, v, migrations.Latest())
	}
	return nil
}
