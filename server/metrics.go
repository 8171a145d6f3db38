package server

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanyard/lanyard/store"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	issued   *prometheus.CounterVec
	limited  prometheus.Counter
	// handshakesRefused counts connections closed unhandshaken because
	// their source's queue of waiting connections (or every source's) was
	// full.
	handshakesRefused prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, db store.Operations) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_rpc_requests_total", Help: "Connect/gRPC requests by procedure and code.",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lanyard_rpc_duration_seconds", Help: "Connect/gRPC request latency.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"procedure"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_certificates_issued_total", Help: "Certificates issued, by kind (enroll, renew) and profile.",
		}, []string{"kind", "profile"}),
	}
	m.limited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lanyard_rate_limited_total", Help: "Enroll, renew and self-revoke calls refused by the per-client rate limit.",
	})
	m.handshakesRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lanyard_tls_handshakes_refused_total", Help: "Connections closed before their TLS handshake because their source already had its share of handshakes in flight and of connections waiting.",
	})
	reg.MustRegister(m.requests, m.duration, m.issued, m.limited, m.handshakesRefused)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lanyard_store_size_bytes", Help: "Size of the bbolt store file.",
	}, func() float64 {
		n, err := db.Stats()
		if err != nil {
			return 0
		}
		return float64(n)
	}))
	if l, ok := db.(store.Leadership); ok {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lanyard_leader", Help: "1 while this replica holds the leader lease (builds CRLs, syncs trust anchors, tidies); always 1 on bbolt.",
		}, func() float64 {
			if _, ok := l.Leader(); ok {
				return 1
			}
			return 0
		}))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lanyard_leader_epoch", Help: "Epoch (fencing token) of the leader lease this replica holds; 0 while it does not lead.",
		}, func() float64 {
			if e, ok := l.Leader(); ok {
				return float64(e)
			}
			return 0
		}))
	}
	if p, ok := db.(pooled); ok {
		registerPool(reg, p)
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lanyard_store_commits_total", Help: "Durable (fsynced) store transactions.",
	}, func() float64 { c, _ := db.CommitStats(); return float64(c) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lanyard_store_committed_writes_total", Help: "Writes committed; divided by commits, the mean group-commit size.",
	}, func() float64 { _, w := db.CommitStats(); return float64(w) }))
	return m
}

// pooled is a store with a connection pool (the PostgreSQL engine).
type pooled interface {
	PoolStats() store.PoolStats
}

// registerPool exports the store's connection pool counters.
func registerPool(reg *prometheus.Registry, p pooled) {
	conns := func(f func(store.PoolStats) int32) func() float64 {
		return func() float64 { return float64(f(p.PoolStats())) }
	}
	for _, g := range []struct {
		state string
		f     func(store.PoolStats) int32
	}{
		{"acquired", func(s store.PoolStats) int32 { return s.Acquired }},
		{"idle", func(s store.PoolStats) int32 { return s.Idle }},
		{"total", func(s store.PoolStats) int32 { return s.Total }},
	} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lanyard_store_pool_connections", Help: "Database connections of this replica's pool, by state.",
			ConstLabels: prometheus.Labels{"state": g.state},
		}, conns(g.f)))
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lanyard_store_pool_max_connections", Help: "The pool's connection limit (pool_max_conns in the store URL).",
	}, conns(func(s store.PoolStats) int32 { return s.Max })))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lanyard_store_pool_acquires_total", Help: "Connections handed out by the pool.",
	}, func() float64 { return float64(p.PoolStats().Acquires) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lanyard_store_pool_empty_acquires_total", Help: "Acquires that waited because every connection was in use (raise pool_max_conns if it grows).",
	}, func() float64 { return float64(p.PoolStats().EmptyAcquires) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lanyard_store_pool_acquire_seconds_total", Help: "Time spent acquiring connections.",
	}, func() float64 { return p.PoolStats().AcquireWait.Seconds() }))
}

func (m *metrics) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			resp, err := next(ctx, req)
			proc := req.Spec().Procedure
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
			}
			m.requests.WithLabelValues(proc, code).Inc()
			m.duration.WithLabelValues(proc).Observe(time.Since(start).Seconds())
			return resp, err
		}
	}
}
