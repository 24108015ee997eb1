// Package app is the alert service: it turns risk signals into routed,
// deduplicated alerts with an acknowledge / resolve lifecycle and SLA
// escalation, keeps them in Redis, publishes every change on
// churnwatch.alerts.v1 and streams them to managers, branch heads and ops.
package app

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/receiver"
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
	now    func() time.Time
	engine *alerting.Engine
	store  *store
	hub    *hub
	met    *metrics
	// streams counts open Subscribe streams per principal (the cap);
	// openStreams those whose sender goroutine still runs (tests).
	streams     streamCount
	openStreams atomic.Int64

	signals, customers *kafka.Reader
	pub                *publisher
	delivery           *deliveries // nil without receivers
	rcvMet             *receiverMetrics
	dlq                *kafka.Writer // records the consumers cannot process
	sigBusy, custBusy  status.Busy
}

// New builds the service: listeners bound, Redis and Kafka clients made,
// the playbook loaded. It does not block.
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
	a := &App{
		cfg:    cfg,
		base:   base,
		now:    o.clock,
		engine: &alerting.Engine{Playbook: pb, SLA: cfg.SLA},
		store:  &store{rdb: base.Redis, retention: cfg.StreamRetention, signalMemory: cfg.SignalMemory},
	}
	base.Log.Info("alerts configured", "signals_group", cfg.SignalsGroup, "customers_group", cfg.CustomersGroup,
		"playbook", cfg.Playbook, "scan_interval", cfg.ScanInterval.String(), "stream_retention", cfg.StreamRetention,
		"subscriber_queue", cfg.SubscriberQueue)
	if a.met, err = newMetrics(a); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if a.hub, err = newHub(base.Log, cfg.Common); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	a.hub.onCut = func() { a.met.cutoffs.Add(context.Background(), 1) }
	a.signals = kafka.NewReader(kafkax.ReaderConfig(base.Kafka, cfg.SignalsGroup, cfg.Common.Topics.Signals))
	a.customers = kafka.NewReader(kafkax.ReaderConfig(base.Kafka, cfg.CustomersGroup, cfg.Common.Topics.Customers))
	topic := newTopicLog(base.Kafka, cfg.Common.Topics.Alerts)
	a.pub = &publisher{
		rdb: a.hub.rdb, lease: newLease(base.Redis, kPubLease, cfg.PublishLeaseTTL, cfg.PublishLeaseRenew),
		topic: topic, log: base.Log, batch: cfg.PublishBatch, grace: cfg.Common.ShutdownGrace,
		posKey: kPubLast, streamKey: kStream(audAll), hook: o.publishHook,
		onTakeover:  func(ctx context.Context) { a.met.takeovers.Add(ctx, 1) },
		onReconcile: func(ctx context.Context, n int) { a.met.reconciled.Add(ctx, int64(n)) },
	}
	a.dlq = kafkax.SmallWriter(base.Kafka, cfg.Common.Topics.DLQ)
	if err := a.startReceivers(ctx, receivers, rcvOpts); err != nil {
		return nil, err
	}

	cwv1.RegisterAlertServiceServer(base.GRPC, &server{app: a})
	cwv1.RegisterStatusServiceServer(base.GRPC, &status.Server{
		Service: "alerts", Kafka: base.Kafka, Ready: base.Ready,
		Consumers: []status.Consumer{
			{Group: cfg.SignalsGroup, Topic: cfg.Common.Topics.Signals, Idle: a.sigBusy.Idle},
			{Group: cfg.CustomersGroup, Topic: cfg.Common.Topics.Customers, Idle: a.custBusy.Idle},
		},
	})
	base.AddWorker("signals", a.consumeSignals)
	base.AddWorker("customers", a.consumeCustomers)
	base.AddWorker("escalations", a.scanLoop)
	base.AddWorker("publisher", a.publishLoop)
	base.AddWorker("fanout", a.hub.run)
	if a.delivery != nil {
		base.AddWorker("receivers", a.delivery.run)
	}
	// Closers run in reverse: readers first, then the publisher's
	// connections (its worker has finished its batch by then) and the DLQ
	// writer.
	base.AddCloser(func(context.Context) error { topic.close(); return a.dlq.Close() })
	base.AddCloser(func(context.Context) error { a.hub.close(); return nil })
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
