// Package service is the runtime every churnwatch service shares: logger,
// telemetry, token verification, Redis, the Kafka cluster (TLS, SASL), the
// gRPC server (auth, health, reflection, keepalive, resource limits,
// tracing) and the HTTP server (/healthz, /readyz, /metrics, the browser
// API: the same gRPC services in the Connect and gRPC-Web protocols;
// TLS/mTLS like gRPC, optionally a plaintext probe port), with an ordered,
// bounded shutdown.
package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/logging"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/platform/telemetry"
)

// Worker is a background loop (a consumer, a sweeper). It must return soon
// after ctx ends, having finished and committed its in-flight batch.
type Worker func(ctx context.Context) error

// Base holds one service instance's shared parts.
type Base struct {
	Cfg      config.Common
	Log      *slog.Logger
	Tel      *telemetry.Telemetry
	Verifier *auth.Verifier
	Redis    redis.UniversalClient
	// Kafka is how every reader, writer and admin client of the service
	// reaches the brokers (TLS, SASL from the configuration).
	Kafka  kafkax.Cluster
	GRPC   *grpc.Server
	Mux    *http.ServeMux
	Health *health.Server

	grpcLis, httpLis, plainLis net.Listener
	httpSrv, plainSrv          *http.Server
	tlsConfig                  *tls.Config // nil: plaintext
	probes                     *http.ServeMux
	ready                      atomic.Bool
	readyChecks                []func(context.Context) error
	workers                    []namedWorker
	closers                    []func(context.Context) error
	streamsCtx                 context.Context
	cancelStreams              context.CancelFunc
}

type namedWorker struct {
	name string
	fn   Worker
}

// Options tune New.
type Options struct {
	// LogOutput defaults to stderr.
	LogOutput io.Writer
	// Policy maps each RPC to the roles allowed to call it.
	Policy auth.Policy
	// NoRedis skips the Redis client (services that do not use it).
	NoRedis bool
}

// New builds the shared parts and binds the listeners, so that GRPCAddr and
// HTTPAddr are known before Run (tests bind 127.0.0.1:0).
func New(ctx context.Context, cfg config.Common, opts Options) (*Base, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	out := opts.LogOutput
	if out == nil {
		out = os.Stderr
	}
	b := &Base{Cfg: cfg, Log: logging.New(out, cfg.Service, cfg.LogLevel), Mux: http.NewServeMux()}
	var err error
	if b.Tel, err = telemetry.Setup(ctx, cfg.Service, cfg.OTLPEndpoint); err != nil {
		return nil, err
	}
	if b.Verifier, err = auth.FromConfig(ctx, cfg, b.Log); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	b.closers = append(b.closers, func(context.Context) error { b.Verifier.Close(); return nil })
	if !opts.NoRedis {
		if b.Redis, err = redisx.New(cfg); err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		b.readyChecks = append(b.readyChecks, func(ctx context.Context) error { return b.Redis.Ping(ctx).Err() })
		b.closers = append(b.closers, func(context.Context) error { return b.Redis.Close() })
	}
	if b.Kafka, err = kafkax.ClusterFrom(cfg); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	b.closers = append(b.closers, func(context.Context) error { b.Kafka.Close(); return nil })
	lim := cfg.Limits
	sopts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(b.Tel.TracerProvider), otelgrpc.WithMeterProvider(b.Tel.MeterProvider))),
		grpc.ChainUnaryInterceptor(auth.UnaryInterceptor(b.Verifier, opts.Policy, b.Log)),
		grpc.ChainStreamInterceptor(auth.StreamInterceptor(b.Verifier, opts.Policy, b.Log)),
		// An idle connection (no RPC, so nothing authenticated on it) is
		// closed after MaxConnectionIdle; pings are answered every 30 s and a
		// client pinging more often than every 10 s is disconnected.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, MaxConnectionIdle: lim.GRPCMaxConnectionIdle}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ConnectionTimeout(lim.GRPCConnectionTimeout),
		grpc.MaxConcurrentStreams(uint32(lim.GRPCMaxStreams)),
		grpc.MaxRecvMsgSize(lim.GRPCMaxMessage),
	}
	if cfg.TLSCert != "" {
		if b.tlsConfig, err = serverTLS(cfg); err != nil {
			return nil, err
		}
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(b.tlsConfig)))
	}
	b.GRPC = grpc.NewServer(sopts...)
	b.Health = health.NewServer()
	healthpb.RegisterHealthServer(b.GRPC, b.Health)
	registerReflection(b.GRPC)
	b.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	b.probes = http.NewServeMux()
	for _, m := range []*http.ServeMux{b.Mux, b.probes} {
		m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		m.HandleFunc("GET /readyz", b.serveReady)
		m.Handle("GET /metrics", b.Tel.MetricsHandler())
	}

	if b.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	if b.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		b.grpcLis.Close()
		return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.HTTPPlainAddr != "" {
		if b.plainLis, err = net.Listen("tcp", cfg.HTTPPlainAddr); err != nil {
			b.grpcLis.Close()
			b.httpLis.Close()
			return nil, fmt.Errorf("listen plain http %s: %w", cfg.HTTPPlainAddr, err)
		}
	}
	b.streamsCtx, b.cancelStreams = context.WithCancel(context.Background())
	b.Log.Info("configured", config.Attrs(cfg.Fields())...)
	return b, nil
}

func serverTLS(cfg config.Common) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls key pair: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("client ca: no certificates")
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// GRPCAddr is the bound gRPC address.
func (b *Base) GRPCAddr() string { return b.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address (HTTPS when TLS is configured).
func (b *Base) HTTPAddr() string { return b.httpLis.Addr().String() }

// HTTPPlainAddr is the bound address of the plaintext probe listener
// (/healthz, /readyz, /metrics only), or "" when none is configured.
func (b *Base) HTTPPlainAddr() string {
	if b.plainLis == nil {
		return ""
	}
	return b.plainLis.Addr().String()
}

// TLS reports whether the gRPC and HTTP ports serve TLS.
func (b *Base) TLS() bool { return b.tlsConfig != nil }

// StreamsContext ends when shutdown begins: long-lived server streams select
// on it so that GracefulStop does not wait for them.
func (b *Base) StreamsContext() context.Context { return b.streamsCtx }

// AddWorker registers a background loop started by Run.
func (b *Base) AddWorker(name string, w Worker) { b.workers = append(b.workers, namedWorker{name, w}) }

// AddCloser registers a step of shutdown run after the servers stopped, in
// reverse order of registration (flush producers, close clients).
func (b *Base) AddCloser(c func(context.Context) error) { b.closers = append(b.closers, c) }

// AddReadyCheck adds a dependency check to /readyz.
func (b *Base) AddReadyCheck(c func(context.Context) error) { b.readyChecks = append(b.readyChecks, c) }

// Ready reports whether the service finished starting.
func (b *Base) Ready() bool { return b.ready.Load() }

func (b *Base) serveReady(w http.ResponseWriter, r *http.Request) {
	if !b.ready.Load() {
		http.Error(w, "starting or stopping", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	for _, c := range b.readyChecks {
		if err := c(ctx); err != nil {
			http.Error(w, "dependency not ready", http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = io.WriteString(w, "ready\n")
}

// Run serves until ctx ends or a worker fails, then shuts down in order:
// health NOT_SERVING → stop workers (they finish and commit their batch) →
// end open streams → GracefulStop (forced Stop after the grace period) →
// HTTP shutdown → closers (flush producers, close clients) → telemetry.
func (b *Base) Run(ctx context.Context) error {
	if err := b.mountBrowserAPI(); err != nil {
		return err
	}
	errc := make(chan error, len(b.workers)+2)
	go func() {
		if err := b.GRPC.Serve(b.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("grpc serve: %w", err)
		}
	}()
	b.httpSrv = b.httpServer(limitBodies(b.Mux, b.Cfg.Limits.HTTPMaxBodies))
	go func() {
		var err error
		if b.tlsConfig != nil {
			// Same certificate and client CA as gRPC: with mTLS, a client
			// without a certificate fails the handshake on both ports.
			b.httpSrv.TLSConfig = b.tlsConfig.Clone()
			err = b.httpSrv.ServeTLS(b.httpLis, "", "")
		} else {
			err = b.httpSrv.Serve(b.httpLis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http serve: %w", err)
		}
	}()
	if b.plainLis != nil {
		b.plainSrv = b.httpServer(b.probes)
		go func() {
			if err := b.plainSrv.Serve(b.plainLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("plain http serve: %w", err)
			}
		}()
	}
	wctx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	var wg sync.WaitGroup
	for _, w := range b.workers {
		wg.Add(1)
		go func(w namedWorker) {
			defer wg.Done()
			if err := w.fn(wctx); err != nil && wctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", w.name, err)
			}
		}(w)
	}
	b.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	b.ready.Store(true)
	b.Log.Info("serving", "grpc_addr", b.GRPCAddr(), "http_addr", b.HTTPAddr(), "http_plain_addr", b.HTTPPlainAddr(), "tls", b.TLS())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		b.Log.Error("stopping after failure", "err", runErr)
	}

	grace := b.Cfg.ShutdownGrace
	b.ready.Store(false)
	b.Health.Shutdown()
	stopWorkers()
	if !waitTimeout(&wg, grace) {
		b.Log.Warn("workers did not stop within the grace period")
	}
	b.cancelStreams()
	stopped := make(chan struct{})
	go func() { b.GRPC.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		b.Log.Warn("forcing grpc stop")
		b.GRPC.Stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	_ = b.httpSrv.Shutdown(sctx)
	if b.plainSrv != nil {
		_ = b.plainSrv.Shutdown(sctx)
	}
	for i := len(b.closers) - 1; i >= 0; i-- {
		if err := b.closers[i](sctx); err != nil {
			b.Log.Warn("shutdown step failed", "err", err)
		}
	}
	if err := b.Tel.Shutdown(sctx); err != nil {
		b.Log.Warn("telemetry shutdown", "err", err)
	}
	b.Log.Info("stopped")
	return runErr
}

// httpServer bounds every phase of a request: the headers (and the TLS
// handshake, which net/http bounds by the shortest timeout), the whole
// request with its body (a slowloris body is cut off), the answer, and
// idle keep-alive connections.
func (b *Base) httpServer(h http.Handler) *http.Server {
	l := b.Cfg.Limits
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.HTTPReadHeaderTimeout,
		ReadTimeout:       l.HTTPReadTimeout,
		WriteTimeout:      l.HTTPWriteTimeout,
		IdleTimeout:       l.HTTPIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(b.Log.Handler(), slog.LevelWarn),
	}
}

// largeBody is the size from which a request body takes a slot of the
// concurrency cap (limitBodies); smaller ones (probes, one-record posts)
// pass freely.
const largeBody = 64 << 10

// limitBodies lets at most n requests with a large or unknown-length body
// run at once, so that many clients posting big bodies cannot hold the
// memory of n×CHURNWATCH_HTTP_MAX_BODY (or more) at once; the others are
// told to come back (503, Retry-After) after a short wait for a slot.
func limitBodies(next http.Handler, n int) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || (r.ContentLength >= 0 && r.ContentLength < largeBody) {
			next.ServeHTTP(w, r)
			return
		}
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		case <-t.C:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many large requests at once: retry", http.StatusServiceUnavailable)
		case <-r.Context().Done():
		}
	})
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
