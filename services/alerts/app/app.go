// Package app is the alert service: it turns risk signals into routed,
// deduplicated alerts with an acknowledge / resolve lifecycle and SLA
// escalation, keeps them in Redis, publishes every change on
// churnwatch.alerts.v1 and to the receivers, and streams them to managers,
// branch heads and ops. It only wires the domain packages:
//
//	alerting            the pure lifecycle engine and routing policy
//	internal/store      the Redis state (the only Redis client holder)
//	internal/lifecycle  signals, profiles and deadlines → committed changes
//	internal/stream     Subscribe: fan-out hub, cursors, replay, snapshot
//	internal/outbox     the outbox's readers: the Kafka publisher and the receivers
//	internal/receiver   the receivers file and its channels (webhook, email, chat)
//	internal/api        AlertService over gRPC
package app

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/api"
	"github.com/churnwatch/churnwatch/services/alerts/internal/lifecycle"
	"github.com/churnwatch/churnwatch/services/alerts/internal/outbox"
	"github.com/churnwatch/churnwatch/services/alerts/internal/receiver"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/alerts/internal/stream"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/platform/service"
	"github.com/churnwatch/churnwatch/services/platform/status"
)

// App is one alert service instance.
type App struct {
	cfg    Config
	base   *service.Base
	store  *store.Store
	life   *lifecycle.Service
	stream *stream.Service
	met    *metrics

	signals, customers *kafka.Reader
	pub                *outbox.Runner
	receivers          *outbox.Receivers // nil without receivers
	dlq                *kafka.Writer     // records the consumers cannot process
	sigBusy, custBusy  status.Busy
}

// New builds the service: listeners bound, Redis and Kafka clients made,
// the playbook and the receivers file loaded. It does not block.
func New(ctx context.Context, cfg Config, opts ...Option) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	o := options{clock: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	pb, err := alerting.LoadPlaybook(cfg.Playbook)
	if err != nil {
		return nil, err
	}
	rcvOpts := receiver.Options{ConsoleURL: cfg.ConsoleURL}
	var receivers *receiver.Set
	if cfg.Receivers != "" {
		if receivers, err = receiver.Load(cfg.Receivers, rcvOpts); err != nil {
			return nil, fmt.Errorf("CHURNWATCH_ALERTS_RECEIVERS: %w", err)
		}
	}
	base, err := service.New(ctx, cfg.Common, service.Options{LogOutput: o.logOutput, Policy: auth.Access})
	if err != nil {
		return nil, err
	}
	base.Log.Info("alerts settings", config.Attrs(cfg.fields())...)
	a := &App{cfg: cfg, base: base}
	if a.store, err = store.Open(base.Redis, cfg.Common, store.Options{Retention: cfg.StreamRetention, SignalMemory: cfg.SignalMemory}); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	base.Log.Info("alerts configured", "signals_group", cfg.SignalsGroup, "customers_group", cfg.CustomersGroup,
		"playbook", cfg.Playbook, "scan_interval", cfg.ScanInterval.String(), "stream_retention", cfg.StreamRetention,
		"subscriber_queue", cfg.SubscriberQueue)
	if a.met, err = newMetrics(a); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	engine := &alerting.Engine{Playbook: pb, SLA: cfg.SLA}
	if a.life, err = lifecycle.New(a.store, engine, o.clock, base.Log, base.Tel.Meter); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var srv *api.Server
	if a.stream, err = stream.New(a.store, stream.Config{
		Queue: cfg.SubscriberQueue, SendTimeout: cfg.StreamSendTimeout, MaxPerPrincipal: cfg.StreamMaxPerPrincipal,
		Shutdown: base.StreamsContext(), Log: base.Log, Tel: base.Tel,
		Denied: func(ctx context.Context, p auth.Principal, id string) { srv.Denied(ctx, p, id) },
	}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	srv = api.New(a.store, a.life, a.stream, base.Log)

	a.signals = kafka.NewReader(kafkax.ReaderConfig(base.Kafka, cfg.SignalsGroup, cfg.Common.Topics.Signals))
	a.customers = kafka.NewReader(kafkax.ReaderConfig(base.Kafka, cfg.CustomersGroup, cfg.Common.Topics.Customers))
	kafkaSink := outbox.NewKafka(base.Kafka, cfg.Common.Topics.Alerts, base.Log, cfg.Common.ShutdownGrace,
		func(ctx context.Context, n int) { a.met.reconciled.Add(ctx, int64(n)) })
	a.pub = &outbox.Runner{
		Name: "publisher", Store: a.store, Lease: a.store.PublisherLease(cfg.PublishLeaseTTL, cfg.PublishLeaseRenew),
		Sink: kafkaSink, Batch: cfg.PublishBatch, Log: base.Log,
		OnTakeover: func(ctx context.Context) { a.met.takeovers.Add(ctx, 1) },
	}
	if o.deliverHook != nil {
		a.pub.AfterDeliver = func() error { return o.deliverHook(a.pub.Name) }
	}
	a.dlq = kafkax.SmallWriter(base.Kafka, cfg.Common.Topics.DLQ)
	if a.receivers, err = outbox.NewReceivers(outbox.ReceiversConfig{
		Store: a.store, Log: base.Log, Meter: base.Tel.Meter, Path: cfg.Receivers, Set: receivers, Opts: rcvOpts,
		Reload: cfg.ReceiversReload, Lease: outbox.LeaseTimes{TTL: cfg.PublishLeaseTTL, Renew: cfg.PublishLeaseRenew},
		AfterDeliver: o.deliverHook,
	}); err != nil {
		return nil, err
	}
	if a.receivers != nil {
		base.Log.InfoContext(ctx, "alert receivers", "file", cfg.Receivers, "receivers", a.receivers.Names())
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := a.receivers.InitPositions(ictx); err != nil {
			base.Log.WarnContext(ctx, "receivers: could not place new receivers at the stream's end yet; their deliverers will", "err", err)
		}
		cancel()
	}

	cwv1.RegisterAlertServiceServer(base.GRPC, srv)
	cwv1.RegisterStatusServiceServer(base.GRPC, &status.Server{
		Service: "alerts", Kafka: base.Kafka, Ready: base.Ready,
		Consumers: []status.Consumer{
			{Group: cfg.SignalsGroup, Topic: cfg.Common.Topics.Signals, Idle: a.sigBusy.Idle},
			{Group: cfg.CustomersGroup, Topic: cfg.Common.Topics.Customers, Idle: a.custBusy.Idle},
		},
	})
	base.AddWorker("signals", a.consumeSignals)
	base.AddWorker("customers", a.consumeCustomers)
	base.AddWorker("escalations", func(ctx context.Context) error { return a.life.ScanLoop(ctx, cfg.ScanInterval) })
	base.AddWorker("publisher", func(ctx context.Context) error { a.pub.Run(ctx); return nil })
	base.AddWorker("fanout", a.stream.Run)
	if a.receivers != nil {
		base.AddWorker("receivers", a.receivers.Run)
	}
	// Closers run in reverse: readers first, then the publisher's
	// connections (its worker has finished its batch by then) and the DLQ
	// writer.
	base.AddCloser(func(context.Context) error { kafkaSink.Close(); return a.dlq.Close() })
	base.AddCloser(func(context.Context) error { a.store.Close(); return nil })
	base.AddCloser(func(context.Context) error { return a.customers.Close() })
	base.AddCloser(func(context.Context) error { return a.signals.Close() })
	return a, nil
}

// Run serves until ctx ends, then shuts down in order.
func (a *App) Run(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := redisx.WaitReady(wctx, a.base.Redis)
	cancel()
	if err != nil && ctx.Err() == nil {
		a.base.Log.Warn("redis not ready at start; workers retry", "err", err)
	}
	return a.base.Run(ctx)
}

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() string { return a.base.GRPCAddr() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.base.HTTPAddr() }

// RunEscalations escalates every open alert whose acknowledgement deadline
// has passed and ends every snooze whose time has come, as of the app's
// clock, and returns how many alerts changed. The worker calls it every
// CHURNWATCH_ESCALATION_INTERVAL; tests call it directly.
func (a *App) RunEscalations(ctx context.Context) (int, error) { return a.life.RunEscalations(ctx) }
