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
	return a.consume(ctx, a.signals, &a.sigBusy, "signals", a.handleSignals)
}

func (a *App) consumeCustomers(ctx context.Context) error {
	return a.consume(ctx, a.customers, &a.custBusy, "customers", a.handleProfiles)
}

// undecodable counts m, which cannot be decoded, and returns its dead
// letter: bad bytes from a producer must not block the partition.
func (a *App) undecodable(ctx context.Context, m *kafka.Message, topic, reason string) kafka.Message {
	a.met.badRecords.Add(ctx, 1, metric.WithAttributes(attribute.String("topic", topic)))
	a.base.Log.WarnContext(ctx, "undecodable record sent to the DLQ", "topic", topic, "partition", m.Partition, "offset", m.Offset)
	return kafkax.DeadLetter(m, "", "decode", reason)
}

type signalRecord struct {
	sig *cwv1.RiskSignal
	tp  string
}

// handleSignals is one batch: one round trip loads every customer the batch
// touches, the engine merges in memory, one MULTI writes alerts, indexes,
// deadlines and the audience streams. It returns the dead letters of the
// records it cannot decode.
func (a *App) handleSignals(ctx context.Context, msgs []kafka.Message) ([]kafka.Message, error) {
	var recs []signalRecord
	var customers []string
	var bad []kafka.Message
	ids := map[string][]string{}
	for i := range msgs {
		s := &cwv1.RiskSignal{}
		if err := proto.Unmarshal(msgs[i].Value, s); err != nil {
			bad = append(bad, a.undecodable(ctx, &msgs[i], "signals", "decode: "+err.Error()))
			continue
		} else if s.GetCustomerId() == "" || s.GetSignalId() == "" {
			bad = append(bad, a.undecodable(ctx, &msgs[i], "signals", "decode: risk signal without customer or signal id"))
			continue
		}
		if _, ok := ids[s.CustomerId]; !ok {
			customers = append(customers, s.CustomerId)
		}
		ids[s.CustomerId] = append(ids[s.CustomerId], s.SignalId)
		recs = append(recs, signalRecord{s, kafkax.Header(msgs[i], "traceparent")})
	}
	if len(recs) == 0 {
		return bad, nil
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
		return nil, err
	}
	a.base.Log.Debug("signal batch applied", "changes", len(st.changes))
	a.recordChanges(ctx, st)
	return bad, nil
}

// handleProfiles stores profiles and moves open alerts with a changed
// manager or branch (REASSIGNED). Within a batch the last profile of a
// customer wins, as on the compacted topic.
func (a *App) handleProfiles(ctx context.Context, msgs []kafka.Message) ([]kafka.Message, error) {
	latest := map[string]*cwv1.CustomerProfile{}
	var customers []string
	var bad []kafka.Message
	for i := range msgs {
		p := &cwv1.CustomerProfile{}
		if len(msgs[i].Value) == 0 {
			continue // a tombstone on the compacted topic
		}
		if err := proto.Unmarshal(msgs[i].Value, p); err != nil {
			bad = append(bad, a.undecodable(ctx, &msgs[i], "customers", "decode: "+err.Error()))
			continue
		} else if p.GetCustomerId() == "" {
			bad = append(bad, a.undecodable(ctx, &msgs[i], "customers", "decode: customer profile without customer id"))
			continue
		}
		if _, ok := latest[p.CustomerId]; !ok {
			customers = append(customers, p.CustomerId)
		}
		latest[p.CustomerId] = p
	}
	if len(customers) == 0 {
		return bad, nil
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
		return nil, err
	}
	a.recordChanges(ctx, st)
	return bad, nil
}
