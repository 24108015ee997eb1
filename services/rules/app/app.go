// Package app is the rules service, embeddable in-process: it consumes
// the events topic — account events, clock markers and customer profiles in
// event order — scores every customer with the engine on event time,
// publishes risk signals, and serves RulesAdminService and StatusService.
//
// It does not read the customers topic: a profile comes with the
// customer's events (the ingester writes each accepted profile to the
// customer's events partition too), so an event is scored with the profile
// accepted before it, however far any consumer lags.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/platform/service"
	"github.com/churnwatch/churnwatch/services/platform/status"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/admin"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpiservice"
	"github.com/churnwatch/churnwatch/services/rules/internal/replay"
	"github.com/churnwatch/churnwatch/services/rules/internal/scoring"
	"github.com/churnwatch/churnwatch/services/rules/internal/shadowservice"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Version is reported by StatusService.
var Version = "dev"

// Config is the rules service configuration.
type Config struct {
	Common config.Common
	// Group is the events consumer group (CHURNWATCH_RULES_GROUP).
	Group string
	// AllowedLateness: events older than their partition clock minus this
	// go to the DLQ (CHURNWATCH_ALLOWED_LATENESS, SPEC §3: 7 days).
	AllowedLateness time.Duration
	// BatchSize and BatchLinger shape the events batches
	// (CHURNWATCH_RULES_BATCH_SIZE, CHURNWATCH_RULES_BATCH_LINGER).
	BatchSize   int
	BatchLinger time.Duration
	// StateCache is how many customers' decoded states an instance keeps
	// between batches (CHURNWATCH_RULES_STATE_CACHE; 0 turns it off).
	StateCache int
	// ThresholdsPoll is how often each instance checks for a new threshold
	// version (CHURNWATCH_THRESHOLDS_POLL); SPEC: applied within 5 s.
	ThresholdsPoll time.Duration
	// LagInterval is how often the consumer lag gauge is refreshed
	// (CHURNWATCH_LAG_INTERVAL).
	LagInterval time.Duration
	// ThresholdsFourEyes refuses direct threshold changes: every change is
	// proposed and approved by a second principal
	// (CHURNWATCH_THRESHOLDS_FOUR_EYES).
	ThresholdsFourEyes bool
	// ProposalTTL is how long a threshold proposal waits for approval
	// (CHURNWATCH_THRESHOLDS_PROPOSAL_TTL).
	ProposalTTL time.Duration
	// BacktestDays, BacktestMaxEvents and BacktestTimeout bound the server's
	// back-test of a threshold proposal: days of event time before the
	// newest event, events held, and time taken
	// (CHURNWATCH_THRESHOLDS_BACKTEST_DAYS, _MAX_EVENTS, _TIMEOUT).
	BacktestDays      int
	BacktestMaxEvents int
	BacktestTimeout   time.Duration
	// KPIGroup is the consumer group that keeps the alert facts of the
	// KPIs from the alerts topic (CHURNWATCH_RULES_KPI_GROUP).
	KPIGroup string
}

// Env documents every service-specific variable with its default, for --help.
var Env = [][2]string{
	{"CHURNWATCH_RULES_GROUP", "churnwatch-rules"},
	{"CHURNWATCH_ALLOWED_LATENESS", "168h"},
	{"CHURNWATCH_RULES_BATCH_SIZE", "50000"},
	{"CHURNWATCH_RULES_BATCH_LINGER", "5ms"},
	{"CHURNWATCH_RULES_STATE_CACHE", "50000"},
	{"CHURNWATCH_THRESHOLDS_POLL", "1s"},
	{"CHURNWATCH_LAG_INTERVAL", "5s"},
	{"CHURNWATCH_THRESHOLDS_FOUR_EYES", "false"},
	{"CHURNWATCH_THRESHOLDS_PROPOSAL_TTL", "168h"},
	{"CHURNWATCH_THRESHOLDS_BACKTEST_DAYS", "90"},
	{"CHURNWATCH_THRESHOLDS_BACKTEST_MAX_EVENTS", "2000000"},
	{"CHURNWATCH_THRESHOLDS_BACKTEST_TIMEOUT", "2m"},
	{"CHURNWATCH_RULES_KPI_GROUP", "churnwatch-rules-kpi"},
}

// LoadConfig reads the configuration from e.
func LoadConfig(e *config.Env) (Config, error) {
	c := Config{
		Common:          config.LoadCommon(e, "rules", "127.0.0.1:7002", ":8002"),
		Group:           e.String("CHURNWATCH_RULES_GROUP", "churnwatch-rules"),
		AllowedLateness: e.Duration("CHURNWATCH_ALLOWED_LATENESS", 7*24*time.Hour),
		BatchSize:       e.Int("CHURNWATCH_RULES_BATCH_SIZE", 50000),
		BatchLinger:     e.Duration("CHURNWATCH_RULES_BATCH_LINGER", 5*time.Millisecond),
		StateCache:      e.Int("CHURNWATCH_RULES_STATE_CACHE", 50000),
		ThresholdsPoll:  e.Duration("CHURNWATCH_THRESHOLDS_POLL", time.Second),
		LagInterval:     e.Duration("CHURNWATCH_LAG_INTERVAL", 5*time.Second),

		ThresholdsFourEyes: e.Bool("CHURNWATCH_THRESHOLDS_FOUR_EYES", false),
		ProposalTTL:        e.Duration("CHURNWATCH_THRESHOLDS_PROPOSAL_TTL", admin.DefaultProposalTTL),
		BacktestDays:       e.Int("CHURNWATCH_THRESHOLDS_BACKTEST_DAYS", 90),
		BacktestMaxEvents:  e.Int("CHURNWATCH_THRESHOLDS_BACKTEST_MAX_EVENTS", 2000000),
		BacktestTimeout:    e.Duration("CHURNWATCH_THRESHOLDS_BACKTEST_TIMEOUT", 2*time.Minute),
		KPIGroup:           e.String("CHURNWATCH_RULES_KPI_GROUP", "churnwatch-rules-kpi"),
	}
	return c, errors.Join(e.Err(), c.Validate())
}

// Defaults returns the configuration with every default, for embedding.
func Defaults() Config {
	c, _ := LoadConfig(config.FromMap(nil))
	return c
}

// Validate reports every problem.
func (c Config) Validate() error {
	errs := []error{c.Common.Validate()}
	if c.Group == "" {
		errs = append(errs, errors.New("CHURNWATCH_RULES_GROUP must be set"))
	}
	if c.AllowedLateness <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_ALLOWED_LATENESS must be positive"))
	}
	if c.BatchSize < 1 || c.BatchSize > 200000 {
		errs = append(errs, fmt.Errorf("CHURNWATCH_RULES_BATCH_SIZE %d: want 1 … 200000", c.BatchSize))
	}
	if c.BatchLinger < 0 || c.BatchLinger > time.Second {
		errs = append(errs, errors.New("CHURNWATCH_RULES_BATCH_LINGER: want 0 … 1s"))
	}
	if c.StateCache < 0 {
		errs = append(errs, errors.New("CHURNWATCH_RULES_STATE_CACHE: want ≥ 0 customers (0 = off)"))
	}
	if c.ThresholdsPoll <= 0 || c.ThresholdsPoll > 5*time.Second {
		errs = append(errs, errors.New("CHURNWATCH_THRESHOLDS_POLL: want > 0 and ≤ 5s (SPEC: a change applies within 5 s)"))
	}
	if c.KPIGroup == "" || c.KPIGroup == c.Group {
		errs = append(errs, errors.New("CHURNWATCH_RULES_KPI_GROUP must be set and differ from CHURNWATCH_RULES_GROUP"))
	}
	if c.LagInterval <= 0 {
		errs = append(errs, errors.New("CHURNWATCH_LAG_INTERVAL must be positive"))
	}
	if c.ProposalTTL < time.Minute || c.ProposalTTL > 90*24*time.Hour {
		errs = append(errs, errors.New("CHURNWATCH_THRESHOLDS_PROPOSAL_TTL: want 1m … 2160h (90 days)"))
	}
	if c.BacktestDays < 1 || c.BacktestDays > 3660 {
		errs = append(errs, fmt.Errorf("CHURNWATCH_THRESHOLDS_BACKTEST_DAYS %d: want 1 … 3660 days", c.BacktestDays))
	}
	if c.BacktestMaxEvents < 1 {
		errs = append(errs, errors.New("CHURNWATCH_THRESHOLDS_BACKTEST_MAX_EVENTS: want ≥ 1 (about 200 bytes of memory per event)"))
	}
	if c.BacktestTimeout < time.Second || c.BacktestTimeout > time.Hour {
		errs = append(errs, errors.New("CHURNWATCH_THRESHOLDS_BACKTEST_TIMEOUT: want 1s … 1h"))
	}
	return errors.Join(errs...)
}

type options struct {
	logOutput  io.Writer
	afterWrite func() error
	now        func() time.Time
}

// Option tunes New.
type Option func(*options)

// WithLogOutput sends logs to w.
func WithLogOutput(w io.Writer) Option { return func(o *options) { o.logOutput = w } }

// WithClock makes the admin RPCs read the time from now (proposal
// creation, expiry and decisions; tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// withAfterWrite runs f between the state write and the offset commit of
// every events batch (tests simulate a crash there).
func withAfterWrite(f func() error) Option { return func(o *options) { o.afterWrite = f } }

// App is one rules service instance.
type App struct {
	base    *service.Base
	cfg     Config
	store   *store.Store
	watcher *admin.Watcher

	lagMu sync.Mutex
	lag   map[lagKey]int64
}

type lagKey struct {
	group, topic string
	partition    int
}

// New builds the service: binds listeners and prepares consumers and
// producers. It does not block on Kafka or Redis.
func New(ctx context.Context, cfg Config, opts ...Option) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rules config: %w", err)
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	base, err := service.New(ctx, cfg.Common, service.Options{LogOutput: o.logOutput, Policy: auth.Access})
	if err != nil {
		return nil, err
	}
	a := &App{base: base, cfg: cfg, store: store.New(base.Redis), lag: map[lagKey]int64{}}
	log := base.Log
	base.Log.Info("rules configured", "group", cfg.Group,
		"allowed_lateness", cfg.AllowedLateness.String(), "batch_size", cfg.BatchSize, "batch_linger", cfg.BatchLinger.String(),
		"thresholds_poll", cfg.ThresholdsPoll.String(), "thresholds_four_eyes", cfg.ThresholdsFourEyes,
		"threshold_proposal_ttl", cfg.ProposalTTL.String(),
		"backtest_days", cfg.BacktestDays, "backtest_max_events", cfg.BacktestMaxEvents, "backtest_timeout", cfg.BacktestTimeout.String())

	metrics, err := scoring.NewMetrics(base.Tel.Meter)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var thVersion int64
	var thMu sync.Mutex
	a.watcher = &admin.Watcher{Store: a.store, Interval: cfg.ThresholdsPoll, Log: log,
		OnChange: func(v int64) { thMu.Lock(); thVersion = v; thMu.Unlock() }}
	if _, err := base.Tel.Meter.Int64ObservableGauge("churnwatch.rules.thresholds.version",
		metric.WithDescription("Threshold-set version in force on this instance"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			thMu.Lock()
			defer thMu.Unlock()
			o.Observe(thVersion)
			return nil
		})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if _, err := base.Tel.Meter.Int64ObservableGauge("churnwatch.consumer.lag",
		metric.WithDescription("Records behind the partition's end, per consumer group"),
		metric.WithInt64Callback(a.observeLag)); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	brokers, topics := base.Kafka, cfg.Common.Topics
	events := kafka.NewReader(kafkax.ReaderConfig(brokers, cfg.Group, topics.Events))
	signals := kafkax.SmallWriter(brokers, topics.Signals)
	dlq := kafkax.SmallWriter(brokers, topics.DLQ)
	base.AddCloser(func(context.Context) error { return errors.Join(signals.Close(), dlq.Close()) })
	base.AddCloser(func(context.Context) error { return events.Close() })

	cache := scoring.NewStateCache(cfg.StateCache)
	if err := metrics.ObserveCache(base.Tel.Meter, cache); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var eventsBusy status.Busy
	// Shadow threshold sets (docs/rules.md "Shadow thresholds").
	shadows := &shadowservice.Registry{Store: a.store, Interval: cfg.ThresholdsPoll, Log: log}
	consumer := &scoring.Consumer{
		Shadows: shadows.Running, ShadowStore: a.store,
		Reader: events,
		Scorer: &scoring.Scorer{
			Engine:   engine.New(engine.Config{HomeBank: cfg.Common.HomeBank, Lateness: cfg.AllowedLateness}),
			Lateness: cfg.AllowedLateness,
			Topic:    topics.Events,
			OnCorrupt: func(_ string, err error) {
				log.Error("customer state unreadable; scoring the customer afresh", "err", err)
			},
			Cache: cache,
		},
		Store: a.store, Signals: signals, DLQ: dlq,
		Thresholds: a.watcher.Current, Metrics: metrics, Log: log,
		Tracer: base.Tel.Tracer, Propagator: base.Tel.Propagator, Busy: &eventsBusy,
		MaxBatch: cfg.BatchSize, Linger: cfg.BatchLinger, Grace: cfg.Common.ShutdownGrace / 2,
		AfterWrite: o.afterWrite,
	}
	base.AddWorker("events consumer", func(ctx context.Context) error {
		// Never score with a threshold set older than the stored one.
		eventsBusy.Begin()
		err := redisx.Retry(ctx, func(err error) { log.Warn("waiting for redis", "err", err) }, a.watcher.Refresh)
		eventsBusy.End()
		if err != nil {
			return nil // ctx ended
		}
		return consumer.Run(ctx)
	})
	// The alert facts of the KPIs, from the alerts topic (docs/kpis.md).
	alertFacts := kafka.NewReader(kafkax.ReaderConfig(brokers, cfg.KPIGroup, topics.Alerts))
	base.AddCloser(func(context.Context) error { return alertFacts.Close() })
	var factsBusy status.Busy
	facts := &kafkax.BatchConsumer[struct{}]{
		Name: "alert facts", Reader: alertFacts, Topic: topics.Alerts, DLQ: dlq, MaxBatch: 5000, Linger: cfg.BatchLinger,
		Grace: cfg.Common.ShutdownGrace / 2, Busy: &factsBusy, Log: log, Metrics: metrics.Consumer,
		Handle: (&kpiservice.AlertFacts{Store: a.store, Topic: topics.Alerts}).Handle,
	}
	base.AddWorker("alert facts consumer", facts.Run)
	cwv1.RegisterKpiServiceServer(base.GRPC, &kpiservice.Server{Store: a.store, Log: log})

	base.AddWorker("thresholds watcher", a.watcher.Run)
	base.AddWorker("lag gauge", a.refreshLag)

	cwv1.RegisterShadowServiceServer(base.GRPC, &shadowservice.Server{Store: a.store, Registry: shadows, Log: log})
	bt := &replay.Backtester{Cluster: brokers, Topic: topics.Events, Store: a.store,
		Window: time.Duration(cfg.BacktestDays) * 24 * time.Hour, MaxEvents: cfg.BacktestMaxEvents,
		HomeBank: cfg.Common.HomeBank, Lateness: cfg.AllowedLateness}
	cwv1.RegisterRulesAdminServiceServer(base.GRPC, &admin.Server{Store: a.store, Watcher: a.watcher, Log: log, Now: o.now,
		FourEyes: cfg.ThresholdsFourEyes, ProposalTTL: cfg.ProposalTTL, Backtest: bt.Run, BacktestTimeout: cfg.BacktestTimeout})
	clocks := func(ctx context.Context) (map[int]int64, error) {
		cl, err := a.store.Clocks(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[int]int64, len(cl))
		for p, ms := range cl {
			out[int(p)] = ms
		}
		return out, nil
	}
	cwv1.RegisterStatusServiceServer(base.GRPC, &status.Server{
		Service: "rules", Kafka: brokers, Ready: base.Ready, Version: Version,
		Consumers: []status.Consumer{
			{Group: cfg.Group, Topic: topics.Events, Clocks: clocks, Idle: eventsBusy.Idle},
			{Group: cfg.KPIGroup, Topic: topics.Alerts, Idle: factsBusy.Idle},
		},
	})
	return a, nil
}

// Run serves until ctx ends, then shuts down in order.
func (a *App) Run(ctx context.Context) error { return a.base.Run(ctx) }

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() string { return a.base.GRPCAddr() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.base.HTTPAddr() }

func (a *App) refreshLag(ctx context.Context) error {
	t := time.NewTicker(a.cfg.LagInterval)
	defer t.Stop()
	for {
		next := map[lagKey]int64{}
		for _, g := range [][2]string{{a.cfg.Group, a.cfg.Common.Topics.Events}, {a.cfg.KPIGroup, a.cfg.Common.Topics.Alerts}} {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			lag, err := kafkax.GroupLag(lctx, a.base.Kafka, g[0], g[1])
			cancel()
			if err != nil {
				continue // keep the last known values of this group
			}
			for _, p := range lag {
				next[lagKey{g[0], g[1], p.Partition}] = p.Lag
			}
		}
		a.lagMu.Lock()
		maps.Copy(a.lag, next)
		a.lagMu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *App) observeLag(_ context.Context, o metric.Int64Observer) error {
	a.lagMu.Lock()
	defer a.lagMu.Unlock()
	for k, v := range a.lag {
		o.Observe(v, metric.WithAttributes(attribute.String("group", k.group), attribute.String("topic", k.topic),
			attribute.String("partition", strconv.Itoa(k.partition))))
	}
	return nil
}
