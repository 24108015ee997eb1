package kafkax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// GroupReader is the part of a consumer-group *kafka.Reader a
// BatchConsumer needs.
type GroupReader interface {
	Fetcher
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Producer is the part of a *kafka.Writer a BatchConsumer needs.
type Producer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Busy counts batches in hand (status.Busy).
type Busy interface {
	Begin()
	End()
}

// Landing is what Handle returns for a batch: the part of the work that
// makes the batch's effect durable. The consumer runs it while the next
// batch is handled, and commits the batch's offsets after it succeeded.
type Landing struct {
	// DeadLetters (built with DeadLetter) are produced, and acknowledged,
	// before Land runs, so a state write can never hide a lost one.
	DeadLetters []kafka.Message
	// Land writes the batch's effect; nil if Handle wrote it already. It
	// is called again after an error (with backoff, until it succeeds or
	// the consumer stops), so it must be safe to repeat.
	Land func(ctx context.Context) error
	// Settled, if not nil, is called once, on Run's goroutine, when the
	// landing is over: with nil once the offsets are committed, or with the
	// error it was given up with (the batch will be redelivered, and any
	// batch handled on top of it was given up too).
	Settled func(error)
}

// BatchConsumer is churnwatch's one consumer-group loop: it fetches
// batches, hands them to Handle, lands them and commits their offsets only
// after the landing succeeded.
//
// An error from Handle or Land is taken for a dependency being away (Redis,
// the brokers) and retried with exponential backoff and jitter for as long
// as it lasts: an outage stalls the partition, it never skips a record. A
// handler blames one record with a PoisonError; a panic in Prepare, Handle
// or Land is recovered and blames the batch. Either way the batch is
// handled again in parts (the named record alone, else halves, down to
// single records) so that the poison record goes to the DLQ
// (ClassPanic, or the PoisonError's class) and every other record is still
// handled; a record that panics alone is tried PoisonAttempts times first.
// Handlers must therefore be idempotent (by offset watermark or event id),
// which at-least-once delivery asks of them anyway.
//
// Batches are pipelined: batch N+1 is fetched and prepared while N is
// handled, and handled while N lands. Offsets are committed in batch order.
type BatchConsumer[B any] struct {
	Name   string // the consumer, in logs and the "consumer" metric attribute
	Reader GroupReader
	// Topic is the source topic dead letters name (default: each record's
	// Topic).
	Topic string
	DLQ   Producer
	// Prepare, if not nil, runs on the fetching goroutine right after a
	// batch is fetched (decoding). spare is the value of a batch that
	// landed, whose memory it may reuse, or the zero B.
	Prepare func(msgs []kafka.Message, spare B) B
	// Handle computes a batch's effect. It may be called again with the
	// same records, or with a part of them, after an error or a panic.
	Handle func(ctx context.Context, msgs []kafka.Message, b B) (Landing, error)

	MaxBatch int
	Linger   time.Duration
	// Grace bounds how long a batch in hand may still take once Run's
	// context ends (a landing waiting out an outage).
	Grace time.Duration
	// BackoffMin and BackoffMax bound the retry delay (default 50 ms, 2 s).
	BackoffMin, BackoffMax time.Duration
	// PoisonAttempts is how often a record that panics alone is tried
	// before it goes to the DLQ (default 3).
	PoisonAttempts int

	Busy    Busy
	Log     *slog.Logger
	Metrics *ConsumerMetrics // may be nil
}

// ConsumerMetrics are a BatchConsumer's instruments, shared by the
// consumers of a service.
type ConsumerMetrics struct {
	batches, records, retries, panics, dlq metric.Int64Counter
}

// NewConsumerMetrics creates the instruments on m.
func NewConsumerMetrics(m metric.Meter) (*ConsumerMetrics, error) {
	var mt ConsumerMetrics
	var err error
	if mt.batches, err = m.Int64Counter("churnwatch.consumer.batches", metric.WithDescription("Batches committed, per consumer")); err != nil {
		return nil, err
	}
	if mt.records, err = m.Int64Counter("churnwatch.consumer.records", metric.WithDescription("Records committed (handled or dead-lettered), per consumer")); err != nil {
		return nil, err
	}
	if mt.retries, err = m.Int64Counter("churnwatch.consumer.retries", metric.WithDescription("Retries after a transient error, per consumer and stage")); err != nil {
		return nil, err
	}
	if mt.panics, err = m.Int64Counter("churnwatch.consumer.panics", metric.WithDescription("Handler panics recovered, per consumer")); err != nil {
		return nil, err
	}
	if mt.dlq, err = m.Int64Counter("churnwatch.dlq.records", metric.WithDescription("Records sent to the DLQ by reason")); err != nil {
		return nil, err
	}
	return &mt, nil
}

// DeadLettered counts n records of class sent to the DLQ.
func (m *ConsumerMetrics) DeadLettered(ctx context.Context, class string, n int) {
	if m != nil && n > 0 {
		m.dlq.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", class)))
	}
}

// fetched is a batch between fetch and handling.
type fetched[B any] struct {
	msgs []kafka.Message
	b    B
	err  error // Prepare panicked
}

// flight is a batch landing.
type flight[B any] struct {
	f      fetched[B]
	l      Landing
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
	got    bool // err received from done
	err    error
}

// wait returns the landing's result.
func (fl *flight[B]) wait() error {
	if !fl.got {
		fl.err, fl.got = <-fl.done, true
	}
	return fl.err
}

// Run consumes until ctx ends, then lands and commits the batches in hand
// (within Grace) and returns nil. It returns an error only when a handler
// asked to stop (Fatal). Commits go out in the background; the reader's
// Close flushes them.
func (c *BatchConsumer[B]) Run(ctx context.Context) error {
	if c.Reader == nil || c.DLQ == nil || c.Handle == nil || c.MaxBatch <= 0 {
		return fmt.Errorf("consumer %s: Reader, DLQ, Handle and MaxBatch are required", c.Name)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	batches := make(chan fetched[B], 1)
	spare := make(chan fetched[B], 2) // landed batches, for their memory
	fctx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		for range batches {
			c.end() // fetched, never handled: redelivered
		}
	}()
	go c.prefetch(fctx, batches, spare)

	var fl *flight[B]
	quit := func(err error) error {
		if serr := c.settle(fl, spare); err == nil {
			err = serr
		}
		if ctx.Err() != nil {
			return nil // unprocessed records are redelivered
		}
		return err
	}
	for {
		// Commit a landed batch as soon as it has landed, not only when
		// the next batch comes.
		var landed <-chan error
		if fl != nil {
			landed = fl.done
		}
		var f fetched[B]
		ok := true
		select {
		case f, ok = <-batches:
		case err := <-landed:
			fl.err, fl.got = err, true
			prev := fl
			fl = nil
			if serr := c.settle(prev, spare); serr != nil {
				if !isPoison(serr) {
					return quit(serr)
				}
				ictx, cancel := detach(ctx, c.Grace)
				ierr := c.isolate(ictx, prev.f.msgs, serr)
				cancel()
				if ierr != nil {
					return quit(ierr)
				}
			}
			continue
		}
		if !ok || ctx.Err() != nil {
			if ok {
				c.end()
			}
			return quit(nil)
		}
		hctx, cancel := detach(ctx, c.Grace)
		var l Landing
		err := f.err
		if err == nil {
			l, err = c.handle(hctx, f.msgs, f.b)
		}
		if err != nil && !isPoison(err) {
			cancel()
			c.end()
			return quit(err)
		}
		// Handed over only after the previous batch landed.
		prev := fl
		fl = nil
		serr := c.settle(prev, spare)
		if serr != nil && err == nil && l.Settled != nil {
			l.Settled(serr) // handled on top of a landing that failed
		}
		if serr != nil && !isPoison(serr) {
			cancel()
			c.end()
			return quit(serr)
		}
		if serr != nil || err != nil {
			// Something in hand is to blame: take it apart, one part
			// after the other.
			if serr != nil {
				if ierr := c.isolate(hctx, prev.f.msgs, serr); ierr != nil {
					cancel()
					c.end()
					return quit(ierr)
				}
				err = nil // handled on top of the failed landing: again
			}
			ierr := c.isolate(hctx, f.msgs, err)
			cancel()
			c.end()
			if ierr != nil {
				return quit(ierr)
			}
			continue
		}
		fl = &flight[B]{f: f, l: l, ctx: hctx, cancel: cancel, done: make(chan error, 1)}
		go func(fl *flight[B]) { fl.done <- c.land(fl.ctx, fl.l) }(fl)
	}
}

// settle waits for fl's landing and commits its batch. A failed landing's
// batch is not committed (the caller isolates a poison one).
func (c *BatchConsumer[B]) settle(fl *flight[B], spare chan<- fetched[B]) error {
	if fl == nil {
		return nil
	}
	err := fl.wait()
	if err != nil {
		if fl.l.Settled != nil {
			fl.l.Settled(err)
		}
		fl.cancel()
		c.end()
		return err
	}
	c.commit(fl.ctx, fl.f.msgs)
	if fl.l.Settled != nil {
		fl.l.Settled(nil)
	}
	fl.cancel()
	c.end()
	clear(fl.f.msgs)
	select {
	case spare <- fetched[B]{msgs: fl.f.msgs[:0], b: fl.f.b}:
	default:
	}
	return nil
}

// prefetch fetches and prepares batches into out until ctx ends, then
// closes it.
func (c *BatchConsumer[B]) prefetch(ctx context.Context, out chan<- fetched[B], spare <-chan fetched[B]) {
	defer close(out)
	for attempt := 0; ; {
		var reuse fetched[B]
		select {
		case reuse = <-spare:
		default:
		}
		msgs, err := FetchBatchInto(ctx, c.Reader, reuse.msgs, c.MaxBatch, c.Linger)
		if ctx.Err() != nil {
			return
		}
		if err != nil && len(msgs) == 0 {
			if c.wait(ctx, "fetch", err, attempt) != nil {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		c.begin()
		f := fetched[B]{msgs: msgs}
		f.b, f.err = c.prepare(msgs, reuse.b)
		select {
		case out <- f:
		case <-ctx.Done():
			c.end()
			return
		}
	}
}

func (c *BatchConsumer[B]) prepare(msgs []kafka.Message, spare B) (b B, err error) {
	if c.Prepare == nil {
		return b, nil
	}
	defer c.recover(&err)
	return c.Prepare(msgs, spare), nil
}

// recover turns a panic into a panicError in *err.
func (c *BatchConsumer[B]) recover(err *error) {
	r := recover()
	if r == nil {
		return
	}
	pe := &panicError{value: r, stack: debug.Stack()}
	if m := c.Metrics; m != nil {
		m.panics.Add(context.Background(), 1, metric.WithAttributes(attribute.String("consumer", c.Name)))
	}
	c.Log.Error("handler panicked", "consumer", c.Name, "panic", pe.Error(), "stack", string(pe.stack))
	*err = pe
}

// handle calls Handle until it succeeds, retrying transient errors.
func (c *BatchConsumer[B]) handle(ctx context.Context, msgs []kafka.Message, b B) (Landing, error) {
	for attempt := 0; ; attempt++ {
		l, err := c.handleOnce(ctx, msgs, b)
		if err == nil || isPoison(err) || isFatal(err) {
			return l, err
		}
		if werr := c.wait(ctx, "handle", err, attempt); werr != nil {
			return Landing{}, werr
		}
	}
}

func (c *BatchConsumer[B]) handleOnce(ctx context.Context, msgs []kafka.Message, b B) (l Landing, err error) {
	defer c.recover(&err)
	return c.Handle(ctx, msgs, b)
}

// land produces l's dead letters, then runs l.Land, each until it
// succeeds.
func (c *BatchConsumer[B]) land(ctx context.Context, l Landing) error {
	if len(l.DeadLetters) > 0 {
		for attempt := 0; ; attempt++ {
			err := c.DLQ.WriteMessages(ctx, l.DeadLetters...)
			if err == nil {
				break
			}
			if werr := c.wait(ctx, "produce dlq", err, attempt); werr != nil {
				return werr
			}
		}
		byClass := map[string]int{}
		for i := range l.DeadLetters {
			byClass[Header(l.DeadLetters[i], HeaderReasonClass)]++
		}
		for class, n := range byClass {
			c.Metrics.DeadLettered(context.WithoutCancel(ctx), class, n)
		}
	}
	if l.Land == nil {
		return nil
	}
	for attempt := 0; ; attempt++ {
		err := c.landOnce(ctx, l)
		if err == nil || isPoison(err) || isFatal(err) {
			return err
		}
		if werr := c.wait(ctx, "land", err, attempt); werr != nil {
			return werr
		}
	}
}

func (c *BatchConsumer[B]) landOnce(ctx context.Context, l Landing) (err error) {
	defer c.recover(&err)
	return l.Land(ctx)
}

// isolate handles msgs, which failed as a whole with err (nil: not tried
// yet), in parts, so that only the records to blame go to the DLQ. Parts
// are handled, landed and committed one after the other, in offset order.
func (c *BatchConsumer[B]) isolate(ctx context.Context, msgs []kafka.Message, err error) error {
	c.begin()
	defer c.end()
	if len(msgs) == 0 {
		return nil
	}
	if err == nil {
		if err = c.once(ctx, msgs); err == nil || !isPoison(err) {
			return err
		}
	}
	var pe *PoisonError
	if errors.As(err, &pe) {
		for k := range msgs {
			if msgs[k].Partition == pe.Partition && msgs[k].Offset == pe.Offset {
				if err := c.isolate(ctx, msgs[:k], nil); err != nil {
					return err
				}
				if err := c.deadLetter(ctx, &msgs[k], pe.Class, pe.Reason); err != nil {
					return err
				}
				return c.isolate(ctx, msgs[k+1:], nil)
			}
		}
	}
	if len(msgs) > 1 {
		mid := len(msgs) / 2
		if err := c.isolate(ctx, msgs[:mid], nil); err != nil {
			return err
		}
		return c.isolate(ctx, msgs[mid:], nil)
	}
	// One record, to blame: give a panic a few more tries (it may have been
	// a panic on a transient condition), then park it.
	attempts := c.PoisonAttempts
	if attempts <= 0 {
		attempts = 3
	}
	for attempt := 1; attempt < attempts && !errors.As(err, &pe); attempt++ {
		if werr := c.wait(ctx, "poison", err, attempt-1); werr != nil {
			return werr
		}
		if err = c.once(ctx, msgs); err == nil || !isPoison(err) {
			return err
		}
	}
	if errors.As(err, &pe) {
		return c.deadLetter(ctx, &msgs[0], pe.Class, pe.Reason)
	}
	return c.deadLetter(ctx, &msgs[0], ClassPanic, err.Error())
}

// once prepares, handles, lands and commits msgs.
func (c *BatchConsumer[B]) once(ctx context.Context, msgs []kafka.Message) error {
	var zero B
	b, err := c.prepare(msgs, zero)
	if err != nil {
		return err
	}
	l, err := c.handle(ctx, msgs, b)
	if err != nil {
		return err
	}
	if err := c.land(ctx, l); err != nil {
		if l.Settled != nil {
			l.Settled(err)
		}
		return err
	}
	c.commit(ctx, msgs)
	if l.Settled != nil {
		l.Settled(nil)
	}
	return nil
}

// deadLetter parks m on the DLQ and commits it.
func (c *BatchConsumer[B]) deadLetter(ctx context.Context, m *kafka.Message, class, reason string) error {
	c.Log.ErrorContext(ctx, "record sent to the DLQ", "consumer", c.Name, "partition", m.Partition, "offset", m.Offset,
		"class", class, "reason", reason)
	if err := c.land(ctx, Landing{DeadLetters: []kafka.Message{DeadLetter(m, c.Topic, class, reason)}}); err != nil {
		return err
	}
	c.commit(ctx, []kafka.Message{*m})
	return nil
}

func (c *BatchConsumer[B]) commit(ctx context.Context, msgs []kafka.Message) {
	if err := c.Reader.CommitMessages(ctx, msgs...); err != nil {
		// A rebalance may have moved the partitions away; the new owner
		// re-reads from the last commit and the handler's idempotence
		// skips what this batch already did.
		c.Log.WarnContext(ctx, "commit offsets", "consumer", c.Name, "err", err)
		return
	}
	ctx = context.WithoutCancel(ctx)
	if m := c.Metrics; m != nil {
		name := metric.WithAttributes(attribute.String("consumer", c.Name))
		m.batches.Add(ctx, 1, name)
		m.records.Add(ctx, int64(len(msgs)), name)
	}
}

// wait logs and counts a retry of step after err, then sleeps the attempt's
// backoff. It returns ctx's error if ctx ends first.
func (c *BatchConsumer[B]) wait(ctx context.Context, step string, err error, attempt int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.Log.WarnContext(ctx, "retrying", "consumer", c.Name, "step", step, "attempt", attempt+1, "err", err)
	if m := c.Metrics; m != nil {
		m.retries.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attribute.String("consumer", c.Name), attribute.String("stage", step)))
	}
	t := time.NewTimer(c.backoff(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff is the delay before retry attempt+1: exponential from
// BackoffMin to BackoffMax, jittered by ±25% so that instances do not
// retry in step.
func (c *BatchConsumer[B]) backoff(attempt int) time.Duration {
	lo, hi := c.BackoffMin, c.BackoffMax
	if lo <= 0 {
		lo = 50 * time.Millisecond
	}
	if hi < lo {
		hi = max(lo, 2*time.Second)
	}
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - d/4 + rand.N(d/2+1)
}

func (c *BatchConsumer[B]) begin() {
	if c.Busy != nil {
		c.Busy.Begin()
	}
}

func (c *BatchConsumer[B]) end() {
	if c.Busy != nil {
		c.Busy.End()
	}
}

// detach returns a context that survives ctx by at most grace, so a batch
// in hand can finish during shutdown but an outage cannot hold shutdown
// forever.
func detach(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(dctx, func() { t.Stop() })
	})
	return dctx, func() { stop(); cancel() }
}
