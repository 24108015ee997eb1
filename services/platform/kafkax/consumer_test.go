package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// ledger is a handler's durable state: how often each record's effect
// landed.
type ledger struct {
	mu     sync.Mutex
	landed map[string]int
}

func (l *ledger) apply(vals []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range vals {
		l.landed[v]++
	}
}

func (l *ledger) count(v string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.landed[v]
}

func (l *ledger) covered(n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range n {
		if l.landed[strconv.Itoa(i)] == 0 {
			return false
		}
	}
	return true
}

// fixture is a broker with n records on the events topic (values "0" …),
// and the consumer's pieces.
type fixture struct {
	k      *embedded.Kafka
	topic  string
	dlq    *kafka.Writer
	n      int
	reader *metricReader
}

type metricReader struct{ *sdkmetric.ManualReader }

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	k := testkit.Kafka(t)
	topics := testkit.DefaultTopics()
	w := kafkax.NewWriter(kafkax.Plain(k.Brokers), topics.Events)
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("C%03d", i%41)), Value: []byte(strconv.Itoa(i)),
			Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}
	dlq := kafkax.SmallWriter(kafkax.Plain(k.Brokers), topics.DLQ)
	t.Cleanup(func() { dlq.Close() })
	return &fixture{k: k, topic: topics.Events, dlq: dlq, n: n, reader: &metricReader{sdkmetric.NewManualReader()}}
}

// consumer returns a consumer of group on a new reader, landing into led;
// handle, if not nil, runs first in Handle and land first in Land.
func (f *fixture) consumer(t *testing.T, group string, led *ledger, handle func([]kafka.Message) error, land func([]string) error) (*kafkax.BatchConsumer[struct{}], *kafka.Reader) {
	t.Helper()
	r := kafka.NewReader(kafkax.ReaderConfig(kafkax.Plain(f.k.Brokers), group, f.topic))
	t.Cleanup(func() { r.Close() })
	mt, err := kafkax.NewConsumerMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	return &kafkax.BatchConsumer[struct{}]{
		Name: "test", Reader: r, DLQ: f.dlq, MaxBatch: 64, Linger: 5 * time.Millisecond,
		Grace: 5 * time.Second, BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond, Metrics: mt,
		Handle: func(ctx context.Context, msgs []kafka.Message, _ struct{}) (kafkax.Landing, error) {
			if handle != nil {
				if err := handle(msgs); err != nil {
					return kafkax.Landing{}, err
				}
			}
			vals := make([]string, len(msgs))
			for i := range msgs {
				vals[i] = string(msgs[i].Value)
			}
			return kafkax.Landing{Land: func(context.Context) error {
				if land != nil {
					if err := land(vals); err != nil {
						return err
					}
				}
				led.apply(vals)
				return nil
			}}, nil
		},
	}, r
}

// counter sums the data points of the counter name whose attributes
// include want.
func (f *fixture) counter(t *testing.T, name string, want map[string]string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
		points:
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				for k, v := range want {
					if got, ok := dp.Attributes.Value(attribute.Key(k)); !ok || got.AsString() != v {
						continue points
					}
				}
				sum += dp.Value
			}
		}
	}
	return sum
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// totalLag is the group's lag over the events topic.
func (f *fixture) totalLag(t *testing.T, group string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lag, err := kafkax.GroupLag(ctx, kafkax.Plain(f.k.Brokers), group, f.topic)
	if err != nil {
		t.Fatalf("lag: %v", err)
	}
	var total int64
	for _, p := range lag {
		total += p.Lag
	}
	return total
}

// readDLQ reads n records from the DLQ topic.
func (f *fixture) readDLQ(t *testing.T, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafkax.ReaderConfig(kafkax.Plain(f.k.Brokers), "dlq-check", testkit.DefaultTopics().DLQ))
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read dlq: %v (got %d of %d)", err, len(out), n)
		}
		out = append(out, m)
	}
	return out
}

func run(ctx context.Context, c *kafkax.BatchConsumer[struct{}]) chan error {
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return done
}

func TestBatchConsumerDeadLettersTheRecordItsHandlerPanicsOn(t *testing.T) {
	f := newFixture(t, 400)
	led := &ledger{landed: map[string]int{}}
	const poison = "137"
	c, r := f.consumer(t, "g", led, func(msgs []kafka.Message) error {
		for i := range msgs {
			if string(msgs[i].Value) == poison {
				panic("bad record " + poison)
			}
		}
		return nil
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, c)
	waitFor(t, "every good record to land", 60*time.Second, func() bool {
		for i := range f.n {
			if v := strconv.Itoa(i); v != poison && led.count(v) == 0 {
				return false
			}
		}
		return true
	})
	dl := f.readDLQ(t, 1)[0]
	if string(dl.Value) != poison {
		t.Fatalf("DLQ holds %q, want %q", dl.Value, poison)
	}
	for k, want := range map[string]string{
		kafkax.HeaderReasonClass: kafkax.ClassPanic, kafkax.HeaderSourceTopic: f.topic, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		if got := kafkax.Header(dl, k); got != want {
			t.Errorf("DLQ header %s = %q, want %q", k, got, want)
		}
	}
	if got := kafkax.Header(dl, kafkax.HeaderReason); got != "panic: bad record "+poison {
		t.Errorf("cw-reason = %q", got)
	}
	if kafkax.Header(dl, kafkax.HeaderSourcePartition) == "" || kafkax.Header(dl, kafkax.HeaderSourceOffset) == "" {
		t.Errorf("DLQ record without source partition or offset: %v", dl.Headers)
	}
	// The consumer keeps going: records produced after the poison one are
	// handled too.
	w := kafkax.NewWriter(kafkax.Plain(f.k.Brokers), f.topic)
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("C999"), Value: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a record after the poison one", 30*time.Second, func() bool { return led.count("after") == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range f.n {
		v := strconv.Itoa(i)
		want := 1
		if v == poison {
			want = 0
		}
		if got := led.count(v); got != want {
			t.Errorf("record %s landed %d times, want %d", v, got, want)
		}
	}
	if lag := f.totalLag(t, "g"); lag != 0 {
		t.Errorf("lag %d after the run: offsets (the DLQ'd record's too) not committed", lag)
	}
	if got := f.counter(t, "churnwatch.dlq.records", map[string]string{"reason": "panic"}); got != 1 {
		t.Errorf("dlq records{reason=panic} = %d, want 1", got)
	}
	if got := f.counter(t, "churnwatch.consumer.panics", map[string]string{"consumer": "test"}); got < 3 {
		t.Errorf("panics = %d, want at least 3 (the batch, its parts, the record's retries)", got)
	}
	if got := f.counter(t, "churnwatch.consumer.records", nil); got != int64(f.n+1) {
		t.Errorf("records committed = %d, want %d", got, f.n+1)
	}
}

func TestBatchConsumerDeadLettersAPoisonRecordItsHandlerNames(t *testing.T) {
	f := newFixture(t, 200)
	led := &ledger{landed: map[string]int{}}
	c, r := f.consumer(t, "g", led, func(msgs []kafka.Message) error {
		for i := range msgs {
			if v := string(msgs[i].Value); v == "17" || v == "18" {
				return kafkax.Poison(&msgs[i], "invalid", "invalid: "+v)
			}
		}
		return nil
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, c)
	dls := f.readDLQ(t, 2)
	waitFor(t, "every good record to land", 60*time.Second, func() bool {
		for i := range f.n {
			if v := strconv.Itoa(i); v != "17" && v != "18" && led.count(v) == 0 {
				return false
			}
		}
		return true
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.Close()
	got := map[string]string{}
	for _, m := range dls {
		got[string(m.Value)] = kafkax.Header(m, kafkax.HeaderReason) + "/" + kafkax.Header(m, kafkax.HeaderReasonClass)
	}
	if got["17"] != "invalid: 17/invalid" || got["18"] != "invalid: 18/invalid" {
		t.Fatalf("DLQ = %v", got)
	}
	for i := range f.n {
		v := strconv.Itoa(i)
		if n := led.count(v); (v == "17" || v == "18") != (n == 0) || n > 1 {
			t.Errorf("record %s landed %d times", v, n)
		}
	}
	if got := f.counter(t, "churnwatch.dlq.records", map[string]string{"reason": "invalid"}); got != 2 {
		t.Errorf("dlq records{reason=invalid} = %d, want 2", got)
	}
}

func TestBatchConsumerRetriesTransientErrorsWithoutSkippingOrRepeating(t *testing.T) {
	f := newFixture(t, 300)
	led := &ledger{landed: map[string]int{}}
	var mu sync.Mutex
	handleFails, landFails := 3, 4
	errDown := errors.New("redis: connection refused")
	c, r := f.consumer(t, "g", led, func([]kafka.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if handleFails > 0 {
			handleFails--
			return errDown
		}
		return nil
	}, func([]string) error {
		mu.Lock()
		defer mu.Unlock()
		if landFails > 0 {
			landFails-- // fails before anything is written, as a MULTI/EXEC does
			return errDown
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, c)
	waitFor(t, "every record to land", 60*time.Second, func() bool { return led.covered(f.n) })
	// The last batch is committed once it landed, not when a next one
	// comes (none will).
	waitFor(t, "the offsets to be committed while running", 10*time.Second, func() bool { return f.totalLag(t, "g") == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.Close()
	for i := range f.n {
		if n := led.count(strconv.Itoa(i)); n != 1 {
			t.Errorf("record %d landed %d times, want 1", i, n)
		}
	}
	if got := f.counter(t, "churnwatch.consumer.retries", map[string]string{"stage": "handle"}); got != 3 {
		t.Errorf("handle retries = %d, want 3", got)
	}
	if got := f.counter(t, "churnwatch.consumer.retries", map[string]string{"stage": "land"}); got != 4 {
		t.Errorf("land retries = %d, want 4", got)
	}
	if got := f.counter(t, "churnwatch.dlq.records", nil); got != 0 {
		t.Errorf("%d records dead-lettered for a transient error", got)
	}
	if lag := f.totalLag(t, "g"); lag != 0 {
		t.Errorf("lag %d after the run", lag)
	}
}

func TestBatchConsumerCommitsOnlyAfterLanding(t *testing.T) {
	f := newFixture(t, 300)
	led := &ledger{landed: map[string]int{}}
	release := make(chan struct{})
	var held []string
	var started atomic.Bool
	c, r := f.consumer(t, "g", led, nil, func(vals []string) error {
		if !started.Load() {
			held = vals
			started.Store(true)
			<-release // the reader is closed while this batch lands
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, c)
	waitFor(t, "the first batch to be landing", 30*time.Second, started.Load)
	if err := r.Close(); err != nil { // the instance dies: its commits are lost
		t.Fatal(err)
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(held) == 0 {
		t.Fatal("no batch landed")
	}
	// A new instance gets the batch that landed but was never committed
	// again, and everything after it.
	before := map[string]int{}
	for _, v := range held {
		before[v] = led.count(v)
	}
	c2, r2 := f.consumer(t, "g", led, nil, nil)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := run(ctx2, c2)
	waitFor(t, "every record to land", 60*time.Second, func() bool { return led.covered(f.n) })
	waitFor(t, "the uncommitted batch to be redelivered", 30*time.Second, func() bool {
		for _, v := range held {
			if led.count(v) <= before[v] {
				return false
			}
		}
		return true
	})
	// Offsets go out in the background (every 200 ms): everything landed
	// is committed while the instance runs. (Checked before the stop: a
	// commit racing the group's shutdown on the embedded broker can be
	// refused, and would only mean a redelivery.)
	waitFor(t, "every landed batch committed", 30*time.Second, func() bool { return f.totalLag(t, "g") == 0 })
	cancel2()
	if err := <-done2; err != nil {
		t.Fatalf("Run: %v", err)
	}
	r2.Close()
}

func TestBatchConsumerCancelReturnsPromptlyAndCommitsTheBatchInHand(t *testing.T) {
	f := newFixture(t, 400)
	led := &ledger{landed: map[string]int{}}
	landing := make(chan struct{}, 1)
	c, r := f.consumer(t, "g", led, nil, func([]string) error {
		select {
		case landing <- struct{}{}:
		default:
		}
		time.Sleep(50 * time.Millisecond) // a landing in flight when shutdown begins
		return nil
	})
	c.MaxBatch = 16
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, c)
	<-landing
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of cancellation")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %v to return", d)
	}
	if err := r.Close(); err != nil { // flushes the commits
		t.Fatal(err)
	}
	landed := 0
	for i := range f.n {
		switch led.count(strconv.Itoa(i)) {
		case 0:
		case 1:
			landed++
		default:
			t.Errorf("record %d landed more than once", i)
		}
	}
	if landed == 0 || landed == f.n {
		t.Fatalf("%d of %d records landed: the test proves nothing", landed, f.n)
	}
	// Exactly what landed is committed: the batch landing at the
	// cancellation was finished and committed, nothing else.
	if lag := f.totalLag(t, "g"); lag != int64(f.n-landed) {
		t.Errorf("lag %d after a clean stop, want %d (records not landed)", lag, f.n-landed)
	}
}
