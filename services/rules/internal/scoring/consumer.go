package scoring

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/platform/status"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Reader is the part of a consumer-group *kafka.Reader the loop needs.
type Reader interface {
	kafkax.Fetcher
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Writer is the part of a *kafka.Writer the loop needs.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// StateStore is the part of the store the loop needs.
type StateStore interface {
	Loader
	Apply(ctx context.Context, w store.Write) error
}

// Metrics are the consumer's instruments.
type Metrics struct {
	events, signals, dlq metric.Int64Counter
	batch                metric.Float64Histogram
}

// NewMetrics creates the instruments on m.
func NewMetrics(m metric.Meter) (*Metrics, error) {
	var mt Metrics
	var err error
	if mt.events, err = m.Int64Counter("churnwatch.rules.events", metric.WithDescription("Events-topic records processed by result")); err != nil {
		return nil, err
	}
	if mt.signals, err = m.Int64Counter("churnwatch.rules.signals", metric.WithDescription("Risk signals produced by rule")); err != nil {
		return nil, err
	}
	if mt.dlq, err = m.Int64Counter("churnwatch.dlq.records", metric.WithDescription("Records sent to the DLQ by reason")); err != nil {
		return nil, err
	}
	if mt.batch, err = m.Float64Histogram("churnwatch.rules.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from fetch to commit of one events batch"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	return &mt, nil
}

// DLQ counts a DLQ record of class reason (too_late, decode, invalid).
func (m *Metrics) DLQ(ctx context.Context, reason string, n int) {
	m.dlq.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", reason)))
}

// Consumer is the events batch loop.
type Consumer struct {
	Reader     Reader
	Scorer     *Scorer
	Store      StateStore
	Signals    Writer
	DLQ        Writer
	Thresholds func() *engine.Thresholds
	Metrics    *Metrics
	Log        *slog.Logger
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	Busy       *status.Busy
	MaxBatch   int
	Linger     time.Duration
	// Grace bounds how long an in-flight batch may still take after ctx
	// ends (waiting out a Redis or broker outage).
	Grace time.Duration
	// AfterWrite runs between the state write and the commit (tests use it
	// to simulate a crash there).
	AfterWrite func() error
}

// maxLinks bounds the span links of a batch span.
const maxLinks = 64

// Run consumes until ctx ends, finishing and committing the batch in hand.
func (c *Consumer) Run(ctx context.Context) error {
	for {
		msgs, err := kafkax.FetchBatch(ctx, c.Reader, c.MaxBatch, c.Linger)
		if ctx.Err() != nil {
			return nil // unprocessed records are redelivered
		}
		if err != nil && len(msgs) == 0 {
			c.Log.Warn("fetch events", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if err := c.handle(ctx, msgs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// detach returns a context that survives ctx by at most grace, so an
// in-flight batch can finish during shutdown but an outage cannot hold
// shutdown forever.
func detach(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(dctx, func() { t.Stop() })
	})
	return dctx, func() { stop(); cancel() }
}

func (c *Consumer) handle(ctx context.Context, msgs []kafka.Message) error {
	c.Busy.Begin()
	defer c.Busy.End()
	start := time.Now()
	pctx, cancel := detach(ctx, c.Grace)
	defer cancel()

	var links []trace.Link
	for i := range msgs {
		if len(links) == maxLinks {
			break
		}
		if sc := trace.SpanContextFromContext(kafkax.Extract(context.Background(), c.Propagator, &msgs[i])); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	pctx, span := c.Tracer.Start(pctx, "rules.batch", trace.WithLinks(links...), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(msgs))))
	defer span.End()

	th := c.Thresholds()
	var out *Output
	retry := func(what string) func(error) {
		return func(err error) { c.Log.Warn("retrying", "step", what, "err", err) }
	}
	if err := redisx.Retry(pctx, retry("load state"), func(ctx context.Context) error {
		var err error
		out, err = c.Scorer.Score(ctx, c.Store, msgs, th)
		return err
	}); err != nil {
		return fmt.Errorf("score batch: %w", err)
	}
	if err := c.produce(pctx, out); err != nil {
		return err
	}
	if err := redisx.Retry(pctx, retry("write state"), func(ctx context.Context) error {
		return c.Store.Apply(ctx, out.Write)
	}); err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	if c.AfterWrite != nil {
		if err := c.AfterWrite(); err != nil {
			return err
		}
	}
	if err := c.Reader.CommitMessages(pctx, msgs...); err != nil {
		// A rebalance may have moved the partitions away; the new owner
		// re-reads from the last commit and the watermarks skip what this
		// batch already applied.
		c.Log.Warn("commit events offsets", "err", err)
	}
	for r, n := range out.Results {
		c.Metrics.events.Add(ctx, int64(n), metric.WithAttributes(attribute.String("result", r)))
	}
	for r, n := range out.Rules {
		c.Metrics.signals.Add(ctx, int64(n), metric.WithAttributes(attribute.String("rule", r)))
	}
	for r, n := range out.DLQBy {
		c.Metrics.DLQ(ctx, r, n)
	}
	span.SetAttributes(attribute.Int("churnwatch.signals", len(out.Signals)), attribute.Int("churnwatch.dlq", len(out.DLQ)))
	c.Metrics.batch.Record(ctx, time.Since(start).Seconds())
	return nil
}

// produce writes signals and DLQ records and waits for every ack,
// retrying until they are all acknowledged or the context ends. A retry may
// repeat signals; their ids are deterministic, so downstream recognises
// them.
func (c *Consumer) produce(ctx context.Context, out *Output) error {
	send := func(w Writer, msgs []kafka.Message, what string) error {
		if len(msgs) == 0 {
			return nil
		}
		return redisx.Retry(ctx, func(err error) { c.Log.Warn("retrying", "step", what, "err", err) }, func(ctx context.Context) error {
			return w.WriteMessages(ctx, msgs...)
		})
	}
	errc := make(chan error, 1)
	go func() { errc <- send(c.DLQ, out.DLQ, "produce dlq") }()
	err := send(c.Signals, out.Signals, "produce signals")
	if derr := <-errc; derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}
