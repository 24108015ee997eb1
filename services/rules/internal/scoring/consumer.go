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
//
// Batches go through three stages, each on its own goroutine: fetch and
// decode (prefetch), score, land (produce the signals and wait for the
// acknowledgements, write the state, commit the offsets). While a batch
// lands, the next is scored, reading Redis as it will be once the landing
// write is in (pendingLoader), so the result is the same as one batch after
// the other. A scored batch is handed over only after the previous one has
// landed; if a landing fails, the batch scored on top of it is dropped too
// (neither committed) and Run returns the error.
func (c *Consumer) Run(ctx context.Context) error {
	batches := make(chan *Batch, 1)
	defer func() {
		for range batches {
			c.Busy.End() // fetched, never scored: redelivered
		}
	}()
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	spare := make(chan *Batch, 2) // landed batches, for their memory
	go c.prefetch(fctx, batches, spare)

	var fl *flight
	settle := func() error {
		if fl == nil {
			return nil
		}
		err := <-fl.done
		if err != nil {
			// The states the cache holds were ahead of a write that did
			// not land.
			c.Scorer.Cache.Reset()
		} else {
			fl.batch.recycle()
			select {
			case spare <- fl.batch:
			default:
			}
		}
		fl = nil
		return err
	}
	quit := func(err error) error {
		if lerr := settle(); err == nil {
			err = lerr
		}
		if ctx.Err() != nil {
			return nil // unprocessed records are redelivered
		}
		return err
	}
	for {
		batch, ok := <-batches
		if !ok || ctx.Err() != nil {
			if ok {
				c.Busy.End()
			}
			return quit(nil)
		}
		b, err := c.score(ctx, batch, fl)
		if lerr := settle(); lerr != nil {
			if b != nil {
				b.end(c)
			}
			return quit(lerr)
		}
		if err != nil {
			return quit(err)
		}
		fl = c.land(b)
		fl.batch = batch
	}
}

// prefetch fetches and decodes batches into out until ctx ends, then
// closes it.
func (c *Consumer) prefetch(ctx context.Context, out chan<- *Batch, spare <-chan *Batch) {
	defer close(out)
	for {
		var reuse *Batch
		var buf []kafka.Message
		select {
		case reuse = <-spare:
			buf = reuse.Msgs
		default:
		}
		msgs, err := kafkax.FetchBatchInto(ctx, c.Reader, buf, c.MaxBatch, c.Linger)
		if ctx.Err() != nil {
			return
		}
		if err != nil && len(msgs) == 0 {
			c.Log.Warn("fetch events", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		c.Busy.Begin()
		b := c.Scorer.decodeInto(reuse, msgs)
		select {
		case out <- b:
		case <-ctx.Done():
			c.Busy.End()
			return
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

// scored is a batch between scoring and landing.
type scored struct {
	msgs   []kafka.Message
	out    *Output
	start  time.Time
	ctx    context.Context // survives Run's context by Grace
	cancel context.CancelFunc
	span   trace.Span
}

func (b *scored) end(c *Consumer) {
	b.span.End()
	b.cancel()
	c.Busy.End()
}

// flight is a landing batch.
type flight struct {
	out   *Output
	batch *Batch
	done  chan error
}

func (c *Consumer) retry(what string) func(error) {
	return func(err error) { c.Log.Warn("retrying", "step", what, "err", err) }
}

// score runs the engine over batch; fl, if not nil, is the batch still
// landing, whose write the loads see as if it were in.
func (c *Consumer) score(ctx context.Context, batch *Batch, fl *flight) (*scored, error) {
	msgs := batch.Msgs
	b := &scored{msgs: msgs, start: batch.Decoded}
	b.ctx, b.cancel = detach(ctx, c.Grace)

	var links []trace.Link
	for i := range msgs {
		if len(links) == maxLinks {
			break
		}
		if sc := trace.SpanContextFromContext(kafkax.Extract(context.Background(), c.Propagator, &msgs[i])); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	b.ctx, b.span = c.Tracer.Start(b.ctx, "rules.batch", trace.WithLinks(links...), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(msgs))))

	var l Loader = c.Store
	if fl != nil {
		l = pendingLoader{l: c.Store, w: &fl.out.Write}
	}
	th := c.Thresholds()
	if err := redisx.Retry(b.ctx, c.retry("load state"), func(ctx context.Context) error {
		var err error
		b.out, err = c.Scorer.ScoreBatch(ctx, l, batch, th)
		return err
	}); err != nil {
		b.end(c)
		return nil, fmt.Errorf("score batch: %w", err)
	}
	// The cache now holds the batch's states as they will be stored; if the
	// batch does not land, Run resets it.
	c.Scorer.Keep(b.out)
	return b, nil
}

// land starts landing b: produce, write, commit.
func (c *Consumer) land(b *scored) *flight {
	fl := &flight{out: b.out, done: make(chan error, 1)}
	go func() { fl.done <- c.finish(b) }()
	return fl
}

func (c *Consumer) finish(b *scored) error {
	defer b.end(c)
	out := b.out
	if err := c.produce(b.ctx, out); err != nil {
		return err
	}
	if err := redisx.Retry(b.ctx, c.retry("write state"), func(ctx context.Context) error {
		return c.Store.Apply(ctx, out.Write)
	}); err != nil {
		return fmt.Errorf("write batch: %w", err)
	}
	if c.AfterWrite != nil {
		if err := c.AfterWrite(); err != nil {
			return err
		}
	}
	if err := c.Reader.CommitMessages(b.ctx, b.msgs...); err != nil {
		// A rebalance may have moved the partitions away; the new owner
		// re-reads from the last commit and the watermarks skip what this
		// batch already applied.
		c.Log.Warn("commit events offsets", "err", err)
	}
	ctx := context.WithoutCancel(b.ctx)
	for r, n := range out.Results {
		c.Metrics.events.Add(ctx, int64(n), metric.WithAttributes(attribute.String("result", r)))
	}
	for r, n := range out.Rules {
		c.Metrics.signals.Add(ctx, int64(n), metric.WithAttributes(attribute.String("rule", r)))
	}
	for r, n := range out.DLQBy {
		c.Metrics.DLQ(ctx, r, n)
	}
	b.span.SetAttributes(attribute.Int("churnwatch.signals", len(out.Signals)), attribute.Int("churnwatch.dlq", len(out.DLQ)))
	c.Metrics.batch.Record(ctx, time.Since(b.start).Seconds())
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
