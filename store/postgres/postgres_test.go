package postgres_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/postgres"
	"github.com/lanyard/lanyard/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.DiscardHandler)

// open returns an engine on a fresh database, closed when t ends.
func open(t *testing.T, opts postgres.Options) *postgres.DB {
	t.Helper()
	return openDSN(t, pgtest.NewDatabase(t), opts)
}

func openDSN(t *testing.T, dsn string, opts postgres.Options) *postgres.DB {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	db, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestConformance runs the store contract's suite, unchanged, on PostgreSQL.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, postgres.Options{}) })
}
