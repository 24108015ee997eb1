package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// BenchmarkPublish measures PublishEvents of 1,000-event batches through
// gRPC, validation, the Redis claim/promote pipelines and a RequireAll
// Kafka write (real redis-server, in-process kfake).
func BenchmarkPublish(b *testing.B) {
	s := newStack(b)
	cfg := s.config(b)
	cfg.RateLimit = 0
	a := start(b, cfg)
	cl := s.ingestClient(b, a.GRPCAddr(), auth.RoleIngest)
	const size = 1000
	batches := make([]*cwv1.PublishEventsRequest, b.N)
	for i := range batches {
		evs := events(i*size, size)
		for j, e := range evs {
			e.EventId = fmt.Sprintf("b-%d-%d", i, j)
		}
		batches[i] = &cwv1.PublishEventsRequest{Events: evs}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	for i := 0; i < b.N; i++ {
		resp, err := cl.PublishEvents(ctx, batches[i])
		if err != nil || resp.Accepted != size {
			b.Fatalf("batch %d: %v %v", i, resp.GetAccepted(), err)
		}
	}
	b.ReportMetric(float64(b.N*size)/time.Since(began).Seconds(), "events/s")
}
