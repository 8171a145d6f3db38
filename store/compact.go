package store

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lanyard/lanyard/internal/atomicfile"
)

// compactTxMaxSize is how many bytes of keys and values bbolt's Compact
// copies per transaction: bounded memory for a store of any size.
const compactTxMaxSize = 64 << 20

// CompactResult is what Compact did.
type CompactResult struct {
	// Before and After are the file sizes; After is what the compacted copy
	// measured (in a dry run it is removed again).
	Before, After int64
	DryRun        bool
}

// Compact rewrites the bbolt file at path without its free pages (bbolt
// never shrinks a file by itself: after a tidy the space is reused, not
// returned). It needs the store offline: it takes the file's lock (shared, which a server's exclusive lock excludes, and
// fails after timeout when a server holds it). The copy is written next to
// the file, fsynced, opened again and checked (CheckIndexes) before it
// atomically replaces the original; on any failure the original is left
// as it was. ev, when set, is appended to the compacted store's audit log
// (not in a dry run). A dry run makes the copy, measures it and removes it.
func Compact(path string, timeout time.Duration, dryRun bool, ev *AuditEvent) (*CompactResult, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	res := &CompactResult{Before: fi.Size(), DryRun: dryRun}
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: true})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("compact %s: the store is in use (stop lanyard serve first): %w", path, err)
		}
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	pending, err := atomicfile.Prepare(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	defer pending.Discard()
	tmpName := pending.Name()
	dst, err := bolt.Open(tmpName, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("compact %s: open the copy: %w", path, err)
	}
	if err := bolt.Compact(dst, src, compactTxMaxSize); err != nil {
		dst.Close()
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	if ev != nil && !dryRun {
		if err := dst.Update(func(tx *bolt.Tx) error { return appendAuditTx(tx, ev) }); err != nil {
			dst.Close()
			return nil, fmt.Errorf("compact %s: audit: %w", path, err)
		}
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return nil, fmt.Errorf("compact %s: sync the copy: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return nil, fmt.Errorf("compact %s: close the copy: %w", path, err)
	}
	// The copy must open as a store and be consistent before it replaces
	// the original.
	check, err := Open(tmpName, Options{NoBackup: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("compact %s: the copy does not open: %w", path, err)
	}
	cerr := check.CheckIndexes()
	check.Close()
	if cerr != nil {
		return nil, fmt.Errorf("compact %s: the copy: %w", path, cerr)
	}
	if cfi, err := os.Stat(tmpName); err == nil {
		res.After = cfi.Size()
	}
	if dryRun {
		return res, nil
	}
	if err := pending.Commit(); err != nil {
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	return res, nil
}
