package app

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/status"
)

const batchLinger = 5 * time.Millisecond

// consume runs a kafkax.BatchConsumer over r: a batch is handed to handle
// (retried while Redis is away: an outage stalls, never skips), then its
// undecodable records go to the DLQ and the offsets are committed. A record
// handle panics on goes to the DLQ too. A batch in flight when shutdown
// begins is finished and committed within the shutdown grace.
func (a *App) consume(ctx context.Context, r *kafka.Reader, busy *status.Busy, what string,
	handle func(context.Context, []kafka.Message) ([]kafka.Message, error)) error {
	bc := &kafkax.BatchConsumer[struct{}]{
		Name: what, Reader: r, DLQ: a.dlq, MaxBatch: a.cfg.BatchSize, Linger: batchLinger,
		Grace: a.cfg.Common.ShutdownGrace, Busy: busy, Log: a.base.Log, Metrics: a.met.consumer,
		Handle: func(ctx context.Context, msgs []kafka.Message, _ struct{}) (kafkax.Landing, error) {
			bad, err := handle(ctx, msgs)
			return kafkax.Landing{DeadLetters: bad}, err
		},
	}
	return bc.Run(ctx)
}

func (a *App) consumeSignals(ctx context.Context) error {
	return a.consume(ctx, a.signals, &a.sigBusy, "signals", a.life.HandleSignals)
}

func (a *App) consumeCustomers(ctx context.Context) error {
	return a.consume(ctx, a.customers, &a.custBusy, "customers", a.life.HandleProfiles)
}
