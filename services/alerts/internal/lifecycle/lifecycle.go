// Package lifecycle turns what happens to a customer into committed alert
// changes: risk signals and profiles from Kafka (merge, route, reassign),
// and the wall clock (SLA escalation, snooze end). The decisions are the
// pure alerting engine's; each step is one store transaction.
package lifecycle

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// Service applies signals, profiles and deadlines.
type Service struct {
	store  *store.Store
	engine *alerting.Engine
	now    func() time.Time
	log    *slog.Logger
	met    metrics
}

type metrics struct {
	escalations metric.Int64Counter
	ackTime     metric.Float64Histogram
	changes     metric.Int64Counter
	badRecords  metric.Int64Counter
}

// New makes the service; now is the wall clock for alert times and SLAs.
func New(st *store.Store, engine *alerting.Engine, now func() time.Time, log *slog.Logger, m metric.Meter) (*Service, error) {
	s := &Service{store: st, engine: engine, now: now, log: log}
	var err error
	if s.met.escalations, err = m.Int64Counter("churnwatch.alert.escalations", metric.WithDescription("alerts escalated after a missed acknowledgement SLA")); err != nil {
		return nil, err
	}
	if s.met.ackTime, err = m.Float64Histogram("churnwatch.alert.ack.time", metric.WithUnit("s"), metric.WithDescription("time from alert creation to acknowledgement"),
		metric.WithExplicitBucketBoundaries(60, 300, 900, 3600, 4*3600, 8*3600, 24*3600, 72*3600, 7*24*3600)); err != nil {
		return nil, err
	}
	if s.met.changes, err = m.Int64Counter("churnwatch.alert.changes", metric.WithDescription("alert changes by kind")); err != nil {
		return nil, err
	}
	if s.met.badRecords, err = m.Int64Counter("churnwatch.alert.bad.records", metric.WithDescription("undecodable signal or profile records (sent to the DLQ)")); err != nil {
		return nil, err
	}
	return s, nil
}

// Engine is the alerting engine the service decides with.
func (s *Service) Engine() *alerting.Engine { return s.engine }

// Now is the service's wall clock.
func (s *Service) Now() time.Time { return s.now() }

func lower(v, prefix string) string { return strings.ToLower(strings.TrimPrefix(v, prefix)) }

// undecodable counts m, which cannot be decoded, and returns its dead
// letter: bad bytes from a producer must not block the partition.
func (s *Service) undecodable(ctx context.Context, m *kafka.Message, topic, reason string) kafka.Message {
	s.met.badRecords.Add(ctx, 1, metric.WithAttributes(attribute.String("topic", topic)))
	s.log.WarnContext(ctx, "undecodable record sent to the DLQ", "topic", topic, "partition", m.Partition, "offset", m.Offset)
	return kafkax.DeadLetter(m, "", "decode", reason)
}

type signalRecord struct {
	sig *cwv1.RiskSignal
	tp  string
}

// HandleSignals is one batch: one round trip loads every customer the batch
// touches, the engine merges in memory, one MULTI writes alerts, indexes,
// deadlines and the audience streams. It returns the dead letters of the
// records it cannot decode.
func (s *Service) HandleSignals(ctx context.Context, msgs []kafka.Message) ([]kafka.Message, error) {
	var recs []signalRecord
	var customers []string
	var bad []kafka.Message
	ids := map[string][]string{}
	for i := range msgs {
		sig := &cwv1.RiskSignal{}
		if err := proto.Unmarshal(msgs[i].Value, sig); err != nil {
			bad = append(bad, s.undecodable(ctx, &msgs[i], "signals", "decode: "+err.Error()))
			continue
		} else if sig.GetCustomerId() == "" || sig.GetSignalId() == "" {
			bad = append(bad, s.undecodable(ctx, &msgs[i], "signals", "decode: risk signal without customer or signal id"))
			continue
		}
		if _, ok := ids[sig.CustomerId]; !ok {
			customers = append(customers, sig.CustomerId)
		}
		ids[sig.CustomerId] = append(ids[sig.CustomerId], sig.SignalId)
		recs = append(recs, signalRecord{sig, kafkax.Header(msgs[i], "traceparent")})
	}
	if len(recs) == 0 {
		return bad, nil
	}
	s.log.Debug("signal batch", "records", len(recs), "customers", len(customers))
	st, err := s.store.Transact(ctx, customers, ids, func(state map[string]*alerting.Customer) (*store.Step, error) {
		st := &store.Step{Seen: map[string][]string{}}
		now := s.now()
		for _, r := range recs {
			c := state[r.sig.CustomerId]
			if ch, ok := s.engine.Signal(c, r.sig, now); ok {
				st.Add(ch, r.tp)
				st.Seen[c.ID] = append(st.Seen[c.ID], r.sig.SignalId)
			}
		}
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Debug("signal batch applied", "changes", len(st.Changes))
	s.Record(ctx, st)
	return bad, nil
}

// HandleProfiles stores profiles and moves open alerts with a changed
// manager or branch (REASSIGNED). Within a batch the last profile of a
// customer wins, as on the compacted topic.
func (s *Service) HandleProfiles(ctx context.Context, msgs []kafka.Message) ([]kafka.Message, error) {
	latest := map[string]*cwv1.CustomerProfile{}
	var customers []string
	var bad []kafka.Message
	for i := range msgs {
		p := &cwv1.CustomerProfile{}
		if len(msgs[i].Value) == 0 {
			continue // a tombstone on the compacted topic
		}
		if err := proto.Unmarshal(msgs[i].Value, p); err != nil {
			bad = append(bad, s.undecodable(ctx, &msgs[i], "customers", "decode: "+err.Error()))
			continue
		} else if p.GetCustomerId() == "" {
			bad = append(bad, s.undecodable(ctx, &msgs[i], "customers", "decode: customer profile without customer id"))
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
	st, err := s.store.Transact(ctx, customers, nil, func(state map[string]*alerting.Customer) (*store.Step, error) {
		st := &store.Step{}
		now := s.now()
		for _, id := range customers {
			p, c := latest[id], state[id]
			if c.Profile != nil && proto.Equal(c.Profile, p) {
				continue
			}
			st.Profiles = append(st.Profiles, p)
			if c.Open != nil {
				if ch, ok := s.engine.Reassign(c.Open, p, now); ok {
					st.Add(ch, "")
				}
			}
		}
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	s.Record(ctx, st)
	return bad, nil
}

// Record counts a committed step's changes.
func (s *Service) Record(ctx context.Context, st *store.Step) {
	for _, sc := range st.Changes {
		ch := sc.Change
		s.met.changes.Add(ctx, 1, metric.WithAttributes(attribute.String("change", lower(ch.Kind.String(), "ALERT_CHANGE_"))))
		switch ch.Kind {
		case cwv1.AlertChange_ALERT_CHANGE_ESCALATED:
			s.met.escalations.Add(ctx, 1, metric.WithAttributes(attribute.String("tier", lower(ch.Alert.GetTier().String(), "TIER_"))))
		case cwv1.AlertChange_ALERT_CHANGE_ACKNOWLEDGED:
			if c := ch.Alert.GetCreatedAt(); c != nil {
				s.met.ackTime.Record(ctx, ch.At.Sub(c.AsTime()).Seconds())
			}
		}
	}
}
