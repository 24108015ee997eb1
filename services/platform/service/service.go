// Package service is the runtime every churnwatch service shares: logger,
// telemetry, token verification, Redis, the gRPC server (auth, health,
// reflection, keepalive, tracing) and the HTTP server (/healthz, /readyz,
// /metrics), with an ordered, bounded shutdown.
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
	GRPC     *grpc.Server
	Mux      *http.ServeMux
	Health   *health.Server

	grpcLis, httpLis net.Listener
	httpSrv          *http.Server
	ready            atomic.Bool
	readyChecks      []func(context.Context) error
	workers          []namedWorker
	closers          []func(context.Context) error
	streamsCtx       context.Context
	cancelStreams    context.CancelFunc
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
	if b.Verifier, err = auth.LoadVerifier(cfg.AuthPublicKeys); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if !opts.NoRedis {
		if b.Redis, err = redisx.New(cfg); err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		b.readyChecks = append(b.readyChecks, func(ctx context.Context) error { return b.Redis.Ping(ctx).Err() })
		b.closers = append(b.closers, func(context.Context) error { return b.Redis.Close() })
	}
	sopts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(b.Tel.TracerProvider), otelgrpc.WithMeterProvider(b.Tel.MeterProvider))),
		grpc.ChainUnaryInterceptor(auth.UnaryInterceptor(b.Verifier, opts.Policy, b.Log)),
		grpc.ChainStreamInterceptor(auth.StreamInterceptor(b.Verifier, opts.Policy, b.Log)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(64 << 20),
	}
	if cfg.TLSCert != "" {
		tc, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(tc)))
	}
	b.GRPC = grpc.NewServer(sopts...)
	b.Health = health.NewServer()
	healthpb.RegisterHealthServer(b.GRPC, b.Health)
	registerReflection(b.GRPC)
	b.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	b.Mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	b.Mux.HandleFunc("GET /readyz", b.serveReady)
	b.Mux.Handle("GET /metrics", b.Tel.MetricsHandler())

	if b.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	if b.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		b.grpcLis.Close()
		return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
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

// HTTPAddr is the bound HTTP address.
func (b *Base) HTTPAddr() string { return b.httpLis.Addr().String() }

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
	errc := make(chan error, len(b.workers)+2)
	go func() {
		if err := b.GRPC.Serve(b.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("grpc serve: %w", err)
		}
	}()
	b.httpSrv = &http.Server{Handler: b.Mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := b.httpSrv.Serve(b.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http serve: %w", err)
		}
	}()
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
	b.Log.Info("serving", "grpc_addr", b.GRPCAddr(), "http_addr", b.HTTPAddr())

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
