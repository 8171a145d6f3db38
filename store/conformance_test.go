package store_test

import (
	"path/filepath"
	"testing"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/storetest"
)

// TestConformance runs the store contract's suite against bbolt.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := store.Open(filepath.Join(t.TempDir(), "lanyard.db"), store.Options{NoBackup: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}
