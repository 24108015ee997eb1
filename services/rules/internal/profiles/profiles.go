// Package profiles is the rules service's consumer of the compacted
// customers topic: it keeps each customer's tier (and manager and branch,
// for access checks) next to the customer's scoring state in Redis.
package profiles

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
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
	OnDLQ    func(ctx context.Context, reason string, n int)
	MaxBatch int
	Linger   time.Duration
	Grace    time.Duration
}

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	for {
		msgs, err := kafkax.FetchBatch(ctx, c.Reader, c.MaxBatch, c.Linger)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && len(msgs) == 0 {
			c.Log.Warn("fetch customers", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if err := c.handle(ctx, msgs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (c *Consumer) handle(ctx context.Context, msgs []kafka.Message) error {
	c.Busy.Begin()
	defer c.Busy.End()
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.Grace, cancel) })
	defer stop()

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
			dlq = append(dlq, c.dlqRecord(m, reason))
			continue
		}
		tier, _ := convert.Tier(p.GetTier())
		ups = append(ups, store.ProfileUpdate{CustomerID: p.GetCustomerId(), Profile: store.Profile{
			Tier: tier.String(), Manager: p.GetManagerId(), Branch: p.GetBranchId(),
		}})
	}
	if len(dlq) > 0 {
		if err := redisx.Retry(pctx, func(err error) { c.Log.Warn("retrying", "step", "produce dlq", "err", err) },
			func(ctx context.Context) error { return c.DLQ.WriteMessages(ctx, dlq...) }); err != nil {
			return fmt.Errorf("produce dlq: %w", err)
		}
		if c.OnDLQ != nil {
			c.OnDLQ(ctx, "decode", len(dlq))
		}
	}
	if err := redisx.Retry(pctx, func(err error) { c.Log.Warn("retrying", "step", "write profiles", "err", err) },
		func(ctx context.Context) error { return c.Store.ApplyProfiles(ctx, ups) }); err != nil {
		return fmt.Errorf("write profiles: %w", err)
	}
	if err := c.Reader.CommitMessages(pctx, msgs...); err != nil {
		c.Log.Warn("commit customers offsets", "err", err)
	}
	return nil
}

func (c *Consumer) dlqRecord(m *kafka.Message, reason string) kafka.Message {
	d := kafka.Message{Key: m.Key, Value: m.Value}
	d.Headers = append(d.Headers, m.Headers...)
	return kafka.Message{Key: d.Key, Value: d.Value, Headers: append(d.Headers,
		kafka.Header{Key: "cw-reason", Value: []byte(reason)},
		kafka.Header{Key: "cw-source-topic", Value: []byte(c.Topic)},
		kafka.Header{Key: "cw-source-partition", Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: "cw-source-offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)}
}
