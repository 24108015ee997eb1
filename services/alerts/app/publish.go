package app

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// publishLoop copies the all-stream to churnwatch.alerts.v1 (key =
// customer id), remembering in Redis how far it got. The stream is written
// in the same transaction as each alert change, so it is an outbox: a crash
// anywhere between the change and the Kafka write loses nothing (the
// publisher resumes from cw:pub:last; CRMs dedupe by alert id and version).
// Changes made by RPCs and escalations take the same path as signal merges.
func (a *App) publishLoop(ctx context.Context) error {
	rdb := a.hub.rdb // a blocking read: use the fan-out's own client
	backoff := 50 * time.Millisecond
	fail := func(what string, err error) {
		a.base.Log.Warn("publish alerts: "+what, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	for ctx.Err() == nil {
		last, err := rdb.Get(ctx, kPubLast).Result()
		if errors.Is(err, redis.Nil) {
			last = "0-0"
		} else if err != nil {
			fail("read position", err)
			continue
		}
		res, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{kStream(audAll), last}, Count: 1000, Block: 2 * time.Second}).Result()
		if errors.Is(err, redis.Nil) || ctx.Err() != nil {
			continue
		}
		if err != nil {
			fail("read stream", err)
			continue
		}
		var msgs []kafka.Message
		var lastID string
		for _, s := range res {
			for _, x := range s.Messages {
				e := parseEntry(x)
				key, err := updateCustomer(e.update)
				lastID = x.ID
				if err != nil {
					a.base.Log.Error("skipping corrupt alert stream entry", "id", x.ID)
					continue
				}
				m := kafka.Message{Key: []byte(key), Value: e.update}
				if e.tp != "" {
					kafkax.HeaderCarrier{Headers: &m.Headers}.Set("traceparent", e.tp)
				}
				msgs = append(msgs, m)
			}
		}
		// The batch is finished even when shutdown begins mid-write.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Common.ShutdownGrace)
		err = a.writer.WriteMessages(wctx, msgs...)
		if err == nil {
			err = rdb.Set(wctx, kPubLast, lastID, 0).Err()
		}
		cancel()
		if err != nil {
			fail("write", err)
			continue
		}
		backoff = 50 * time.Millisecond
	}
	return nil
}
