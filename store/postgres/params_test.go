package postgres

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/pgtest"
)

func TestTakeParams(t *testing.T) {
	const base = "postgres://lanyard:secret@db1/lanyard?sslmode=verify-full"
	for _, tc := range []struct {
		name    string
		query   string
		opts    Options
		want    Options
		wantErr string
	}{
		{name: "none", want: Options{Lease: &LeaseOptions{}}},
		{name: "every one", query: "&lanyard_query_timeout=3s&lanyard_resolve_timeout=20s&lanyard_lease_ttl=2s&lanyard_linger=1ms&lanyard_max_batch=64&lanyard_writers=2",
			want: Options{QueryTimeout: 3 * time.Second, ResolveTimeout: 20 * time.Second, Linger: time.Millisecond, MaxBatch: 64, Writers: 2, Lease: &LeaseOptions{TTL: 2 * time.Second}}},
		{name: "the caller's value wins", query: "&lanyard_writers=2", opts: Options{Writers: 8}, want: Options{Writers: 8, Lease: &LeaseOptions{}}},
		{name: "unknown", query: "&lanyard_lease=2s", wantErr: "unknown"},
		{name: "bad duration", query: "&lanyard_query_timeout=10", wantErr: "positive duration"},
		{name: "zero count", query: "&lanyard_max_batch=0", wantErr: "positive whole number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Lease = &LeaseOptions{}
			got, err := takeParams(base+tc.query, &opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(got, "lanyard_") || !strings.Contains(got, "sslmode=verify-full") || !strings.Contains(got, "secret@db1") {
				t.Fatalf("URL after = %q, want the lanyard_ parameters gone and the rest kept", got)
			}
			if opts.QueryTimeout != tc.want.QueryTimeout || opts.ResolveTimeout != tc.want.ResolveTimeout || opts.Linger != tc.want.Linger || opts.MaxBatch != tc.want.MaxBatch ||
				opts.Writers != tc.want.Writers || opts.Lease.TTL != tc.want.Lease.TTL {
				t.Fatalf("options = %+v (lease %+v), want %+v (lease %+v)", opts, opts.Lease, tc.want, tc.want.Lease)
			}
		})
	}
}

// TestOpenAppliesTheURLParameters opens a real database through a URL
// carrying every lanyard_* parameter. Open used to set its defaults before
// it read the URL, and a parameter fills only what is unset, so all but
// lanyard_linger and lanyard_lease_ttl were silently ignored.
func TestOpenAppliesTheURLParameters(t *testing.T) {
	dsn := pgtest.NewDatabase(t) + "&lanyard_query_timeout=3s&lanyard_resolve_timeout=20s&lanyard_linger=3ms&lanyard_max_batch=7&lanyard_writers=3"
	db, err := Open(context.Background(), dsn, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := db.opts
	if got.QueryTimeout != 3*time.Second || got.ResolveTimeout != 20*time.Second || got.Linger != 3*time.Millisecond || got.MaxBatch != 7 || got.Writers != 3 {
		t.Fatalf("options after Open = query %v, resolve %v, linger %v, max batch %d, writers %d; want 3s, 20s, 3ms, 7, 3 from the URL",
			got.QueryTimeout, got.ResolveTimeout, got.Linger, got.MaxBatch, got.Writers)
	}
}
