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
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lanyard_store_commits_total", Help: "Durable (fsynced) store transactions.",
	}, func() float64 { c, _ := db.CommitStats(); return float64(c) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "lanyard_store_committed_writes_total", Help: "Writes committed; divided by commits, the mean group-commit size.",
	}, func() float64 { _, w := db.CommitStats(); return float64(w) }))
	return m
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
