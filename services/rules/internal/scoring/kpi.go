package scoring

import (
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
)

// kpiRun collects a partition run's KPI facts (package kpi): only of the
// records above the partition's stored KPI watermark, so that a record whose
// facts were counted is never counted again, whatever became of its state
// write (on Redis Cluster the counts land first, see store.Apply).
type kpiRun struct {
	from   int64 // stored watermark: records at or below it are counted
	to     int64 // highest offset counted in this run
	deltas kpi.Deltas
}

func kpiWatermark(applied map[int32]int64, p int32) int64 {
	if v, ok := applied[p]; ok {
		return v
	}
	return -1
}

// counts reports whether m's facts are to be counted, and moves the run's
// watermark to it.
func (k *kpiRun) counts(m *kafka.Message) bool {
	if m.Offset <= k.from {
		return false
	}
	k.to = max(k.to, m.Offset)
	return true
}

func (k *kpiRun) snapshot(m *kafka.Message, c *customer) kpi.Snapshot {
	if m.Offset <= k.from {
		return kpi.Snapshot{}
	}
	return kpi.Take(c.state, c.profile.Tier.String(), c.branch)
}

// change counts what an Apply (at the event time) or an Advance (at the
// clock) did to c.
func (k *kpiRun) change(m *kafka.Message, before kpi.Snapshot, c *customer, sigs []engine.Signal, at time.Time) {
	if k.counts(m) {
		k.deltas.Change(before, kpi.Take(c.state, c.profile.Tier.String(), c.branch), sigs, at)
	}
}

// move counts a new profile of c, dated by the customer's own clock.
func (k *kpiRun) move(m *kafka.Message, before kpi.Snapshot, c *customer) {
	if k.counts(m) {
		k.deltas.Move(before, kpi.Take(c.state, c.profile.Tier.String(), c.branch), c.state.Clock())
	}
}
