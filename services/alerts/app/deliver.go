package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/internal/receiver"
)

// Receivers (CHURNWATCH_ALERTS_RECEIVERS) are fed from the outbox, the
// all-stream the Kafka publisher reads, one deliverer per receiver:
//
//   - each receiver has its own position in the stream and its own lease,
//     so one receiver that is down delays nobody else, neither the Kafka
//     publisher nor Subscribe streams;
//
//   - only the holder of a receiver's lease delivers, one change at a
//     time in stream order (so each alert's versions in order), and moves
//     the position by a CAS on its token after each delivery: one attempt
//     sequence per (receiver, alert version) however many instances run;
//
//   - an attempt never outlives the lease (its deadline is the lease's
//     validity), so a peer that takes over after a crash cannot overlap
//     it; a holder killed after a delivery but before the position update
//     makes the next holder deliver that version again with the same
//     webhook-id / Message-ID, which receivers dedupe by;
//
//   - retryable failures are retried with exponential backoff and jitter
//     for up to the receiver's retry.for; the first attempt's time is kept
//     in Redis so the period survives restarts; other failures and
//     expired retries are dead-lettered.
//
//     cw:{alerts}:rcv:NAME:pos     last all-stream id handled by receiver NAME (CAS on its lease)
//     cw:{alerts}:rcv:NAME:lease   the receiver's deliverer lease (token, PX)
//     cw:{alerts}:rcv:NAME:head    the change being retried: id, first attempt ms, attempts
//     cw:{alerts}:rcv:NAME:dead    dead letters (stream, capped at 10000)
func kRcv(name, what string) string { return keyPrefix + "rcv:" + name + ":" + what }

// deadLetterCap bounds each receiver's dead-letter stream.
const deadLetterCap = 10000

type deliverer struct {
	r        *receiver.Receiver
	rdb      redis.UniversalClient // commands
	blocking redis.UniversalClient // XREAD BLOCK (the fan-out's client)
	lease    *lease
	log      *slog.Logger
	met      *receiverMetrics
	batch    int

	retrying     atomic.Bool
	pendingSince atomic.Int64 // ms of the outbox entry being handled; 0 = caught up
	attrs        metric.MeasurementOption
}

func newDeliverer(a *App, r *receiver.Receiver) *deliverer {
	return &deliverer{
		r: r, rdb: a.base.Redis, blocking: a.hub.rdb, log: a.base.Log.With("receiver", r.Name), met: a.rcvMet, batch: 100,
		// The TTL covers a whole attempt, so an attempt (bounded by the
		// lease's validity) ends before a peer can take over.
		lease: newLease(a.base.Redis, kRcv(r.Name, "lease"), a.cfg.PublishLeaseTTL+r.Timeout, a.cfg.PublishLeaseRenew),
		attrs: metric.WithAttributes(attribute.String("receiver", r.Name), attribute.String("channel", r.Channel)),
	}
}

// ensurePosition starts a receiver new to this Redis at the stream's end:
// it gets changes from now on, not the retained history. SET NX, so
// instances starting together agree and a known receiver keeps its place.
func (d *deliverer) ensurePosition(ctx context.Context) error {
	last, err := d.rdb.XRevRangeN(ctx, kStream(audAll), "+", "-", 1).Result()
	if err != nil {
		return err
	}
	pos := "0-0"
	if len(last) == 1 {
		pos = last[0].ID
	}
	return d.rdb.SetNX(ctx, kRcv(d.r.Name, "pos"), pos, 0).Err()
}

// run delivers while this instance holds the receiver's lease.
func (d *deliverer) run(ctx context.Context) {
	leaseLoop(ctx, d.lease, d.log, "receiver "+d.r.Name, d.work)
}

func (d *deliverer) work(ctx context.Context) error {
	wait := 50 * time.Millisecond
	fail := func(what string, err error) {
		d.log.WarnContext(ctx, "receiver: "+what, "err", err)
		sleep(ctx, wait)
		wait = min(2*wait, 5*time.Second)
	}
	for ctx.Err() == nil {
		if _, ok := d.lease.valid(); !ok {
			return errLeaseLost
		}
		pos, err := d.rdb.Get(ctx, kRcv(d.r.Name, "pos")).Result()
		if errors.Is(err, redis.Nil) {
			if err = d.ensurePosition(ctx); err == nil {
				continue
			}
		}
		if err != nil {
			fail("read position", err)
			continue
		}
		res, err := d.blocking.XRead(ctx, &redis.XReadArgs{Streams: []string{kStream(audAll), pos}, Count: int64(d.batch), Block: min(2*time.Second, d.lease.renew)}).Result()
		if errors.Is(err, redis.Nil) {
			d.pendingSince.Store(0)
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fail("read stream", err)
			continue
		}
		wait = 50 * time.Millisecond
		skipped := ""
		for _, s := range res {
			for _, x := range s.Messages {
				if ms, ok := parseID(x.ID); ok {
					d.pendingSince.Store(int64(ms.ms))
				}
				u := &cwv1.AlertUpdate{}
				if err := proto.Unmarshal(parseEntry(x).update, u); err != nil || u.GetAlert() == nil {
					d.log.ErrorContext(ctx, "receiver: skipping corrupt alert stream entry", "id", x.ID)
					skipped = x.ID
					continue
				}
				if !d.r.Matches(u) {
					skipped = x.ID
					continue
				}
				u.Cursor = x.ID
				if err := d.deliver(ctx, x.ID, u); err != nil {
					return err
				}
				if err := d.commit(ctx, x.ID); err != nil {
					return err
				}
				skipped = ""
			}
		}
		if skipped != "" {
			if err := d.commit(ctx, skipped); err != nil {
				return err
			}
		}
	}
	return nil
}

// commit moves the position, retrying Redis errors while the lease holds:
// a delivered change whose position update is lost would go out again.
func (d *deliverer) commit(ctx context.Context, id string) error {
	wait := 20 * time.Millisecond
	for {
		until, ok := d.lease.valid()
		if !ok {
			return errLeaseLost
		}
		cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), until)
		err := d.lease.commit(cctx, kRcv(d.r.Name, "pos"), id)
		cancel()
		if err == nil || errors.Is(err, errLeaseLost) {
			return err
		}
		d.log.WarnContext(ctx, "receiver: update position", "err", err)
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

// deliver runs the attempt sequence of one change: it returns nil once the
// change is delivered, dead-lettered or has no recipient, and an error only
// when the lease is lost or the service stops.
func (d *deliverer) deliver(ctx context.Context, id string, u *cwv1.AlertUpdate) error {
	n := &receiver.Notification{ID: receiver.NotificationID(u.GetAlert()), Update: u}
	if b, err := d.rdb.Get(ctx, kProfile(u.GetAlert().GetCustomerId())).Bytes(); err == nil {
		p := &cwv1.CustomerProfile{}
		if proto.Unmarshal(b, p) == nil {
			n.Profile = p
		}
	}
	headKey := kRcv(d.r.Name, "head")
	var first time.Time
	attempts := 0
	if h, err := d.rdb.HGetAll(ctx, headKey).Result(); err == nil && h["id"] == id {
		ms, _ := strconv.ParseInt(h["first"], 10, 64)
		first = time.UnixMilli(ms)
		attempts, _ = strconv.Atoi(h["attempts"])
	}
	bo := &backoff.ExponentialBackOff{InitialInterval: d.r.Retry.Initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: d.r.Retry.Max}
	bo.Reset()
	defer d.retrying.Store(false)
	for {
		until, ok := d.lease.valid()
		if !ok {
			return errLeaseLost
		}
		start := time.Now()
		if first.IsZero() {
			first = start
		}
		attempts++
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
			return d.deadLetter(ctx, id, n, "rejected", attempts, err)
		case time.Since(first) >= d.r.Retry.For:
			return d.deadLetter(ctx, id, n, "expired", attempts, err)
		}
		d.retrying.Store(true)
		d.met.retries.Add(ctx, 1, d.attrs)
		d.rdb.HSet(ctx, headKey, "id", id, "first", first.UnixMilli(), "attempts", attempts)
		next := bo.NextBackOff()
		if left := time.Until(first.Add(d.r.Retry.For)); next > left {
			next = max(left, 0)
		}
		// No customer data in logs: the outbox id and version say which.
		d.log.WarnContext(ctx, "receiver: delivery failed; retrying", "outbox_id", id, "version", u.GetAlert().GetVersion(),
			"attempt", attempts, "retry_in", next.String(), "err", err)
		if !sleep(ctx, next) {
			return ctx.Err()
		}
	}
}

func (d *deliverer) deadLetter(ctx context.Context, id string, n *receiver.Notification, reason string, attempts int, cause error) error {
	err := d.rdb.XAdd(ctx, &redis.XAddArgs{Stream: kRcv(d.r.Name, "dead"), MaxLen: deadLetterCap, Approx: true, Values: []any{
		"outbox_id", id, "id", n.ID, "change", receiver.ChangeName(n.Update.GetChange()), "reason", reason,
		"attempts", attempts, "error", cause.Error(), "at", time.Now().UTC().Format(time.RFC3339),
	}}).Err()
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

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// receiverMetrics are per receiver (attributes receiver, channel).
type receiverMetrics struct {
	delivered, failed, retries, skipped metric.Int64Counter
}

func newReceiverMetrics(a *App) (*receiverMetrics, error) {
	m := a.base.Tel.Meter
	var rm receiverMetrics
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
		for _, d := range a.delivery.current() {
			if _, ok := d.lease.valid(); !ok {
				continue
			}
			var r int64
			if d.retrying.Load() {
				r = 1
			}
			o.ObserveInt64(retrying, r, d.attrs)
			age := 0.0
			if ms := d.pendingSince.Load(); ms > 0 {
				age = max(0, time.Since(time.UnixMilli(ms)).Seconds())
			}
			o.ObserveFloat64(oldest, age, d.attrs)
		}
		return nil
	}, retrying, oldest)
	return &rm, err
}

// deliveries runs one deliverer per receiver and swaps them when the file
// changes.
type deliveries struct {
	app    *App
	path   string
	opts   receiver.Options
	reload time.Duration

	mu      sync.Mutex
	set     *receiver.Set
	running map[string]*running
	lastErr string
}

type running struct {
	d      *deliverer
	digest string
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *deliveries) current() []*deliverer {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*deliverer, 0, len(s.running))
	for _, r := range s.running {
		out = append(out, r.d)
	}
	return out
}

// run is the receivers worker.
func (s *deliveries) run(ctx context.Context) error {
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
				s.app.base.Log.ErrorContext(ctx, "receivers file invalid; keeping the receivers in use", "file", s.path, "err", err)
			}
			continue
		}
		s.lastErr = ""
		if set.Digest != s.set.Digest {
			s.app.base.Log.InfoContext(ctx, "receivers file changed; reloading", "file", s.path, "receivers", len(set.Receivers))
			s.apply(ctx, set)
		}
	}
}

// apply stops the deliverers of receivers removed or changed and starts
// those added or changed; positions are kept by name.
func (s *deliveries) apply(ctx context.Context, set *receiver.Set) {
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
		d := newDeliverer(s.app, r)
		rctx, cancel := context.WithCancel(ctx)
		run := &running{d: d, digest: r.Digest, cancel: cancel, done: make(chan struct{})}
		s.running[name] = run
		go func() {
			defer close(run.done)
			d.run(rctx)
		}()
	}
}

// initPositions starts the receivers new to this Redis at the stream's end
// before the consumers run, so that nothing produced after start is missed.
func (s *deliveries) initPositions(ctx context.Context) error {
	var errs []error
	for _, r := range s.set.Receivers {
		if err := newDeliverer(s.app, r).ensurePosition(ctx); err != nil {
			errs = append(errs, fmt.Errorf("receiver %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// startReceivers sets up the receivers New loaded and checked (New fails
// on a bad file, with every problem and its line) and places new
// receivers at the stream's end.
func (a *App) startReceivers(ctx context.Context, set *receiver.Set, opts receiver.Options) error {
	var err error
	if a.rcvMet, err = newReceiverMetrics(a); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if set == nil {
		return nil
	}
	a.delivery = &deliveries{app: a, path: a.cfg.Receivers, opts: opts, reload: a.cfg.ReceiversReload, set: set, running: map[string]*running{}}
	names := make([]string, 0, len(set.Receivers))
	for _, r := range set.Receivers {
		names = append(names, r.Name+" ("+r.Channel+")")
	}
	a.base.Log.InfoContext(ctx, "alert receivers", "file", a.cfg.Receivers, "receivers", names)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.delivery.initPositions(ictx); err != nil {
		a.base.Log.WarnContext(ctx, "receivers: could not place new receivers at the stream's end yet; their deliverers will", "err", err)
	}
	return nil
}
