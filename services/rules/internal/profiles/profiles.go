// Package profiles is the rules service's consumer of the compacted
// customers topic: it keeps each customer's tier (and manager and branch,
// for access checks) next to the customer's scoring state in Redis.
package profiles

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/status"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Reader is the part of a consumer-group *kafka.Reader the loop needs.
type Reader interface {
	kafkax.Fetcher
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Writer produces DLQ records.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Store is where profiles go.
type Store interface {
	ApplyProfiles(ctx context.Context, ups []store.ProfileUpdate) error
}

// Consumer copies customer profiles into Redis.
type Consumer struct {
	Reader   Reader
	Store    Store
	DLQ      Writer
	Topic    string
	Log      *slog.Logger
	Busy     *status.Busy
	Metrics  *kafkax.ConsumerMetrics
	MaxBatch int
	Linger   time.Duration
	Grace    time.Duration
}

// Run consumes until ctx ends (kafkax.BatchConsumer: retried while Redis is
// away, undecodable records and records it panics on go to the DLQ).
func (c *Consumer) Run(ctx context.Context) error {
	bc := &kafkax.BatchConsumer[struct{}]{
		Name: "customers", Reader: c.Reader, Topic: c.Topic, DLQ: c.DLQ, Handle: c.handle,
		MaxBatch: c.MaxBatch, Linger: c.Linger, Grace: c.Grace, Log: c.Log, Metrics: c.Metrics,
	}
	if c.Busy != nil {
		bc.Busy = c.Busy
	}
	return bc.Run(ctx)
}

func (c *Consumer) handle(_ context.Context, msgs []kafka.Message, _ struct{}) (kafkax.Landing, error) {
	ups := make([]store.ProfileUpdate, 0, len(msgs))
	var dlq []kafka.Message
	for i := range msgs {
		m := &msgs[i]
		if m.Value == nil {
			if len(m.Key) > 0 {
				ups = append(ups, store.ProfileUpdate{CustomerID: string(m.Key), Delete: true})
			}
			continue
		}
		var p cwv1.CustomerProfile
		reason := ""
		if err := proto.Unmarshal(m.Value, &p); err != nil {
			reason = "decode: " + err.Error()
		} else if p.GetCustomerId() == "" {
			reason = "decode: customer profile without customer id"
		}
		if reason != "" {
			dlq = append(dlq, kafkax.DeadLetter(m, c.Topic, "decode", reason))
			continue
		}
		tier, _ := convert.Tier(p.GetTier())
		ups = append(ups, store.ProfileUpdate{CustomerID: p.GetCustomerId(), Profile: store.Profile{
			Tier: tier.String(), Manager: p.GetManagerId(), Branch: p.GetBranchId(),
		}})
	}
	return kafkax.Landing{DeadLetters: dlq, Land: func(ctx context.Context) error {
		if err := c.Store.ApplyProfiles(ctx, ups); err != nil {
			return fmt.Errorf("write profiles: %w", err)
		}
		return nil
	}}, nil
}
