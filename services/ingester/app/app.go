// Package app is the ingester service: IngestService over gRPC, POST
// /v1/events and /v1/customers over HTTP, both validating records and
// publishing them to Kafka exactly once (dedup by eventId in Redis). It is
// embeddable: New binds its listeners, Run serves until the context ends.
package app

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/internal/intake"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/service"
	"github.com/churnwatch/churnwatch/services/platform/status"
)

type options struct {
	logOutput io.Writer
}

// Option tunes New.
type Option func(*options)

// WithLogOutput sends the service's logs to w (stderr by default).
func WithLogOutput(w io.Writer) Option { return func(o *options) { o.logOutput = w } }

// App is one ingester instance.
type App struct {
	cfg       Config
	mappings  *mappings
	base      *service.Base
	intake    *intake.Intake
	limiter   *limiter
	transport *kafka.Transport
	events    *kafka.Writer
	customers *kafka.Writer
	dlq       *kafka.Writer
}

// New builds the ingester and binds its listeners; it does not block on
// Kafka or Redis (readiness reports them).
func New(ctx context.Context, cfg Config, opts ...Option) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	ms, err := loadMappings(cfg.MappingsDir, cfg.MappingData)
	if err != nil {
		return nil, err
	}
	base, err := service.New(ctx, cfg.Common, service.Options{LogOutput: o.logOutput, Policy: auth.Access})
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, base: base, limiter: newLimiter(cfg.RateLimit, cfg.RateBurst), mappings: ms}
	base.Log.Info("ingester configured", config.Attrs(cfg.specificFields())...)

	// One transport per instance (not kafka-go's global one), so that
	// several services in one process keep their connections apart and a
	// dead broker is noticed within the dial timeout.
	a.transport = base.Kafka.Secure(&kafka.Transport{DialTimeout: 2 * time.Second, IdleTimeout: 30 * time.Second,
		MetadataTTL: 2 * time.Second, ClientID: "churnwatch-ingester"})
	a.events = a.writer(cfg.Common.Topics.Events, &intake.Balancer{})
	a.customers = a.writer(cfg.Common.Topics.Customers, &kafka.Murmur2Balancer{})
	a.dlq = a.writer(cfg.Common.Topics.DLQ, &kafka.Murmur2Balancer{})
	a.dlq.BatchSize = 500

	a.intake, err = intake.New(intake.Config{
		EventsTopic:    cfg.Common.Topics.Events,
		CustomersTopic: cfg.Common.Topics.Customers,
		Retention:      cfg.DedupRetention,
		PendingTTL:     cfg.DedupPendingTTL,
		InFlightWait:   cfg.InFlightWait,
		DLQTopic:       cfg.Common.Topics.DLQ,
		Lateness:       cfg.AllowedLateness,
		WriteAttempts:  cfg.KafkaWriteAttempts,
		LeaseTTL:       cfg.RequestLeaseTTL,
		Earliest:       cfg.EarliestEvent,
	}, intake.Deps{
		Events: a.events, Customers: a.customers, DLQ: a.dlq, Partitions: a.partitions,
		Redis: base.Redis, Meter: base.Tel.Meter, Tracer: base.Tel.Tracer, Propagator: base.Tel.Propagator,
		Log: base.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("intake: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := a.intake.LoadScripts(sctx); err != nil {
		base.Log.Warn("redis scripts not loaded yet; will load on first use", "err", err)
	}
	cancel()

	cwv1.RegisterIngestServiceServer(base.GRPC, &ingestServer{app: a})
	cwv1.RegisterStatusServiceServer(base.GRPC, &status.Server{Service: "ingester", Kafka: base.Kafka, Ready: base.Ready})
	a.routes()
	base.AddReadyCheck(func(ctx context.Context) error {
		_, err := a.partitions(ctx, cfg.Common.Topics.Events)
		return err
	})
	// Closers run in reverse: the writers flush first, then the transport
	// drops its connections.
	base.AddCloser(func(context.Context) error { a.transport.CloseIdleConnections(); return nil })
	base.AddCloser(func(context.Context) error { return a.customers.Close() })
	base.AddCloser(func(context.Context) error { return a.dlq.Close() })
	base.AddCloser(func(context.Context) error { return a.events.Close() })
	return a, nil
}

func (a *App) writer(topic string, b kafka.Balancer) *kafka.Writer {
	w := kafkax.NewWriter(a.base.Kafka, topic)
	w.Balancer = b
	w.Transport = a.transport
	w.WriteTimeout = a.cfg.KafkaWriteTimeout
	w.ReadTimeout = a.cfg.KafkaWriteTimeout
	// One attempt per call: intake makes the attempts itself, so that it
	// knows whether any attempt may have written a record (kafka-go's own
	// retries would hide a timed-out attempt behind a later refusal).
	w.MaxAttempts = 1
	w.WriteBackoffMax = writeBackoffMax
	return w
}

// partitions lists a topic's partition ids from broker metadata.
func (a *App) partitions(ctx context.Context, topic string) ([]int, error) {
	cl := &kafka.Client{Addr: kafka.TCP(a.cfg.Common.KafkaBrokers...), Transport: a.transport, Timeout: a.cfg.KafkaWriteTimeout}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata %s: %w", topic, t.Error)
		}
		ids := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
		}
		slices.Sort(ids)
		if len(ids) == 0 {
			return nil, fmt.Errorf("metadata %s: no partitions", topic)
		}
		return ids, nil
	}
	return nil, fmt.Errorf("metadata %s: topic not found", topic)
}

// Run serves until ctx ends, then shuts down in order (intake stops, the
// writers flush, connections close); nil on a clean stop.
func (a *App) Run(ctx context.Context) error { return a.base.Run(ctx) }

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() string { return a.base.GRPCAddr() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.base.HTTPAddr() }
