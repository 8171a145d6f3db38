// Package server owns lanyard's one TLS listener: it mounts the Connect
// handlers (thin: decode, call one service method, encode), the admin web
// page, /roots.pem, /crl, /crl.pem, /healthz and /metrics, keeps the
// server's own TLS certificate fresh, and enforces the resource limits
// (body size, timeouts, handshake cap, per-client rate).
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/admincred"
	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/api/lanyard/v1/lanyardv1connect"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

// Defaults for Options.
const (
	// DefaultMaxBody is the largest request accepted: a CSR is under 2 KiB
	// and an RSA-8192 one under 3 KiB; 64 KiB leaves room and stops abuse.
	DefaultMaxBody = 64 << 10
	// DefaultReadTimeout bounds reading a request: a CSR is small, and a
	// client slower than this holds a connection for nothing.
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds writing an answer (a backup streams with
	// its own stall timeout instead).
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout keeps a keep-alive connection (an agent, the admin
	// page) open between requests: two minutes, like most load balancers.
	DefaultIdleTimeout = 120 * time.Second
	// serverCertTTL is the life of the server's own TLS certificate; it
	// renews itself at two thirds of it.
	serverCertTTL = 7 * 24 * time.Hour
)

// Options configure a Server.
type Options struct {
	CA         *ca.Authority
	Store      store.Store
	Issuance   *issuance.Service
	Revocation *revocation.Service
	// Admin checks, rotates and renews the admin credential (default: one
	// built from CA, Store, Revocation and Now).
	Admin *admincred.Service
	// AdminAPI is the service behind the AdminService handlers (default: one
	// built on Store, Issuance and Revocation).
	AdminAPI *admin.Service
	// Web is the admin page, mounted at /admin/ (optional).
	Web http.Handler
	// Extra handlers mounted as given (e.g. an in-process emulator).
	Extra map[string]http.Handler
	// ServerNames for the server's own certificate.
	ServerNames []string
	MaxBody     int64
	// RatePerClient and Burst limit enroll and renew per client (0: off).
	RatePerClient float64
	Burst         int
	// MaxHandshakes caps concurrent TLS handshakes (0: 256; one source
	// address holds at most 16 of them).
	MaxHandshakes                          int
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	Now                                    func() time.Time
	Logger                                 *slog.Logger
	// Registry for /metrics (default: a new one with Go and process collectors).
	Registry *prometheus.Registry
}

// Server is the CA's network face.
type Server struct {
	opts Options
	log  *slog.Logger
	cert atomic.Pointer[tls.Certificate]
	pool *x509.CertPool
	// clientPool anchors client-certificate verification (intermediates).
	clientPool *x509.CertPool
	hintPool   *x509.CertPool // roots + intermediates, for the CertificateRequest
	// rootsPEM and chainPEM are encoded once: every issuance answers with
	// the chain (the CA's accessors return fresh copies).
	rootsPEM, chainPEM string
	verified           verifiedCache
	metrics            *metrics
	limiter            *clientLimiter
	admin              *admincred.Service
	handler            http.Handler
}

// New builds a Server and issues its first TLS certificate.
func New(opts Options) (*Server, error) {
	opts.Now = clock.Or(opts.Now)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = DefaultMaxHandshakes
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if len(opts.ServerNames) == 0 {
		opts.ServerNames = []string{"localhost", "127.0.0.1"}
	}
	if err := checkServerNames(opts.ServerNames, opts.Issuance); err != nil {
		return nil, err
	}
	if opts.AdminAPI == nil {
		opts.AdminAPI = admin.New(admin.Config{Store: opts.Store, Issuance: opts.Issuance, Revocation: opts.Revocation, Now: opts.Now})
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.Admin == nil {
		opts.Admin = admincred.New(admincred.Config{Signer: opts.CA, Store: opts.Store, Revocation: opts.Revocation, Now: opts.Now, Logger: opts.Logger})
	}
	s := &Server{opts: opts, log: opts.Logger, pool: x509.NewCertPool(), clientPool: x509.NewCertPool(), admin: opts.Admin}
	for _, r := range opts.CA.Roots() {
		s.pool.AddCert(r)
	}
	// Client certificates are verified with the CA's own intermediate(s)
	// as anchors: the server holds their keys, so trusting them directly is
	// no weaker, and it spares one ECDSA verification per request.
	s.rootsPEM, s.chainPEM = string(opts.CA.RootsPEM()), string(opts.CA.ChainPEM())
	s.hintPool = s.pool.Clone()
	// Certificates of retired intermediates (after a rotation) renew onto
	// the current one until they expire.
	for _, c := range append(opts.CA.Chain(), opts.CA.Retired()...) {
		s.clientPool.AddCert(c)
		s.hintPool.AddCert(c)
	}
	s.metrics = newMetrics(opts.Registry, opts.Store)
	if opts.RatePerClient > 0 {
		s.limiter = newClientLimiter(opts.RatePerClient, opts.Burst, maxClientBuckets, opts.Now)
	}
	if err := s.renewServerCert(context.Background()); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// ErrServerNameInProfile: a server name is a CN some profile allows.
var ErrServerNameInProfile = errors.New("server name is allowed as a host certificate CN")

// checkServerNames refuses server names (the server certificate's CN and
// DNS SANs) that any profile's CN rules allow: the server's certificate
// shares the issuer with host certificates, and IAM Roles Anywhere cannot
// tell them apart by extended key usage (not a mapped attribute), so a
// role trust policy matching that CN would also accept the server's
// certificate.
func checkServerNames(names []string, iss *issuance.Service) error {
	if iss == nil {
		return nil
	}
	ps := iss.Profiles()
	for _, n := range names {
		for _, pn := range ps.Names() {
			if p, err := ps.Get(pn); err == nil && p.AllowsCN(n) {
				return fmt.Errorf("%w: server name %q matches the CN rules of profile %q; pick server names (server_names) outside every profile's CN rules, or narrow the profile",
					ErrServerNameInProfile, n, pn)
			}
		}
	}
	return nil
}

// Handler is the full HTTP handler (for tests that bring their own listener).
func (s *Server) Handler() http.Handler { return s.handler }

// TLSConfig is the listener's TLS configuration: TLS 1.2+, the server's own
// certificate, client certificates requested (enroll needs none; renew and
// admin calls do) and verified per request by withClientCert.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
		// The acceptable-CA hint lists the intermediates too, so a client
		// holding only its leaf (admin.crt) still picks it.
		ClientCAs:  s.hintPool,
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// RootPool returns the pool of the CA's roots (clients and tests use it).
func (s *Server) RootPool() *x509.CertPool { return s.pool }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	interceptors := connect.WithInterceptors(s.metrics.interceptor())
	readMax := connect.WithHandlerOptions(connect.WithReadMaxBytes(int(s.opts.MaxBody)),
		// Certificates and CSRs do not compress; gzip cost 7% of issuance CPU.
		connect.WithCompression("gzip", nil, nil))
	path, h := lanyardv1connect.NewCertificateServiceHandler(&certificateService{s: s}, interceptors, readMax)
	mux.Handle(path, h)
	path, h = lanyardv1connect.NewAdminServiceHandler(&adminService{s: s}, interceptors, readMax,
		connect.WithInterceptors(s.adminOnly()))
	mux.Handle(path, h)
	mux.HandleFunc("GET /roots.pem", s.handleRoots)
	mux.HandleFunc("GET /crl", s.handleCRL)
	mux.HandleFunc("GET /crl.pem", s.handleCRL)
	mux.HandleFunc("GET /crl/{issuer}", s.handleRetiredCRL)
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET "+BackupPath, s.handleBackup)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	if s.opts.Web != nil {
		mux.Handle("/admin/", s.opts.Web)
		mux.Handle("GET /{$}", http.RedirectHandler("/admin/", http.StatusFound))
	}
	for p, h := range s.opts.Extra {
		mux.Handle(p, h)
	}
	// The client certificate is verified before the rate limit, which
	// counts a verified certificate by its identity and anything else by
	// its source address.
	return s.withClientCert(s.rateLimit(s.limitBody(mux)))
}

// BodyLimiter is an Extra handler that answers a request body over
// MaxBody in its own protocol's error format (package acme: an RFC 8555
// problem document) instead of a plain-text 413.
type BodyLimiter interface {
	BodyTooLarge(w http.ResponseWriter, r *http.Request, detail string)
}

// tooLarge answers 413, through the BodyLimiter of the Extra handler
// whose prefix pattern (no method, ending in /) holds the path, if any.
func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request, detail string) {
	for pattern, h := range s.opts.Extra {
		if bl, ok := h.(BodyLimiter); ok && strings.HasSuffix(pattern, "/") && !strings.Contains(pattern, " ") &&
			strings.HasPrefix(r.URL.Path, pattern) {
			bl.BodyTooLarge(w, r, detail)
			return
		}
	}
	http.Error(w, detail, http.StatusRequestEntityTooLarge)
}

// limitBody reads every request body (at most MaxBody bytes) before any
// handler sees it. A body over the limit gets 413; a body that does not
// arrive in time (a slow client, cut off by the read timeout) or breaks
// off gets 408/400 — the client's fault, never a 5xx. Bodies here are
// small (CSRs, forms), so reading them whole costs one copy.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.opts.MaxBody {
			s.tooLarge(w, r, fmt.Sprintf("request body of %d bytes is over the limit of %d", r.ContentLength, s.opts.MaxBody))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
			if err != nil {
				var tooBig *http.MaxBytesError
				var ne net.Error
				switch {
				case errors.As(err, &tooBig):
					s.tooLarge(w, r, fmt.Sprintf("request body is over the limit of %d bytes", s.opts.MaxBody))
				case errors.As(err, &ne) && ne.Timeout():
					http.Error(w, "request body did not arrive in time", http.StatusRequestTimeout)
				default:
					http.Error(w, "request body could not be read", http.StatusBadRequest)
				}
				return
			}
			if enveloped(r.Header.Get("Content-Type")) {
				if err := checkEnvelopes(r, body); err != nil {
					s.writeEnvelopeError(w, r, err)
					return
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleRoots(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = io.WriteString(w, s.rootsPEM)
}

func (s *Server) handleCRL(w http.ResponseWriter, r *http.Request) {
	crl := s.opts.Revocation.Current()
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Last-Modified", crl.ThisUpdate.UTC().Format(http.TimeFormat))
	if r.URL.Path == "/crl.pem" {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(crl.PEM)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(crl.DER)
}

// handleRetiredCRL serves the CRL of a retired intermediate (after a
// rotation), named by the hex of its subject key identifier: DER, or PEM
// when the name ends in .pem.
func (s *Server) handleRetiredCRL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("issuer")
	ski, asPEM := strings.CutSuffix(name, ".pem")
	for _, c := range s.opts.Revocation.Current().Retired {
		if hex.EncodeToString(c.Issuer.SubjectKeyId) != strings.ToLower(ski) {
			continue
		}
		w.Header().Set("Cache-Control", "public, max-age=60")
		if asPEM {
			w.Header().Set("Content-Type", "application/x-pem-file")
			_, _ = w.Write(c.PEM)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(c.DER)
		return
	}
	http.Error(w, "no CRL for that issuer (GET /crl is the current intermediate's)", http.StatusNotFound)
}

// healthTimeout bounds /healthz's check of the store: a load balancer's
// probe gets its answer before its own timeout (commonly 5s), and a
// database slower than this is as good as down for issuance.
const healthTimeout = 2 * time.Second

// pinger is a store that can say whether its database answers (the
// PostgreSQL engine); others are asked for their CRL number instead.
type pinger interface {
	Ping(ctx context.Context) error
}

// handleHealth answers 200 while the store answers, 503 (and, for a
// shared database, the reason) while it does not, so a load balancer
// sends hosts to another replica.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	var err error
	if p, ok := s.opts.Store.(pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		err = p.Ping(ctx)
		cancel()
	} else {
		_, err = s.opts.Store.CRLNumber()
	}
	if err != nil {
		s.log.Warn("health check: store unavailable", "err", err)
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// renewServerCert issues the server's own TLS certificate and records it.
func (s *Server) renewServerCert(ctx context.Context) error {
	now := s.opts.Now()
	cert, err := s.opts.CA.ServerTLSCertificate(s.opts.ServerNames, serverCertTTL, now)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	rec := &store.Cert{Serial: lanyardv1.FormatSerial(leaf.SerialNumber), CN: leaf.Subject.CommonName, DNSNames: leaf.DNSNames,
		Profile: issuance.ServerProfile, KeyType: "P-256", NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, IssuedAt: now, DER: leaf.Raw}
	ev := &store.AuditEvent{At: now, Actor: "server", Action: store.ActionIssueServer, Subject: rec.Serial}
	if err := s.opts.Store.InsertCert(ctx, rec, ev); err != nil {
		return fmt.Errorf("record server certificate: %w", err)
	}
	s.cert.Store(cert)
	return nil
}

// serverCertDue reports whether two thirds of the server certificate's
// life have passed.
func (s *Server) serverCertDue(now time.Time) bool {
	leaf := s.cert.Load().Leaf
	return !now.Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3))
}

// Tick does the server's periodic work at now: renew its own certificate
// when due. Run calls it; tests call it with a set clock.
func (s *Server) Tick(ctx context.Context, now time.Time) {
	if s.serverCertDue(now) {
		if err := s.renewServerCert(ctx); err != nil {
			s.log.Error("renew server certificate", "err", err)
		} else {
			s.log.Info("server certificate renewed", "not_after", s.cert.Load().Leaf.NotAfter)
		}
	}
}

// Serve accepts connections on ln until ctx ends, then shuts down
// gracefully (in-flight requests get up to 10 s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	tlsLn := newHandshakeListener(ln, s.TLSConfig(), handshakeLimits{max: s.opts.MaxHandshakes}, s.metrics.handshakesRefused.Inc)
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Tick(ctx, s.opts.Now())
			}
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tlsLn) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		// In-flight requests outlived the grace period: cut them off.
		_ = srv.Close()
	}
	<-errc // srv.Serve has returned (ErrServerClosed)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
