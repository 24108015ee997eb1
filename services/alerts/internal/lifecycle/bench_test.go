package lifecycle

import (
	"context"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// BenchmarkHandleSignals is the consumer's batch step against a real
// redis-server: 500 signals over 500 customers per batch (a mix of new
// alerts and merges), one load round trip and one MULTI each.
func BenchmarkHandleSignals(b *testing.B) {
	a := newService(b, testkit.Redis(b).Addr)
	const batch = 500
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		msgs := make([]kafka.Message, batch)
		for i := range msgs {
			c := fmt.Sprintf("C%05d", (n+i)%5000)
			s := &cwv1.RiskSignal{SignalId: fmt.Sprintf("s%d", n+i), CustomerId: c, RuleId: "outflow.large", Score: int32(40 + (n+i)%60),
				EventTime: timestamppb.Now(), Explanation: &cwv1.Explanation{RuleId: "outflow.large", Observed: "1", Threshold: "1"}}
			v, _ := proto.Marshal(s)
			msgs[i] = kafka.Message{Key: []byte(c), Value: v}
		}
		n += batch
		if _, err := a.HandleSignals(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "signals/s")
}
