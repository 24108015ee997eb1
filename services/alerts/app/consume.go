package app

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
	"github.com/churnwatch/churnwatch/services/platform/status"
)

const batchLinger = 5 * time.Millisecond

// consumeLoop fetches batches, hands them to handle (retried until Redis
// answers: an outage stalls, never skips), then commits the offsets. A batch
// in flight when shutdown begins is finished and committed on a context
// that outlives the worker's.
func (a *App) consumeLoop(ctx context.Context, r *kafka.Reader, busy *status.Busy, what string, handle func(context.Context, []kafka.Message) error) error {
	for {
		msgs, err := kafkax.FetchBatch(ctx, r, a.cfg.BatchSize, batchLinger)
		if len(msgs) == 0 {
			if ctx.Err() != nil {
				return nil
			}
			a.base.Log.Warn("fetch failed", "consumer", what, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		busy.Begin()
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Common.ShutdownGrace)
		err = redisx.Retry(pctx, func(err error) { a.base.Log.Warn("batch failed; retrying", "consumer", what, "err", err) },
			func(ctx context.Context) error { return handle(ctx, msgs) })
		if err == nil {
			err = r.CommitMessages(pctx, msgs...)
		}
		cancel()
		busy.End()
		if err != nil {
			if ctx.Err() != nil {
				return nil // redelivered after restart; every step is idempotent
			}
			return err
		}
	}
}

func (a *App) consumeSignals(ctx context.Context) error {
	return a.consumeLoop(ctx, a.signals, &a.sigBusy, "signals", a.handleSignals)
}

func (a *App) consumeCustomers(ctx context.Context) error {
	return a.consumeLoop(ctx, a.customers, &a.custBusy, "customers", a.handleProfiles)
}

type signalRecord struct {
	sig *cwv1.RiskSignal
	tp  string
}

// handleSignals is one batch: one round trip loads every customer the batch
// touches, the engine merges in memory, one MULTI writes alerts, indexes,
// deadlines and the audience streams.
func (a *App) handleSignals(ctx context.Context, msgs []kafka.Message) error {
	var recs []signalRecord
	var customers []string
	ids := map[string][]string{}
	for i := range msgs {
		s := &cwv1.RiskSignal{}
		if err := proto.Unmarshal(msgs[i].Value, s); err != nil || s.GetCustomerId() == "" || s.GetSignalId() == "" {
			// Bad bytes from a producer must not block the partition.
			a.met.badRecords.Add(ctx, 1, metric.WithAttributes(attribute.String("topic", "signals")))
			a.base.Log.Warn("skipping undecodable signal", "partition", msgs[i].Partition, "offset", msgs[i].Offset)
			continue
		}
		if _, ok := ids[s.CustomerId]; !ok {
			customers = append(customers, s.CustomerId)
		}
		ids[s.CustomerId] = append(ids[s.CustomerId], s.SignalId)
		recs = append(recs, signalRecord{s, kafkax.Header(msgs[i], "traceparent")})
	}
	if len(recs) == 0 {
		return nil
	}
	a.base.Log.Debug("signal batch", "records", len(recs), "customers", len(customers))
	st, err := a.store.transact(ctx, customers, ids, func(state map[string]*alerting.Customer) (*staged, error) {
		st := &staged{seen: map[string][]string{}}
		now := a.now()
		for _, r := range recs {
			c := state[r.sig.CustomerId]
			if ch, ok := a.engine.Signal(c, r.sig, now); ok {
				st.add(ch, r.tp)
				st.seen[c.ID] = append(st.seen[c.ID], r.sig.SignalId)
			}
		}
		return st, nil
	})
	if err != nil {
		return err
	}
	a.base.Log.Debug("signal batch applied", "changes", len(st.changes))
	a.recordChanges(ctx, st)
	return nil
}

// handleProfiles stores profiles and moves open alerts with a changed
// manager or branch (REASSIGNED). Within a batch the last profile of a
// customer wins, as on the compacted topic.
func (a *App) handleProfiles(ctx context.Context, msgs []kafka.Message) error {
	latest := map[string]*cwv1.CustomerProfile{}
	var customers []string
	for i := range msgs {
		p := &cwv1.CustomerProfile{}
		if err := proto.Unmarshal(msgs[i].Value, p); err != nil || p.GetCustomerId() == "" {
			if len(msgs[i].Value) == 0 {
				continue // a tombstone on the compacted topic
			}
			a.met.badRecords.Add(ctx, 1, metric.WithAttributes(attribute.String("topic", "customers")))
			a.base.Log.Warn("skipping undecodable profile", "partition", msgs[i].Partition, "offset", msgs[i].Offset)
			continue
		}
		if _, ok := latest[p.CustomerId]; !ok {
			customers = append(customers, p.CustomerId)
		}
		latest[p.CustomerId] = p
	}
	if len(customers) == 0 {
		return nil
	}
	st, err := a.store.transact(ctx, customers, nil, func(state map[string]*alerting.Customer) (*staged, error) {
		st := &staged{}
		now := a.now()
		for _, id := range customers {
			p, c := latest[id], state[id]
			if c.Profile != nil && proto.Equal(c.Profile, p) {
				continue
			}
			st.profiles = append(st.profiles, p)
			if c.Open != nil {
				if ch, ok := a.engine.Reassign(c.Open, p, now); ok {
					st.add(ch, "")
				}
			}
		}
		return st, nil
	})
	if err != nil {
		return err
	}
	a.recordChanges(ctx, st)
	return nil
}
