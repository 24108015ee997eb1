// Package kpi owns the retention KPIs of SPEC §9: the facts the scoring of
// events produces (stage transitions and balance changes, as per-month
// deltas per tier and branch), the facts kept of every alert (from
// churnwatch.alerts.v1), the figures computed from both, and KpiService.
// It does no I/O itself: the store package keeps the facts in Redis.
//
// A customer's stock figures (customers by stage, balances held) are kept as
// net changes per month; the figure at a month's end is the sum of the
// changes of every month up to it. Flows (entering CHURNED, win-backs) are
// counted in the month they happen. Transitions are dated by event time:
// a dormancy transition by its deadline (the signal's time), an activity
// transition by the event's occurredAt.
package kpi

import (
	"fmt"
	"strings"
	"time"

	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// MonthLayout formats a month key.
const MonthLayout = "2006-01"

// Month is the month key of t (UTC), e.g. "2025-03".
func Month(t time.Time) string { return t.UTC().Format(MonthLayout) }

// Measures of a delta field (TIER|BRANCH|measure).
const (
	measureStage   = "st."     // + stage name: net change of customers in the stage
	measureChurned = "churned" // customers entering CHURNED
	measureWinback = "winback" // customers moving CHURNED → WON_BACK
	measureBalance = "bal."    // + currency: net change of the balance held (minor units)
)

const fieldSep = "|"

// Field is the delta field of a measure for the customers of tier and branch.
func Field(tier, branch, measure string) string {
	return tier + fieldSep + branch + fieldSep + measure
}

// ParseField splits a delta field.
func ParseField(f string) (tier, branch, measure string, err error) {
	parts := strings.SplitN(f, fieldSep, 3)
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("kpi field %q: want TIER|BRANCH|MEASURE", f)
	}
	return parts[0], parts[1], parts[2], nil
}

// Deltas are net changes per month: month → field → change.
type Deltas map[string]map[string]int64

// Add adds d to a field of a month.
func (ds Deltas) Add(month, field string, d int64) {
	if d == 0 {
		return
	}
	m := ds[month]
	if m == nil {
		m = map[string]int64{}
		ds[month] = m
	}
	m[field] += d
	if m[field] == 0 {
		delete(m, field)
		if len(m) == 0 {
			delete(ds, month)
		}
	}
}

// Merge adds every change of from.
func (ds Deltas) Merge(from Deltas) {
	for month, m := range from {
		for f, d := range m {
			ds.Add(month, f, d)
		}
	}
}

// Snapshot is what the KPIs need of a customer before or after a change.
type Snapshot struct {
	Known        bool // the customer has a state (had an event)
	Stage        engine.Stage
	Balance      int64
	Currency     string
	HasBalance   bool
	Tier, Branch string
}

// Take snapshots a customer's state, scored in tier and branch.
func Take(s *engine.State, tier, branch string) Snapshot {
	sn := Snapshot{Tier: tier, Branch: branch}
	if s == nil || s.Clock().IsZero() {
		return sn
	}
	sn.Known, sn.Stage = true, s.Stage()
	sn.Balance, sn.Currency, sn.HasBalance = s.Balance()
	return sn
}

// Change records the KPI facts of one engine call (an event applied at at,
// or the clock advanced to at) that took a customer from before to after
// and fired sigs: each stage transition in the month it happened (a
// signal's time when a signal says the stage changed, else at), and the
// change of the balance held in at's month.
func (ds Deltas) Change(before, after Snapshot, sigs []engine.Signal, at time.Time) {
	if !after.Known {
		return
	}
	prev := before.Stage
	if !before.Known {
		ds.Add(Month(at), Field(after.Tier, after.Branch, measureStage+engine.StageActive.String()), 1)
		prev = engine.StageActive
	}
	for _, sg := range sigs {
		if sg.Stage != prev {
			ds.transition(after, prev, sg.Stage, sg.Time)
			prev = sg.Stage
		}
	}
	if after.Stage != prev {
		ds.transition(after, prev, after.Stage, at)
	}
	switch {
	case before.Known && before.HasBalance && after.HasBalance && before.Currency == after.Currency:
		// The common case, one field: the change, if any.
		if d := after.Balance - before.Balance; d != 0 {
			ds.Add(Month(at), Field(after.Tier, after.Branch, measureBalance+after.Currency), d)
		}
	default:
		if before.Known && before.HasBalance {
			ds.Add(Month(at), Field(after.Tier, after.Branch, measureBalance+before.Currency), -before.Balance)
		}
		if after.HasBalance {
			ds.Add(Month(at), Field(after.Tier, after.Branch, measureBalance+after.Currency), after.Balance)
		}
	}
}

func (ds Deltas) transition(g Snapshot, from, to engine.Stage, at time.Time) {
	month := Month(at)
	ds.Add(month, Field(g.Tier, g.Branch, measureStage+from.String()), -1)
	ds.Add(month, Field(g.Tier, g.Branch, measureStage+to.String()), 1)
	if to == engine.StageChurned {
		ds.Add(month, Field(g.Tier, g.Branch, measureChurned), 1)
	}
	if from == engine.StageChurned && to == engine.StageWonBack {
		ds.Add(month, Field(g.Tier, g.Branch, measureWinback), 1)
	}
}

// Move records that a customer's tier or branch changed (a new customer
// record) at at: its stage and balance leave the old group and join the new
// one from at's month on. Flows already counted stay where they were.
func (ds Deltas) Move(from, to Snapshot, at time.Time) {
	if !from.Known || from.Tier == to.Tier && from.Branch == to.Branch {
		return
	}
	month := Month(at)
	ds.Add(month, Field(from.Tier, from.Branch, measureStage+from.Stage.String()), -1)
	ds.Add(month, Field(to.Tier, to.Branch, measureStage+from.Stage.String()), 1)
	if from.HasBalance {
		ds.Add(month, Field(from.Tier, from.Branch, measureBalance+from.Currency), -from.Balance)
		ds.Add(month, Field(to.Tier, to.Branch, measureBalance+from.Currency), from.Balance)
	}
}
