package app

import (
	"context"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/internal/outbox"
	"github.com/churnwatch/churnwatch/services/alerts/internal/outbox/outboxtest"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
)

// WithPublishHook calls hook at the publisher's stages ("written": after a
// Kafka write, before the position update); an error from ErrKilled stops
// the publisher as kill -9 would (no position update, no renewal, no
// release).
func WithPublishHook(hook func(stage string) error) Option {
	return WithDeliverHook(func(reader string) error {
		if reader == "publisher" {
			return hook("written")
		}
		return nil
	})
}

// WithDeliverHook calls hook after every delivery of every outbox reader
// ("publisher", "receiver NAME"), before its position update; ErrKilled
// stops that reader as kill -9 would.
func WithDeliverHook(hook func(reader string) error) Option {
	return func(o *options) { o.deliverHook = hook }
}

// ErrKilled is what a hook returns to kill an outbox reader.
var ErrKilled = outbox.ErrKilled

// PublisherLeader reports whether the instance holds the publisher lease.
func (a *App) PublisherLeader() bool { return a.pub.Leader() }

// TopicRecord is one record of churnwatch.alerts.v1 as the tests see it.
type TopicRecord = outboxtest.TopicRecord

// ReadTopic, CheckExactlyOnce and CheckCloudEvent: package outboxtest.
var (
	ReadTopic        = outboxtest.ReadTopic
	CheckExactlyOnce = outboxtest.CheckExactlyOnce
	CheckCloudEvent  = outboxtest.CheckCloudEvent
)

// OpenStreams is the number of Subscribe streams whose sender goroutine is
// still running.
func (a *App) OpenStreams() int64 { return a.stream.OpenStreams() }

// HubSubscribers is the number of subscriber queues the fan-out holds.
func (a *App) HubSubscribers() int { return a.stream.Subscribers() }

// AppendAll appends u to the outbox as a change of the store would (every
// ops/admin subscriber receives it live).
func (a *App) AppendAll(ctx context.Context, u *cwv1.AlertUpdate) error {
	b, err := proto.Marshal(u)
	if err != nil {
		return err
	}
	rdb, err := redisx.New(a.cfg.Common)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return rdb.XAdd(ctx, &redis.XAddArgs{Stream: store.OutboxStream, Values: []any{"u", b, "n", "1", "tp", "", "i", "0"}}).Err()
}
