package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/lanyard/lanyard/internal/pgtest"
)

// postgres measures enroll at c=64 with the store on a real, throw-away
// PostgreSQL (internal/pgtest: fsync off, synchronous_commit on), first on
// one replica, then spread over two replicas on the same database (one
// CA folder, as a deployment shares the CA files).
func (r *report) postgres(ctx context.Context, bin string, runs, n int, only, params string) error {
	names := map[int]string{1: "enroll on PostgreSQL, 1 replica", 2: "enroll on PostgreSQL, 2 replicas (load split)"}
	if !strings.Contains(names[1], only) && !strings.Contains(names[2], only) {
		return nil
	}
	pgs, err := pgtest.Start()
	if err != nil {
		return err
	}
	defer pgs.Stop()
	for _, replicas := range []int{1, 2} {
		name := names[replicas]
		if !strings.Contains(name, only) {
			continue
		}
		db := fmt.Sprintf("bench%d", replicas)
		if err := pgs.CreateDatabase(ctx, db); err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "lanyard-bench-pg-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dsn := pgs.DSN(db)
		if params != "" {
			dsn += sep(dsn) + params
		}
		first, err := startServer(bin, dir, dsn, "a", true, "")
		if err != nil {
			return err
		}
		if first.dbPID, err = pgs.PID(); err != nil {
			log.Printf("PostgreSQL CPU not measured: %v", err)
		}
		for i := 1; i < replicas; i++ {
			peer, err := startServer(bin, dir, dsn, fmt.Sprintf("r%d", i), false, "")
			if err != nil {
				first.stop()
				return err
			}
			first.peers = append(first.peers, peer)
		}
		var results []result
		for k := 0; k < runs; k++ {
			res, err := first.load(ctx, "covalent", 64, n, false, false)
			if err != nil {
				first.stopAll()
				return fmt.Errorf("%s: %w", name, err)
			}
			log.Printf("%s c=64 run %d: %.0f/s p50=%.1fms p99=%.1fms errors=%d", name, k+1, res.rate, ms(res.p50), ms(res.p99), res.errors)
			results = append(results, res)
		}
		first.stopAll()
		r.rows = append(r.rows, row{name: name + ", c=64", res: ptr(median(results)), target: "≥ 4,000/s, p99 ≤ 50 ms"})
	}
	return nil
}

// stopAll stops the server and its peers.
func (s *server) stopAll() {
	for _, p := range s.peers {
		p.stop()
	}
	s.stop()
}

// sep is what joins more parameters to dsn.
func sep(dsn string) string {
	if strings.Contains(dsn, "?") {
		return "&"
	}
	return "?"
}
