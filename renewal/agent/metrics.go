package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus metrics, labelled by folder.
type metrics struct {
	reg         *prometheus.Registry
	lastRenewal *prometheus.GaugeVec
	nextRenewal *prometheus.GaugeVec
	notAfter    *prometheus.GaugeVec
	failures    *prometheus.CounterVec
	renewals    *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		lastRenewal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanyard_agent_last_renewal_timestamp_seconds",
			Help: "When the folder's certificate was last renewed (Unix time).",
		}, []string{"dir"}),
		nextRenewal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanyard_agent_next_renewal_timestamp_seconds",
			Help: "When the agent will next renew the folder's certificate (Unix time).",
		}, []string{"dir"}),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanyard_agent_certificate_not_after_timestamp_seconds",
			Help: "When the folder's current certificate expires (Unix time).",
		}, []string{"dir"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_agent_renewal_failures_total",
			Help: "Failed renewal attempts, by folder and whether the error was final.",
		}, []string{"dir", "final"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanyard_agent_renewals_total",
			Help: "Successful renewals (and re-enrollments), by folder.",
		}, []string{"dir"}),
	}
	m.reg.MustRegister(m.lastRenewal, m.nextRenewal, m.notAfter, m.failures, m.renewals)
	return m
}

func ts(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// serveMetrics serves /metrics on a loopback listener until ctx ends.
func (m *metrics) serve(ctx context.Context, addr string) (net.Addr, <-chan error, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr(), errc, nil
}
