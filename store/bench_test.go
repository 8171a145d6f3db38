package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRedeemParallel measures durable token redemptions (the enroll
// write: token marked used, certificate and audit recorded) from 64
// concurrent writers, which is where group commit earns its keep. It
// reports commits/s and writes per commit beside ns/op.
func BenchmarkRedeemParallel(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "lanyard.db"), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	now := time.Now()
	hashes := make([][]byte, b.N)
	var wg sync.WaitGroup
	for w := range 64 { // concurrent so that set-up shares commits too
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 64 {
				h := sha256.Sum256(fmt.Appendf(nil, "secret-%d", i))
				hashes[i] = h[:]
				if err := db.PutToken(ctx, &Token{ID: fmt.Sprintf("t%d", i), Hash: h[:], CN: "a", Profile: "p", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	c0, w0 := db.CommitStats()
	var next atomic.Int64
	b.SetParallelism(32) // 64 writers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			c := &Cert{Serial: fmt.Sprintf("%032x", i+1), CN: "bench.example", Profile: "p", NotBefore: now, NotAfter: now.Add(24 * time.Hour), IssuedAt: now, DER: make([]byte, 600)}
			if err := db.RedeemToken(ctx, fmt.Sprintf("t%d", i), hashes[i], now, c, &AuditEvent{Action: "issue", Subject: c.Serial}); err != nil {
				b.Error(err)
			}
		}
	})
	b.StopTimer()
	c1, w1 := db.CommitStats()
	if c1 > c0 {
		b.ReportMetric(float64(w1-w0)/float64(c1-c0), "writes/commit")
	}
}
