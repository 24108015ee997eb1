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
	events, signals metric.Int64Counter
	batch           metric.Float64Histogram
	// Consumer counts batches, retries, panics and DLQ records.
	Consumer *kafkax.ConsumerMetrics
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
	if mt.Consumer, err = kafkax.NewConsumerMetrics(m); err != nil {
		return nil, err
	}
	if mt.batch, err = m.Float64Histogram("churnwatch.rules.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from decode to commit of one events batch"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	return &mt, nil
}

// ObserveCache reports the state cache's size and lookups on m.
func (m *Metrics) ObserveCache(mt metric.Meter, c *StateCache) error {
	if c == nil {
		return nil
	}
	if _, err := mt.Int64ObservableGauge("churnwatch.rules.state_cache.customers",
		metric.WithDescription("Customers whose decoded state the events consumer keeps between batches"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(c.Len()))
			return nil
		})); err != nil {
		return err
	}
	_, err := mt.Int64ObservableCounter("churnwatch.rules.state_cache.lookups",
		metric.WithDescription("Batch customers by where their state came from: hit (cache), stale (cached but changed in Redis), miss"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			hits, stale, misses := c.Stats()
			o.Observe(hits, metric.WithAttributes(attribute.String("result", "hit")))
			o.Observe(stale, metric.WithAttributes(attribute.String("result", "stale")))
			o.Observe(misses, metric.WithAttributes(attribute.String("result", "miss")))
			return nil
		}))
	return err
}

// Consumer is the events consumer: a kafkax.BatchConsumer whose batches
// are decoded as they are fetched, scored, and landed.
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

	// pending is the write of the batch scored last, until it has landed:
	// the next batch is scored as if it were in (pendingLoader). Only the
	// runner's goroutine touches it.
	// Shadows, if not nil, lists the running shadow threshold sets; each is
	// scored over its own state from ShadowStore, written with the batch,
	// and never produced (shadow.go).
	Shadows     func() []Shadow
	ShadowStore ShadowStore

	pending *store.Write
}

// maxLinks bounds the span links of a batch span.
const maxLinks = 64

// Run consumes until ctx ends, finishing and committing the batch in hand.
//
// Batches go through three stages, each on its own goroutine: fetch and
// decode (prefetch), score, land (produce the DLQ records and signals and
// wait for the acknowledgements, write the state, commit the offsets).
// While a batch lands, the next is scored, reading Redis as it will be once
// the landing write is in (pendingLoader), so the result is the same as one
// batch after the other. kafkax.BatchConsumer runs the stages: it retries
// scoring and landing while Redis or the brokers are away, and isolates an
// event the engine panics on and parks it on the DLQ (cw-reason-class
// panic). If a landing is given up, the batch scored on top of it is given
// up too (neither committed).
func (c *Consumer) Run(ctx context.Context) error {
	bc := &kafkax.BatchConsumer[*Batch]{
		Name: "events", Reader: c.Reader, Topic: c.Scorer.Topic, DLQ: c.DLQ,
		Prepare:  func(msgs []kafka.Message, spare *Batch) *Batch { return c.Scorer.decodeInto(spare, msgs) },
		Handle:   c.handle,
		MaxBatch: c.MaxBatch, Linger: c.Linger, Grace: c.Grace,
		Log: c.Log, Metrics: c.Metrics.Consumer,
	}
	if c.Busy != nil {
		bc.Busy = c.Busy
	}
	return bc.Run(ctx)
}

// handle scores batch and returns its landing: produce, write, and after
// the commit count what it did.
func (c *Consumer) handle(ctx context.Context, msgs []kafka.Message, batch *Batch) (_ kafkax.Landing, err error) {
	var links []trace.Link
	for i := range msgs {
		if len(links) == maxLinks {
			break
		}
		if sc := trace.SpanContextFromContext(kafkax.Extract(context.Background(), c.Propagator, &msgs[i])); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	ctx, span := c.Tracer.Start(ctx, "rules.batch", trace.WithLinks(links...), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(msgs))))
	scored := false
	defer func() {
		if !scored {
			span.End() // an error or a panic: the runner tries again
		}
	}()

	var l Loader = c.Store
	if c.pending != nil {
		l = pendingLoader{l: c.Store, w: c.pending}
	}
	out, err := c.Scorer.ScoreBatch(ctx, l, batch, c.Thresholds())
	if err != nil {
		return kafkax.Landing{}, fmt.Errorf("score batch: %w", err)
	}
	// The cache now holds the batch's states as they will be stored; if the
	// batch does not land, Settled resets it.
	shadows, err := c.scoreShadows(ctx, batch)
	if err != nil {
		c.Scorer.Cache.Reset()
		return kafkax.Landing{}, fmt.Errorf("score batch: %w", err)
	}
	out.Write.Shadow = shadows
	c.Scorer.Keep(out)
	c.pending = &out.Write
	scored = true

	var produced, written bool
	return kafkax.Landing{
		DeadLetters: out.DLQ,
		Land: func(lctx context.Context) error {
			lctx = trace.ContextWithSpan(lctx, span)
			// Each step once: a retry after a failed write does not produce
			// the signals again.
			if !produced {
				if len(out.Signals) > 0 {
					if err := c.Signals.WriteMessages(lctx, out.Signals...); err != nil {
						return fmt.Errorf("produce signals: %w", err)
					}
				}
				produced = true
			}
			if !written {
				if err := c.Store.Apply(lctx, out.Write); err != nil {
					return fmt.Errorf("write batch: %w", err)
				}
				written = true
			}
			if c.AfterWrite != nil {
				if err := c.AfterWrite(); err != nil {
					return kafkax.Fatal(err)
				}
			}
			return nil
		},
		Settled: func(err error) {
			defer span.End()
			if c.pending == &out.Write {
				c.pending = nil
			}
			if err != nil {
				// The states the cache holds were ahead of a write that
				// did not land.
				c.Scorer.Cache.Reset()
				c.pending = nil
				return
			}
			mctx := context.WithoutCancel(ctx)
			for r, n := range out.Results {
				c.Metrics.events.Add(mctx, int64(n), metric.WithAttributes(attribute.String("result", r)))
			}
			for r, n := range out.Rules {
				c.Metrics.signals.Add(mctx, int64(n), metric.WithAttributes(attribute.String("rule", r)))
			}
			span.SetAttributes(attribute.Int("churnwatch.signals", len(out.Signals)), attribute.Int("churnwatch.dlq", len(out.DLQ)))
			c.Metrics.batch.Record(mctx, time.Since(batch.Decoded).Seconds())
			batch.recycle()
		},
	}, nil
}
