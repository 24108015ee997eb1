// Package backtest owns churnwatch's offline back-test: the live pipeline
// (ingester validation → rules engine → alert merge) replayed in memory,
// with no Kafka or Redis, so that ops can see which alerts a threshold set
// would have raised over a history before they put it in force, and so that
// detection quality can be measured against ground-truth churn labels.
//
// It reuses exactly the pieces the services run: validate.Customer and
// validate.Event (the ingester's checks), convert.Event and convert.Signal
// (the rules service's wire conversion), engine.Apply and engine.Advance
// (the scoring), and alerting.Engine.Signal (the alert service's merge). What
// it adds is only the ordering the live pipeline would have produced:
//
//   - events are sorted by occurredAt, ties in input order — what `churnctl
//     ingest` sends — so no event is late for its partition clock;
//   - each customer's events go through the engine in that order; the
//     engine's results do not depend on when the partition clock advanced
//     in between (see the engine's package documentation), so advancing
//     each customer straight to the next of its own events is equivalent;
//   - after the last event every customer is advanced to the end clock,
//     the end of the last event's UTC day by default: what `churnctl
//     close-day` on the last date does on every partition;
//   - signals reach the alert merge per customer in the order the rules
//     service emitted them, as they do on the customer-keyed signals topic.
//
// Nobody acknowledges or resolves alerts offline, so a customer has at most
// one alert: the one the live service would show at the end clock. The
// alert service stamps changes with the wall clock; offline the signal's
// event time stands in for it, so created_at is when the alert would have
// been raised and the output is deterministic.
package backtest

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// ErrBadThresholds is returned for a threshold set that does not validate.
var ErrBadThresholds = errors.New("bad thresholds")

// Record is one input record and where it came from.
type Record[T any] struct {
	// Line is the 1-based line of the record (CSV: the header is line 1;
	// JSON array: the record's position), as `churnctl ingest` reports it.
	Line  int
	Value T
	// Err is set when the record could not be decoded; it is rejected.
	Err error
}

// Input is what a back-test replays. Customers are applied before any
// event, as when `churnctl customers import` ran first.
type Input struct {
	Customers []Record[*cwv1.IncomingCustomer]
	Events    []Record[*cwv1.IncomingEvent]
}

// Options tune a back-test. The zero value replays with the SPEC defaults.
type Options struct {
	// Thresholds in force; nil = engine.DefaultThresholds().
	Thresholds *engine.Thresholds
	// HomeBank is the bank's own counterparty code; "" = "HOME".
	HomeBank string
	// Lateness is the engine's allowed lateness; 0 = 7 days.
	Lateness time.Duration
	// Until advances every customer at least to this event time after the
	// last event (absence rules fire up to it). The end clock is never
	// earlier than the end of the last event's UTC day.
	Until time.Time
	// Now is the wall clock for the ingester's "not in the future" check;
	// nil = time.Now.
	Now func() time.Time
	// Playbook for recommended actions; nil = the built-in one.
	Playbook *alerting.Playbook
	// SLA per tier for ack_due_at; nil = SPEC §5 (4 h, 24 h, 24 h, 72 h).
	SLA map[cwv1.Tier]time.Duration
}

// DefaultSLA is SPEC §5's time to acknowledge per tier.
func DefaultSLA() map[cwv1.Tier]time.Duration {
	return map[cwv1.Tier]time.Duration{
		cwv1.Tier_TIER_HIGH_NET_WORTH: 4 * time.Hour,
		cwv1.Tier_TIER_POTENTIAL:      24 * time.Hour,
		cwv1.Tier_TIER_MASS:           24 * time.Hour,
		cwv1.Tier_TIER_BASIC:          72 * time.Hour,
	}
}

// Rejection is one input record refused, with why.
type Rejection struct {
	Line       int    `json:"line"`
	EventID    string `json:"eventId,omitempty"`
	CustomerID string `json:"customerId,omitempty"`
	Reason     string `json:"reason"`
}

// Counts are what happened to the input records.
type Counts struct {
	Customers         int `json:"customers"`
	CustomersRejected int `json:"customersRejected"`
	Events            int `json:"events"`
	Accepted          int `json:"accepted"`
	Duplicates        int `json:"duplicates"`
	Rejected          int `json:"rejected"`
	// NotScored are accepted events the rules service would send to its
	// DLQ (or count as engine duplicates / too late); 0 for sorted input.
	NotScored int `json:"notScored"`
	// UnknownCustomers had events but no valid profile: scored as MASS and
	// flagged, as live.
	UnknownCustomers int `json:"unknownCustomers"`
}

// Result is what a back-test raised.
type Result struct {
	// Alerts holds one alert per alerted customer, ordered by first signal
	// time, then customer id.
	Alerts []*cwv1.Alert
	// Signals is the number of risk signals, SignalsByRule per rule.
	Signals       int
	SignalsByRule map[string]int
	Counts        Counts
	// Rejected lists the refused records (customers first, then events),
	// each in line order.
	Rejected []Rejection
	// Start is the first accepted event's time, End the end clock.
	Start, End       time.Time
	ThresholdVersion int64
}

// Run replays in through the pipeline's pure stages.
func Run(in Input, o Options) (*Result, error) {
	th := engine.DefaultThresholds()
	if o.Thresholds != nil {
		th = *o.Thresholds
	}
	if err := th.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadThresholds, err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	sla := o.SLA
	if sla == nil {
		sla = DefaultSLA()
	}
	pb := o.Playbook
	if pb == nil {
		pb = alerting.DefaultPlaybook()
	}
	res := &Result{SignalsByRule: map[string]int{}, ThresholdVersion: th.Version}
	wall := now()

	profiles := map[string]*cwv1.CustomerProfile{}
	for _, r := range in.Customers {
		res.Counts.Customers++
		if r.Err != nil {
			res.rejectCustomer(r.Line, r.Value.GetCustomerId(), r.Err.Error())
			continue
		}
		p, verr := validate.Customer(r.Value, wall)
		if verr != nil {
			res.rejectCustomer(r.Line, r.Value.GetCustomerId(), verr.Error())
			continue
		}
		profiles[p.CustomerId] = p // a later record replaces the earlier one
	}

	evs := res.acceptEvents(in.Events, wall)
	if len(evs) == 0 {
		return res, nil
	}
	// One sort of small keys groups the events by customer and orders each
	// customer's events by time, ties in input order (sorting the events
	// themselves would move 130-byte structs around).
	custIdx := map[string]int32{}
	keys := make([]eventKey, len(evs))
	var last int64
	first := int64(math.MaxInt64)
	for i := range evs {
		id := evs[i].CustomerID
		c, ok := custIdx[id]
		if !ok {
			c = int32(len(custIdx))
			custIdx[id] = c
		}
		t := evs[i].Time.UnixNano()
		keys[i] = eventKey{customer: c, at: t, pos: int32(i)}
		first, last = min(first, t), max(last, t)
	}
	slices.SortFunc(keys, func(a, b eventKey) int {
		if a.customer != b.customer {
			return cmp.Compare(a.customer, b.customer)
		}
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		return cmp.Compare(a.pos, b.pos)
	})
	res.Start = time.Unix(0, first).UTC()
	lt := time.Unix(0, last).UTC()
	res.End = time.Date(lt.Year(), lt.Month(), lt.Day()+1, 0, 0, 0, 0, time.UTC)
	if o.Until.After(res.End) {
		res.End = o.Until
	}

	eng := engine.New(engine.Config{HomeBank: o.HomeBank, Lateness: o.Lateness})
	al := &alerting.Engine{Playbook: pb, SLA: sla}
	for lo := 0; lo < len(keys); {
		hi := lo + 1
		for hi < len(keys) && keys[hi].customer == keys[lo].customer {
			hi++
		}
		id := evs[keys[lo].pos].CustomerID
		prof := profiles[id]
		ep := engine.Profile{Tier: engine.TierMass}
		if prof != nil {
			ep.Tier, ep.Known = convert.Tier(prof.GetTier())
		} else {
			res.Counts.UnknownCustomers++
		}
		var st engine.State
		var sigs []engine.Signal
		for _, k := range keys[lo:hi] {
			ev := evs[k.pos]
			if eng.Check(&st, ev) != nil {
				res.Counts.NotScored++
				continue
			}
			sigs = append(sigs, eng.Apply(&st, ev, ep, &th)...)
		}
		sigs = append(sigs, eng.Advance(&st, res.End, ep, &th)...)
		c := &alerting.Customer{ID: id, Profile: prof}
		for _, sg := range sigs {
			res.Signals++
			res.SignalsByRule[sg.Rule]++
			al.Signal(c, convert.Signal(sg, convert.Source{}), sg.Time)
		}
		if c.Open != nil {
			res.Alerts = append(res.Alerts, c.Open)
		}
		lo = hi
	}
	slices.SortFunc(res.Alerts, func(a, b *cwv1.Alert) int {
		if c := a.GetFirstSignalAt().AsTime().Compare(b.GetFirstSignalAt().AsTime()); c != 0 {
			return c
		}
		return compareStrings(a.GetCustomerId(), b.GetCustomerId())
	})
	return res, nil
}

type eventKey struct {
	customer int32
	pos      int32
	at       int64
}

// acceptEvents does the ingester's part: decode errors and validation
// rejected with their lines, repeated event ids counted as duplicates, then
// the rules service's conversion, in input order.
func (res *Result) acceptEvents(recs []Record[*cwv1.IncomingEvent], wall time.Time) []engine.Event {
	seen := make(map[string]struct{}, len(recs))
	out := make([]engine.Event, 0, len(recs))
	for _, r := range recs {
		res.Counts.Events++
		if r.Err != nil {
			res.rejectEvent(r.Line, r.Value.GetEventId(), r.Err.Error())
			continue
		}
		pb, verr := validate.Event(r.Value, wall)
		if verr != nil {
			res.rejectEvent(r.Line, r.Value.GetEventId(), verr.Error())
			continue
		}
		if _, dup := seen[pb.EventId]; dup {
			res.Counts.Duplicates++
			continue
		}
		seen[pb.EventId] = struct{}{}
		res.Counts.Accepted++
		ev, err := convert.Event(pb)
		if err != nil {
			res.Counts.NotScored++ // the rules service's DLQ
			continue
		}
		out = append(out, ev)
	}
	return out
}

func (res *Result) rejectCustomer(line int, id, reason string) {
	res.Counts.CustomersRejected++
	res.Rejected = append(res.Rejected, Rejection{Line: line, CustomerID: id, Reason: reason})
}

func (res *Result) rejectEvent(line int, id, reason string) {
	res.Counts.Rejected++
	res.Rejected = append(res.Rejected, Rejection{Line: line, EventID: id, Reason: reason})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
