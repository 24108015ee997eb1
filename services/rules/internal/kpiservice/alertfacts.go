package kpiservice

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
)

// FactWriter is the part of the store alert facts are kept by.
type FactWriter interface {
	WriteAlertFacts(ctx context.Context, facts []kpi.AlertFact, at []time.Time) error
}

// AlertFacts turns batches of churnwatch.alerts.v1 records into alert
// facts: the Handle of a kafkax.BatchConsumer. Every record carries the
// whole alert at its version, and a fact never replaces a newer one, so a
// redelivered batch changes nothing.
type AlertFacts struct {
	Store FactWriter
	Topic string // for dead letters
}

// Handle decodes msgs; records that are not alert updates go to the DLQ
// with the reason.
func (h *AlertFacts) Handle(ctx context.Context, msgs []kafka.Message, _ struct{}) (kafkax.Landing, error) {
	var facts []kpi.AlertFact
	var at []time.Time
	var bad []kafka.Message
	for i := range msgs {
		m := &msgs[i]
		var u cwv1.AlertUpdate
		if err := proto.Unmarshal(m.Value, &u); err != nil {
			bad = append(bad, kafkax.DeadLetter(m, h.Topic, "decode", "decode: alert update: "+err.Error()))
			continue
		}
		f, err := kpi.FactOf(&u)
		if err != nil {
			bad = append(bad, kafkax.DeadLetter(m, h.Topic, "invalid", "invalid: "+err.Error()))
			continue
		}
		t := u.GetAt().AsTime()
		if u.GetAt() == nil {
			t = u.GetAlert().GetUpdatedAt().AsTime()
		}
		facts = append(facts, f)
		at = append(at, t)
	}
	return kafkax.Landing{DeadLetters: bad, Land: func(ctx context.Context) error {
		return h.Store.WriteAlertFacts(ctx, facts, at)
	}}, nil
}
