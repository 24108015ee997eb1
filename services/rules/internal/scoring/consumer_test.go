package scoring

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/status"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// TestEventTheEngineChokesOnGoesToTheDLQ: an event that makes scoring
// panic (as an engine bug would, on a worker goroutine of the partition
// runs) is parked on the DLQ with the reason headers; every other event of
// its batch is scored and applied once, and the consumer goes on.
func TestEventTheEngineChokesOnGoesToTheDLQ(t *testing.T) {
	k, r := testkit.Kafka(t), testkit.Redis(t)
	topics := testkit.DefaultTopics()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const n = 600
	msgs := batchOf(n, 60, 0, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := range msgs {
		msgs[i].Partition, msgs[i].Offset = 0, 0 // the balancer picks by key
	}
	poison := msgs[333].Value
	w := kafkax.NewWriter(kafkax.Plain(k.Brokers), topics.Events)
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	mr := sdkmetric.NewManualReader()
	metrics, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(mr)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	reader := kafka.NewReader(kafkax.ReaderConfig(kafkax.Plain(k.Brokers), "rules", topics.Events))
	defer reader.Close()
	signals, dlq := kafkax.SmallWriter(kafkax.Plain(k.Brokers), topics.Signals), kafkax.SmallWriter(kafkax.Plain(k.Brokers), topics.DLQ)
	defer signals.Close()
	defer dlq.Close()
	sc := newScorer(10000)
	sc.Topic = topics.Events
	sc.beforeApply = func(m *kafka.Message) {
		if bytes.Equal(m.Value, poison) {
			panic("engine bug")
		}
	}
	th := engine.DefaultThresholds()
	c := &Consumer{
		Reader: reader, Scorer: sc, Store: store.New(rdb), Signals: signals, DLQ: dlq,
		Thresholds: func() *engine.Thresholds { return &th }, Metrics: metrics, Log: slog.New(slog.DiscardHandler),
		Tracer: noop.NewTracerProvider().Tracer("test"), Propagator: propagation.TraceContext{}, Busy: &status.Busy{},
		MaxBatch: 1000, Linger: 100 * time.Millisecond, Grace: 5 * time.Second,
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()

	counter := func(name, key, value string) int64 {
		var rm metricdata.ResourceMetrics
		if err := mr.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == name {
					for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
						if v, ok := dp.Attributes.Value(attribute.Key(key)); ok && v.AsString() == value {
							sum += dp.Value
						}
					}
				}
			}
		}
		return sum
	}
	for counter("churnwatch.rules.events", "result", ResultApplied) < n-1 {
		if ctx.Err() != nil {
			t.Fatalf("applied %d of %d events", counter("churnwatch.rules.events", "result", ResultApplied), n-1)
		}
		time.Sleep(10 * time.Millisecond)
	}

	dr := kafka.NewReader(kafkax.ReaderConfig(kafkax.Plain(k.Brokers), "dlq-check", topics.DLQ))
	defer dr.Close()
	dl, err := dr.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("read dlq: %v", err)
	}
	if !bytes.Equal(dl.Value, poison) {
		t.Fatal("DLQ holds another record than the one the engine panicked on")
	}
	if got := kafkax.Header(dl, kafkax.HeaderReasonClass); got != kafkax.ClassPanic {
		t.Errorf("cw-reason-class = %q", got)
	}
	if got := kafkax.Header(dl, kafkax.HeaderReason); len(got) < 17 || got[:17] != "panic: engine bug" {
		t.Errorf("cw-reason = %q", got)
	}
	if got := kafkax.Header(dl, kafkax.HeaderSourceTopic); got != topics.Events {
		t.Errorf("cw-source-topic = %q", got)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	lag, err := kafkax.GroupLag(ctx, kafkax.Plain(k.Brokers), "rules", topics.Events)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lag {
		if p.Lag != 0 {
			t.Errorf("partition %d lag %d: not every record committed", p.Partition, p.Lag)
		}
	}
	// Once: a part of the batch handled again after the panic counts as
	// applied only where its first handling never landed.
	if got := counter("churnwatch.rules.events", "result", ResultApplied); got != n-1 {
		t.Errorf("applied %d events, want %d", got, n-1)
	}
	if got := counter("churnwatch.dlq.records", "reason", kafkax.ClassPanic); got != 1 {
		t.Errorf("dlq records{reason=panic} = %d, want 1", got)
	}
}
