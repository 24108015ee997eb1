package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/internal/outbox"
	"github.com/churnwatch/churnwatch/services/alerts/internal/outbox/outboxtest"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// outboxRig is a Redis and a broker shared by publishers, with an outbox
// filled the way the store fills it.
type outboxRig struct {
	t       *testing.T
	rdb     *redis.Client
	kafka   *embedded.Kafka
	topic   string
	mu      sync.Mutex
	version map[string]int64 // alert id → last version appended
}

func newOutboxRig(t *testing.T) *outboxRig {
	r := testkit.Redis(t)
	k := testkit.Kafka(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return &outboxRig{t: t, rdb: rdb, kafka: k, topic: testkit.DefaultTopics().Alerts, version: map[string]int64{}}
}

// appendChange appends the next version of alert A<n> of customer C<n>.
func (o *outboxRig) appendChange(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	id := fmt.Sprintf("C%03d-a", n)
	o.version[id]++
	u := &cwv1.AlertUpdate{Change: cwv1.AlertChange_ALERT_CHANGE_UPDATED, Alert: &cwv1.Alert{AlertId: id, CustomerId: fmt.Sprintf("C%03d", n), Version: o.version[id]}}
	b, err := proto.Marshal(u)
	if err != nil {
		o.t.Fatal(err)
	}
	if err := o.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: store.OutboxStream, Values: []any{"u", b, "n", "1", "tp", "", "i", "0"}}).Err(); err != nil {
		o.t.Fatal(err)
	}
}

func (o *outboxRig) want() map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := make(map[string]int64, len(o.version))
	for k, v := range o.version {
		w[k] = v
	}
	return w
}

// instance is one publisher as one alerts process would run it.
type instance struct {
	p      *outbox.Runner
	cancel context.CancelFunc
	done   chan struct{}
}

// Publisher keys, as docs/alerts.md names them.
const (
	pubLast  = "cw:{alerts}:pub:last"
	pubLease = "cw:{alerts}:pub:lease"
)

func (o *outboxRig) start(hook func(*outbox.Runner) error, takeovers, reconciled *atomic.Int64) *instance {
	rdb := redis.NewClient(&redis.Options{Addr: o.rdb.Options().Addr, ContextTimeoutEnabled: true})
	blocking := redis.NewClient(&redis.Options{Addr: o.rdb.Options().Addr, ContextTimeoutEnabled: true})
	st := store.New(rdb, blocking, store.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sink := outbox.NewKafka(kafkax.Plain(o.kafka.Brokers), o.topic, log, 5*time.Second, func(_ context.Context, n int) { reconciled.Add(int64(n)) })
	p := &outbox.Runner{
		Name: "publisher", Store: st, Lease: st.PublisherLease(600*time.Millisecond, 100*time.Millisecond),
		Sink: sink, Batch: 7, Log: log,
		OnTakeover: func(context.Context) { takeovers.Add(1) },
	}
	if hook != nil {
		p.AfterDeliver = func() error { return hook(p) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(in.done)
		defer rdb.Close()
		defer st.Close()
		defer sink.Close()
		p.Run(ctx)
	}()
	o.t.Cleanup(func() { cancel(); <-in.done })
	return in
}

// caughtUp waits until the position is the outbox's last entry.
func (o *outboxRig) caughtUp(d time.Duration) {
	o.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(d)
	for {
		last, err := o.rdb.XRevRangeN(ctx, store.OutboxStream, "+", "-", 1).Result()
		pos, _ := o.rdb.Get(ctx, pubLast).Result()
		if err == nil && len(last) == 1 && pos == last[0].ID {
			return
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("publisher position %q not caught up with the outbox (%v, %v)", pos, last, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (o *outboxRig) check() []outboxtest.TopicRecord {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, err := outboxtest.ReadTopic(ctx, o.kafka.Brokers, o.topic)
	if err != nil {
		o.t.Fatal(err)
	}
	if err := outboxtest.CheckExactlyOnce(recs, o.want()); err != nil {
		o.t.Fatalf("%d records on the topic:\n%v", len(recs), err)
	}
	return recs
}

// Three publishers share the outbox while it grows; the holder is killed
// (no position update, no release) right after a Kafka write, again and
// again, and replaced by a fresh process. Each change is on the topic once,
// in version order per alert, with no gap.
func TestPublishersExactlyOnceAcrossKills(t *testing.T) {
	o := newOutboxRig(t)
	var takeovers, reconciled, writes, kills atomic.Int64
	killed := make(chan *outbox.Runner, 16)
	hook := func(p *outbox.Runner) error {
		if writes.Add(1)%6 == 0 && kills.Load() < 8 {
			kills.Add(1)
			killed <- p
			return outbox.ErrKilled
		}
		return nil
	}
	live := map[*outbox.Runner]*instance{}
	for range 3 {
		in := o.start(hook, &takeovers, &reconciled)
		live[in.p] = in
	}
	const alerts, changes = 25, 600
	go func() {
		for i := range changes {
			o.appendChange(rand.IntN(alerts))
			if i%50 == 0 {
				time.Sleep(5 * time.Millisecond) // let publishing interleave with appends
			}
		}
	}()
	// The supervisor restarts a killed process, as an orchestrator would.
	deadline := time.After(60 * time.Second)
	for {
		if kills.Load() >= 8 && len(o.want()) > 0 && o.appended() == changes {
			break
		}
		select {
		case p := <-killed:
			in := live[p]
			in.cancel()
			<-in.done
			delete(live, p)
			n := o.start(hook, &takeovers, &reconciled)
			live[n.p] = n
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("only %d kills, %d writes", kills.Load(), writes.Load())
		}
	}
	o.caughtUp(30 * time.Second)
	recs := o.check()
	if len(recs) != changes {
		t.Fatalf("%d records, want %d", len(recs), changes)
	}
	if takeovers.Load() < kills.Load()+1 {
		t.Errorf("%d takeovers for %d kills", takeovers.Load(), kills.Load())
	}
	// A holder killed after its write left records beyond the position:
	// the successor must have found and skipped them.
	if reconciled.Load() == 0 {
		t.Error("no successor found a killed holder's records on the topic; the reconcile path was not exercised")
	}
	// Clean shutdown releases the lease.
	for _, in := range live {
		in.cancel()
		<-in.done
	}
	if n, err := o.rdb.Exists(context.Background(), pubLease).Result(); err != nil || n != 0 {
		t.Errorf("lease still held after clean shutdown: %d %v", n, err)
	}
}

func (o *outboxRig) appended() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := int64(0)
	for _, v := range o.version {
		n += v
	}
	return int(n)
}

// A holder whose lease was taken by another instance between its Kafka
// write and its position update must not move the position, must stop
// publishing, and the next holder publishes the rest without a duplicate.
func TestPublisherFencedAfterLosingLease(t *testing.T) {
	o := newOutboxRig(t)
	ctx := context.Background()
	for i := range 20 {
		o.appendChange(i % 4)
	}
	var takeovers, reconciled atomic.Int64
	stolen := make(chan struct{})
	var once sync.Once
	hook := func(*outbox.Runner) error {
		once.Do(func() {
			// Another instance holds the lease now (ours expired while we
			// were paused, say).
			if err := o.rdb.Set(ctx, pubLease, "thief", time.Minute).Err(); err != nil {
				t.Error(err)
			}
			close(stolen)
		})
		return nil
	}
	a := o.start(hook, &takeovers, &reconciled)
	<-stolen
	waitUntil(t, 10*time.Second, "the fenced holder stands by", func() bool { return !a.p.Leader() })
	if err := o.rdb.Get(ctx, pubLast).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the fenced holder moved the position: %v", err)
	}
	recs, err := outboxtest.ReadTopic(ctx, o.kafka.Brokers, o.topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 {
		t.Fatalf("%d records on the topic after the fenced write, want one batch of 7", len(recs))
	}
	for i := range 10 {
		o.appendChange(i % 4)
	}
	if err := o.rdb.Del(ctx, pubLease).Err(); err != nil {
		t.Fatal(err)
	}
	o.caughtUp(20 * time.Second)
	o.check()
	if reconciled.Load() != 7 {
		t.Errorf("reconciled %d entries, want the 7 of the fenced batch", reconciled.Load())
	}
}

// A publisher that cannot renew (Redis said the lease is another's) stops
// before its next write: Deliver refuses without a valid lease.
func TestPublisherWriteNeedsValidLease(t *testing.T) {
	o := newOutboxRig(t)
	st := store.New(o.rdb, o.rdb, store.Options{})
	l := st.PublisherLease(time.Second, 100*time.Millisecond)
	sink := outbox.NewKafka(kafkax.Plain(o.kafka.Brokers), o.topic, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second, nil)
	defer sink.Close()
	ctx := context.Background()
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if ok, _ := st.PublisherLease(time.Second, 100*time.Millisecond).Acquire(ctx); ok {
		t.Fatal("a second instance acquired a held lease")
	}
	if err := o.rdb.Set(ctx, pubLease, "thief", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Extend(ctx); ok || err != nil {
		t.Fatalf("extend of a stolen lease: %v %v", ok, err)
	}
	u, _ := proto.Marshal(&cwv1.AlertUpdate{Alert: &cwv1.Alert{AlertId: "C1-a", CustomerId: "C1", Version: 1}})
	if _, err := sink.Deliver(ctx, l, []store.Entry{{ID: "1-1", Update: u}}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("write without the lease: %v", err)
	}
	if err := l.Commit(ctx, "1-1"); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("commit without the lease: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := o.rdb.Get(ctx, pubLease).Result(); v != "thief" {
		t.Fatalf("release deleted another holder's lease: %q", v)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
