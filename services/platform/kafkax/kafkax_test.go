package kafkax_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := testkit.StopSharedKafka(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func TestConsumerGroupResumesFromCommittedOffset(t *testing.T) {
	k := testkit.Kafka(t)
	testGroupResumes(t, k.Brokers, testkit.DefaultTopics().Events)
}

// The same join, commit, restart and resume on a real Apache Kafka broker:
// kfake is lenient where a real group coordinator is not (protocol
// versions, rebalance timing, commit fencing).
func TestConsumerGroupResumesOnRealKafka(t *testing.T) {
	k := testkit.SharedRealKafka(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := "kafkax.group-resume"
	if _, err := kafkax.EnsureTopics(ctx, kafkax.Plain(k.Brokers), kafkax.TopicPolicy{}, kafkax.TopicSpec{Name: topic, Partitions: testkit.Partitions}); err != nil {
		t.Fatalf("topics: %v", err)
	}
	testGroupResumes(t, k.Brokers, topic)
}

func testGroupResumes(t *testing.T, brokers []string, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k := struct{ Brokers []string }{brokers}

	w := kafkax.NewWriter(kafkax.Plain(k.Brokers), topic)
	defer w.Close()
	const n = 300
	var msgs []kafka.Message
	for i := 0; i < n; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("C%03d", i%37)), Value: []byte(fmt.Sprint(i))})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}

	seen := map[string]int{}
	// First consumer: read a part, commit it, stop without committing the rest.
	r1 := kafka.NewReader(kafkax.ReaderConfig(kafkax.Plain(k.Brokers), "g1", topic))
	var committed int
	for committed < 120 {
		batch, err := kafkax.FetchBatch(ctx, r1, 40, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for _, m := range batch {
			seen[string(m.Value)]++
		}
		if err := r1.CommitMessages(ctx, batch...); err != nil {
			t.Fatalf("commit: %v", err)
		}
		committed += len(batch)
	}
	// Fetch more without committing: these must be delivered again.
	extra, err := kafkax.FetchBatch(ctx, r1, 10, 20*time.Millisecond)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if err := r1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	lag, err := kafkax.GroupLag(ctx, kafkax.Plain(k.Brokers), "g1", topic)
	if err != nil {
		t.Fatalf("lag: %v", err)
	}
	var total int64
	for _, p := range lag {
		total += p.Lag
	}
	if total != int64(n-committed) {
		t.Fatalf("lag after first consumer = %d, want %d", total, n-committed)
	}

	// Restart: the group resumes from the committed offsets.
	r2 := kafka.NewReader(kafkax.ReaderConfig(kafkax.Plain(k.Brokers), "g1", topic))
	redelivered := map[string]bool{}
	got := 0
	for got < n-committed {
		batch, err := kafkax.FetchBatch(ctx, r2, 100, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("fetch after restart: %v (got %d of %d)", err, got, n-committed)
		}
		for _, m := range batch {
			if seen[string(m.Value)] > 0 {
				t.Fatalf("record %s committed before the restart was delivered again", m.Value)
			}
			seen[string(m.Value)]++
			redelivered[string(m.Value)] = true
		}
		got += len(batch)
		if err := r2.CommitMessages(ctx, batch...); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	for _, m := range extra {
		if !redelivered[string(m.Value)] {
			t.Fatalf("uncommitted record %s was not redelivered", m.Value)
		}
	}
	for i := 0; i < n; i++ {
		if seen[fmt.Sprint(i)] != 1 {
			t.Fatalf("record %d seen %d times", i, seen[fmt.Sprint(i)])
		}
	}
	// Commits go out in the background; Close flushes them.
	if err := r2.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	lag, err = kafkax.GroupLag(ctx, kafkax.Plain(k.Brokers), "g1", topic)
	if err != nil {
		t.Fatalf("lag: %v", err)
	}
	for _, p := range lag {
		if p.Lag != 0 {
			t.Fatalf("partition %d lag %d after consuming everything", p.Partition, p.Lag)
		}
	}
}

func TestHeaderCarrierCarriesTraceContext(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	var m kafka.Message
	prop := propagation.TraceContext{}
	prop.Inject(ctx, kafkax.HeaderCarrier{Headers: &m.Headers})
	if got := kafkax.Header(m, "traceparent"); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("traceparent header = %q", got)
	}
	out := trace.SpanContextFromContext(prop.Extract(context.Background(), kafkax.HeaderCarrier{Headers: &m.Headers}))
	if out.TraceID() != tid || out.SpanID() != sid {
		t.Fatalf("extracted %v", out)
	}
}
