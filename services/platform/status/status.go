// Package status serves churnwatch.v1.StatusService: for each consumer group
// of a service, committed offsets against log ends (lag) and, for the events
// topic, the partition event-time clocks. churnctl status and wait use it.
package status

import (
	"context"
	"sync/atomic"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// Consumer is one consumer group the service runs.
type Consumer struct {
	Group string
	Topic string
	// Clocks returns partition → event-time clock (unix ms); may be nil.
	Clocks func(ctx context.Context) (map[int]int64, error)
	// Idle reports whether the consumer has processed and committed
	// everything it fetched; may be nil.
	Idle func() bool
}

// Server implements StatusService.
type Server struct {
	cwv1.UnimplementedStatusServiceServer
	Service   string
	Kafka     kafkax.Cluster
	Consumers []Consumer
	Ready     func() bool
	Version   string
}

// GetStatus reports readiness and lag.
func (s *Server) GetStatus(ctx context.Context, _ *cwv1.GetStatusRequest) (*cwv1.GetStatusResponse, error) {
	resp := &cwv1.GetStatusResponse{Service: s.Service, Ready: s.Ready == nil || s.Ready(), Version: s.Version}
	for _, c := range s.Consumers {
		lag, err := kafkax.GroupLag(ctx, s.Kafka, c.Group, c.Topic)
		if err != nil {
			return nil, err
		}
		var clocks map[int]int64
		if c.Clocks != nil {
			if clocks, err = c.Clocks(ctx); err != nil {
				return nil, err
			}
		}
		cs := &cwv1.ConsumerStatus{Group: c.Group, Idle: c.Idle == nil || c.Idle()}
		for _, p := range lag {
			ps := &cwv1.PartitionStatus{Topic: p.Topic, Partition: int32(p.Partition), CommittedOffset: p.Committed, EndOffset: p.End, Lag: p.Lag}
			if ms, ok := clocks[p.Partition]; ok && ms > 0 {
				ps.Clock = timestamppb.New(timeFromMillis(ms))
			}
			cs.TotalLag += p.Lag
			cs.Partitions = append(cs.Partitions, ps)
		}
		resp.Consumers = append(resp.Consumers, cs)
	}
	return resp, nil
}

// Busy counts batches in flight so that Idle can be reported.
type Busy struct{ n atomic.Int64 }

// Begin marks a batch fetched; End marks it processed and committed.
func (b *Busy) Begin() { b.n.Add(1) }

// End marks a batch processed and committed.
func (b *Busy) End() { b.n.Add(-1) }

// Idle reports whether no batch is in flight.
func (b *Busy) Idle() bool { return b.n.Load() == 0 }
