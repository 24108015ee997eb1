package scoring

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// batchOf builds n events over customers customers on partition 0, starting
// at offset off and event time t.
func batchOf(n, customers int, off int64, t time.Time) []kafka.Message {
	out := make([]kafka.Message, n)
	types := []cwv1.EventType{cwv1.EventType_EVENT_TYPE_CARD_PAYMENT, cwv1.EventType_EVENT_TYPE_DEPOSIT,
		cwv1.EventType_EVENT_TYPE_TRANSFER_OUT, cwv1.EventType_EVENT_TYPE_LOGIN, cwv1.EventType_EVENT_TYPE_SALARY}
	for i := range n {
		c := fmt.Sprintf("B%04d", (int(off)+i)%customers)
		bal := int64(1_000_000 + i)
		ev := &cwv1.AccountEvent{EventId: fmt.Sprintf("b-%d", off+int64(i)), CustomerId: c, AccountId: c + "-01",
			OccurredAt: timestamppb.New(t.Add(time.Duration(i) * time.Minute)), Type: types[i%len(types)],
			IngestedAt: timestamppb.Now()}
		if ev.Type != cwv1.EventType_EVENT_TYPE_LOGIN {
			ev.AmountMinor, ev.Currency, ev.BalanceAfterMinor = int64(1000+i%5000), "EUR", &bal
			if ev.Type == cwv1.EventType_EVENT_TYPE_TRANSFER_OUT {
				ev.CounterpartyBank = "OTHERBANK"
			}
		}
		v, _ := proto.Marshal(ev)
		out[i] = kafka.Message{Partition: 0, Offset: off + int64(i), Key: []byte(c), Value: v}
	}
	return out
}

// BenchmarkRedisStateStage measures the rules service's state stage: one
// Redis round trip to load, the engine over the batch, one MULTI/EXEC to
// write, for batches of 1,000 events over 200 customers against a real
// redis-server; with the state cache (as the service runs) and without
// (every state read from Redis and decoded each batch).
func BenchmarkRedisStateStage(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cache", 100000}, {"no-cache", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			rdb := testkit.RedisUnderTest(b).Client(b)
			st := store.New(rdb)
			sc := &Scorer{Engine: engine.New(engine.Config{}), Lateness: 7 * 24 * time.Hour, Topic: "events", Cache: NewStateCache(bc.cache)}
			th := engine.DefaultThresholds()
			ctx := context.Background()
			const perBatch, customers = 1000, 200
			t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// Offsets and event times keep growing so every batch is new work.
				b.StopTimer()
				off := int64(i * perBatch)
				msgs := batchOf(perBatch, customers, off, t0.Add(time.Duration(off)*time.Minute))
				b.StartTimer()
				out, err := sc.Score(ctx, st, msgs, &th)
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Apply(ctx, out.Write); err != nil {
					b.Fatal(err)
				}
				sc.Keep(out)
				if out.Results[ResultApplied] != perBatch {
					b.Fatalf("applied %d of %d: %v", out.Results[ResultApplied], perBatch, out.Results)
				}
			}
			b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
