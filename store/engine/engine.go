// Package engine opens the store a location names: a bbolt file path
// (the embedded default) or a postgres:// URL (a database several
// replicas share). It is the one place that chooses the engine; commands
// and the composition root call it, services only see store.Store.
package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/postgres"
)

// Options tune Open for both engines.
type Options struct {
	Logger *slog.Logger
	// Timeout bounds waiting for bbolt's file lock.
	Timeout time.Duration
	// NoBackup skips bbolt's copy before migrating.
	NoBackup bool
	// Replica makes a PostgreSQL store campaign for the leader lease (a
	// serving replica); commands leave it false.
	Replica bool
}

// IsPostgres reports whether location is a PostgreSQL URL.
func IsPostgres(location string) bool { return postgres.IsURL(location) }

// Open opens (and migrates) the store at location.
func Open(ctx context.Context, location string, o Options) (store.Store, error) {
	if postgres.IsURL(location) {
		po := postgres.Options{Logger: o.Logger}
		if o.Replica {
			po.Lease = &postgres.LeaseOptions{}
		}
		return postgres.Open(ctx, location, po)
	}
	return store.Open(location, store.Options{Logger: o.Logger, Timeout: o.Timeout, NoBackup: o.NoBackup})
}

// Describe names location for messages (a URL's password redacted).
func Describe(location string) string {
	if postgres.IsURL(location) {
		return postgres.Redact(location)
	}
	return location
}
