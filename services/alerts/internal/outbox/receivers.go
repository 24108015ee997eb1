package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/internal/receiver"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
)

// Receivers (CHURNWATCH_ALERTS_RECEIVERS) are fed from the outbox, one
// Runner per receiver, each with its own position and lease
// (cw:{alerts}:rcv:NAME:pos|lease). receiverSink hands each matching
// change to the receiver's channel (a receiver.Sink) one at a time:
// retryable failures are retried with exponential backoff and jitter for up
// to the receiver's retry.for; the first attempt's time is kept in Redis
// (cw:{alerts}:rcv:NAME:head) so the period survives restarts; other
// failures and expired retries are dead-lettered
// (cw:{alerts}:rcv:NAME:dead).
type receiverSink struct {
	r     *receiver.Receiver
	store *store.Store
	log   *slog.Logger
	met   *ReceiverMetrics
	attrs metric.MeasurementOption

	retrying atomic.Bool
}

// Deliver runs the attempt sequence of the first matching change and
// reports it done (with the entries before it that do not match); entries
// that do not match are done without a delivery.
func (d *receiverSink) Deliver(ctx context.Context, lease Validity, entries []store.Entry) (int, error) {
	for i, e := range entries {
		u, err := e.Decode()
		if err != nil || u.GetAlert() == nil {
			d.log.ErrorContext(ctx, "receiver: skipping corrupt alert stream entry", "id", e.ID)
			continue
		}
		if !d.r.Matches(u) {
			continue
		}
		u.Cursor = e.ID
		if err := d.deliver(ctx, lease, e.ID, u); err != nil {
			return 0, err
		}
		return i + 1, nil
	}
	return len(entries), nil
}

// deliver runs the attempt sequence of one change: it returns nil once the
// change is delivered, dead-lettered or has no recipient, and an error only
// when the lease is lost or the service stops.
func (d *receiverSink) deliver(ctx context.Context, lease Validity, id string, u *cwv1.AlertUpdate) error {
	n := &receiver.Notification{ID: receiver.NotificationID(u.GetAlert()), Update: u}
	if p, err := d.store.Profile(ctx, u.GetAlert().GetCustomerId()); err == nil {
		n.Profile = p
	}
	var head store.RetryHead
	if h, err := d.store.RetryHead(ctx, d.r.Name); err == nil && h.ID == id {
		head = h
	}
	head.ID = id
	bo := &backoff.ExponentialBackOff{InitialInterval: d.r.Retry.Initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: d.r.Retry.Max}
	bo.Reset()
	defer d.retrying.Store(false)
	for {
		until, ok := lease.Valid()
		if !ok {
			return store.ErrLeaseLost
		}
		start := time.Now()
		if head.First.IsZero() {
			head.First = start
		}
		head.Attempts++
		// An attempt started is finished (or times out) even when shutdown
		// begins, so that its outcome is recorded.
		actx, cancel := context.WithDeadline(context.WithoutCancel(ctx), minTime(start.Add(d.r.Timeout), until))
		err := d.r.Sink.Deliver(actx, n)
		cancel()
		switch {
		case err == nil:
			d.met.delivered.Add(ctx, 1, d.attrs)
			return nil
		case errors.Is(err, receiver.ErrNoRecipient):
			d.met.skipped.Add(ctx, 1, d.attrs)
			return nil
		case receiver.IsPermanent(err):
			return d.deadLetter(ctx, id, n, "rejected", head.Attempts, err)
		case time.Since(head.First) >= d.r.Retry.For:
			return d.deadLetter(ctx, id, n, "expired", head.Attempts, err)
		}
		d.retrying.Store(true)
		d.met.retries.Add(ctx, 1, d.attrs)
		_ = d.store.SetRetryHead(ctx, d.r.Name, head)
		next := bo.NextBackOff()
		if left := time.Until(head.First.Add(d.r.Retry.For)); next > left {
			next = max(left, 0)
		}
		// No customer data in logs: the outbox id and version say which.
		d.log.WarnContext(ctx, "receiver: delivery failed; retrying", "outbox_id", id, "version", u.GetAlert().GetVersion(),
			"attempt", head.Attempts, "retry_in", next.String(), "err", err)
		if !sleep(ctx, next) {
			return ctx.Err()
		}
	}
}

func (d *receiverSink) deadLetter(ctx context.Context, id string, n *receiver.Notification, reason string, attempts int, cause error) error {
	err := d.store.DeadLetter(ctx, d.r.Name,
		"outbox_id", id, "id", n.ID, "change", receiver.ChangeName(n.Update.GetChange()), "reason", reason,
		"attempts", attempts, "error", cause.Error(), "at", time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		d.log.ErrorContext(ctx, "receiver: dead-letter write failed", "outbox_id", id, "err", err)
	}
	d.met.failed.Add(ctx, 1, d.attrs, metric.WithAttributes(attribute.String("reason", reason)))
	d.log.ErrorContext(ctx, "receiver: change dead-lettered", "outbox_id", id, "reason", reason, "attempts", attempts, "err", cause)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ReceiverMetrics are per receiver (attributes receiver, channel).
type ReceiverMetrics struct {
	delivered, failed, retries, skipped metric.Int64Counter
}

// Receivers runs one Runner per receiver of the file and swaps them when
// the file (or a secret file it names) changes.
type Receivers struct {
	store  *store.Store
	log    *slog.Logger
	path   string
	opts   receiver.Options
	reload time.Duration
	lease  LeaseTimes
	met    *ReceiverMetrics
	hook   func(reader string) error

	mu      sync.Mutex
	set     *receiver.Set
	running map[string]*running
	lastErr string
}

// LeaseTimes are the lease TTL and renew period of the outbox's readers; a
// receiver's TTL adds its attempt timeout, so an attempt (bounded by the
// lease's validity) ends before a peer can take over.
type LeaseTimes struct{ TTL, Renew time.Duration }

type running struct {
	run    *Runner
	sink   *receiverSink
	digest string
	cancel context.CancelFunc
	done   chan struct{}
}

// ReceiversConfig is what NewReceivers needs.
type ReceiversConfig struct {
	Store *store.Store
	Log   *slog.Logger
	Meter metric.Meter
	// Path is the receivers file, Set what New loaded and checked from it.
	Path   string
	Set    *receiver.Set
	Opts   receiver.Options
	Reload time.Duration
	Lease  LeaseTimes
	// AfterDeliver (tests) runs after each delivery with the reader's name.
	AfterDeliver func(reader string) error
}

// NewReceivers registers the receiver metrics and, with a Set, prepares
// its runners (nil without one).
func NewReceivers(c ReceiversConfig) (*Receivers, error) {
	s := &Receivers{store: c.Store, log: c.Log, path: c.Path, opts: c.Opts, reload: c.Reload, lease: c.Lease, hook: c.AfterDeliver,
		set: c.Set, running: map[string]*running{}}
	var err error
	if s.met, err = s.metrics(c.Meter); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if c.Set == nil {
		return nil, nil
	}
	return s, nil
}

func (s *Receivers) metrics(m metric.Meter) (*ReceiverMetrics, error) {
	var rm ReceiverMetrics
	var err error
	if rm.delivered, err = m.Int64Counter("churnwatch.alert.receiver.delivered", metric.WithDescription("alert changes delivered to a receiver")); err != nil {
		return nil, err
	}
	if rm.failed, err = m.Int64Counter("churnwatch.alert.receiver.failed", metric.WithDescription("alert changes dead-lettered (reason: rejected = a non-retryable answer, expired = retried too long)")); err != nil {
		return nil, err
	}
	if rm.retries, err = m.Int64Counter("churnwatch.alert.receiver.retries", metric.WithDescription("failed delivery attempts that will be retried")); err != nil {
		return nil, err
	}
	if rm.skipped, err = m.Int64Counter("churnwatch.alert.receiver.no.recipient", metric.WithDescription("alert changes matched but without an address (no managerEmail)")); err != nil {
		return nil, err
	}
	retrying, err := m.Int64ObservableGauge("churnwatch.alert.receiver.retrying", metric.WithDescription("1 while the receiver's oldest pending change is being retried (reported by the instance delivering)"))
	if err != nil {
		return nil, err
	}
	oldest, err := m.Float64ObservableGauge("churnwatch.alert.receiver.oldest.pending.age", metric.WithUnit("s"), metric.WithDescription("age of the oldest change not yet handled by the receiver (reported by the instance delivering)"))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, r := range s.current() {
			if _, ok := r.run.Lease.Valid(); !ok {
				continue
			}
			var n int64
			if r.sink.retrying.Load() {
				n = 1
			}
			o.ObserveInt64(retrying, n, r.sink.attrs)
			age := 0.0
			if t := r.run.OldestPending(); !t.IsZero() {
				age = max(0, time.Since(t).Seconds())
			}
			o.ObserveFloat64(oldest, age, r.sink.attrs)
		}
		return nil
	}, retrying, oldest)
	return &rm, err
}

func (s *Receivers) current() []*running {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*running, 0, len(s.running))
	for _, r := range s.running {
		out = append(out, r)
	}
	return out
}

func (s *Receivers) runner(r *receiver.Receiver) (*Runner, *receiverSink) {
	log := s.log.With("receiver", r.Name)
	sink := &receiverSink{r: r, store: s.store, log: log, met: s.met,
		attrs: metric.WithAttributes(attribute.String("receiver", r.Name), attribute.String("channel", r.Channel))}
	run := &Runner{Name: "receiver " + r.Name, Store: s.store, Lease: s.store.ReceiverLease(r.Name, s.lease.TTL+r.Timeout, s.lease.Renew),
		Sink: sink, Batch: 100, StartAtEnd: true, Log: log}
	if s.hook != nil {
		run.AfterDeliver = func() error { return s.hook(run.Name) }
	}
	return run, sink
}

// Run is the receivers worker.
func (s *Receivers) Run(ctx context.Context) error {
	s.apply(ctx, s.set)
	t := time.NewTicker(s.reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.apply(ctx, &receiver.Set{})
			return nil
		case <-t.C:
		}
		set, err := receiver.Load(s.path, s.opts)
		if err != nil {
			if msg := err.Error(); msg != s.lastErr {
				s.lastErr = msg
				s.log.ErrorContext(ctx, "receivers file invalid; keeping the receivers in use", "file", s.path, "err", err)
			}
			continue
		}
		s.lastErr = ""
		if set.Digest != s.set.Digest {
			s.log.InfoContext(ctx, "receivers file changed; reloading", "file", s.path, "receivers", len(set.Receivers))
			s.apply(ctx, set)
		}
	}
}

// apply stops the runners of receivers removed or changed and starts
// those added or changed; positions are kept by name.
func (s *Receivers) apply(ctx context.Context, set *receiver.Set) {
	want := map[string]*receiver.Receiver{}
	for _, r := range set.Receivers {
		want[r.Name] = r
	}
	s.mu.Lock()
	var stop []*running
	for name, r := range s.running {
		if w, ok := want[name]; !ok || w.Digest != r.digest || ctx.Err() != nil {
			stop = append(stop, r)
			delete(s.running, name)
		}
	}
	s.mu.Unlock()
	for _, r := range stop {
		r.cancel()
		<-r.done
	}
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set = set
	for name, r := range want {
		if _, ok := s.running[name]; ok {
			continue
		}
		run, sink := s.runner(r)
		rctx, cancel := context.WithCancel(ctx)
		rn := &running{run: run, sink: sink, digest: r.Digest, cancel: cancel, done: make(chan struct{})}
		s.running[name] = rn
		go func() {
			defer close(rn.done)
			run.Run(rctx)
		}()
	}
}

// InitPositions places the receivers new to this Redis at the outbox's
// end before the consumers run, so that nothing produced after start is
// missed.
func (s *Receivers) InitPositions(ctx context.Context) error {
	var errs []error
	for _, r := range s.set.Receivers {
		run, _ := s.runner(r)
		if err := run.EnsurePosition(ctx); err != nil {
			errs = append(errs, fmt.Errorf("receiver %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Names lists the receivers with their channels, for the start log.
func (s *Receivers) Names() []string {
	names := make([]string, 0, len(s.set.Receivers))
	for _, r := range s.set.Receivers {
		names = append(names, r.Name+" ("+r.Channel+")")
	}
	return names
}
