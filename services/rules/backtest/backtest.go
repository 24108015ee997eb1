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
//
// It belongs to the rules module (the rules service's server-side
// back-test, internal/replay, runs it too) and imports nothing of churnctl:
// churnctl's simfeed turns a simulated bank into Input and labels, and
// churnctl's detection package holds the tests and benchmarks that need
// the simulator.
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
	customer   bool
}

// IsCustomer reports whether the refused record was a customer profile.
func (r Rejection) IsCustomer() bool { return r.customer || r.CustomerID != "" && r.EventID == "" }

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
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	h := NewHistory(now())
	for _, r := range in.Customers {
		h.AddCustomer(r)
	}
	for _, r := range in.Events {
		h.AddEvent(r)
	}
	return h.Replay(o)
}

// History is input that went through the ingester's checks and the rules
// service's conversion: customer profiles and scorable events, with the
// refused records. It does not depend on thresholds, so one History can be
// replayed under several threshold sets (a what-if), and a caller reading
// a file record by record holds only the compact scored form of each event.
type History struct {
	wall      time.Time
	profiles  map[string]*cwv1.CustomerProfile
	events    eventChunks
	seen      map[string]struct{}
	ids       map[string]string // customer, account and bank ids, held once
	counts    Counts
	rejected  []Rejection
	notScored int
}

// NewHistory returns an empty history whose events are validated against
// the wall clock now (nothing more than 5 minutes after it).
func NewHistory(now time.Time) *History {
	return &History{wall: now, profiles: map[string]*cwv1.CustomerProfile{}, seen: map[string]struct{}{}, ids: map[string]string{}}
}

// AddCustomer validates one customer record; a later record for the same
// customer replaces the earlier one. Customers apply to every event of the
// history, whenever they were added (customers are imported first).
func (h *History) AddCustomer(r Record[*cwv1.IncomingCustomer]) {
	h.counts.Customers++
	if r.Err != nil {
		h.rejectCustomer(r.Line, r.Value.GetCustomerId(), r.Err.Error())
		return
	}
	p, verr := validate.Customer(r.Value, h.wall)
	if verr != nil {
		h.rejectCustomer(r.Line, r.Value.GetCustomerId(), verr.Error())
		return
	}
	h.profiles[p.CustomerId] = p
}

// AddEvent does the ingester's part for one event record — decode errors
// and validation rejected with their line, a repeated event id counted as
// a duplicate — then the rules service's conversion.
func (h *History) AddEvent(r Record[*cwv1.IncomingEvent]) {
	h.counts.Events++
	if r.Err != nil {
		h.rejectEvent(r.Line, r.Value.GetEventId(), r.Err.Error())
		return
	}
	pb, verr := validate.Event(r.Value, h.wall)
	if verr != nil {
		h.rejectEvent(r.Line, r.Value.GetEventId(), verr.Error())
		return
	}
	if _, dup := h.seen[pb.EventId]; dup {
		h.counts.Duplicates++
		return
	}
	h.seen[pb.EventId] = struct{}{}
	h.counts.Accepted++
	ev, err := convert.Event(pb)
	if err != nil {
		h.notScored++ // the rules service's DLQ
		return
	}
	ev.CustomerID, ev.AccountID, ev.Currency, ev.CounterpartyBank = h.id(ev.CustomerID), h.id(ev.AccountID), h.id(ev.Currency), h.id(ev.CounterpartyBank)
	h.events.add(ev)
}

// eventChunks holds events in fixed-size chunks: appending never copies
// what is held (a history is millions of 130-byte events).
type eventChunks struct {
	chunks [][]engine.Event
	n      int
}

const chunkBits = 14

func (c *eventChunks) add(ev engine.Event) {
	if c.n&(1<<chunkBits-1) == 0 {
		c.chunks = append(c.chunks, make([]engine.Event, 0, 1<<chunkBits))
	}
	last := len(c.chunks) - 1
	c.chunks[last] = append(c.chunks[last], ev)
	c.n++
}

func (c *eventChunks) at(i int32) *engine.Event { return &c.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

// id returns one shared copy of a repeated identifier.
func (h *History) id(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := h.ids[s]; ok {
		return v
	}
	h.ids[s] = s
	return s
}

func (h *History) rejectCustomer(line int, id, reason string) {
	h.counts.CustomersRejected++
	h.rejected = append(h.rejected, Rejection{Line: line, CustomerID: id, Reason: reason, customer: true})
}

func (h *History) rejectEvent(line int, id, reason string) {
	h.counts.Rejected++
	h.rejected = append(h.rejected, Rejection{Line: line, EventID: id, Reason: reason})
}

// Replay runs the history through the engine and the alert merge under
// o's thresholds. It does not change h.
func (h *History) Replay(o Options) (*Result, error) {
	th := engine.DefaultThresholds()
	if o.Thresholds != nil {
		th = *o.Thresholds
	}
	if err := th.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadThresholds, err)
	}
	sla := o.SLA
	if sla == nil {
		sla = DefaultSLA()
	}
	pb := o.Playbook
	if pb == nil {
		pb = alerting.DefaultPlaybook()
	}
	res := &Result{SignalsByRule: map[string]int{}, ThresholdVersion: th.Version, Counts: h.counts}
	res.Counts.NotScored = h.notScored
	res.Rejected = slices.Clone(h.rejected)
	slices.SortStableFunc(res.Rejected, func(a, b Rejection) int {
		if a.customer != b.customer {
			if a.customer {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Line, b.Line)
	})
	evs := &h.events
	if evs.n == 0 {
		return res, nil
	}
	// One sort of small keys groups the events by customer and orders each
	// customer's events by time, ties in input order (sorting the events
	// themselves would move 130-byte structs around).
	custIdx := map[string]int32{}
	keys := make([]eventKey, evs.n)
	var last int64
	first := int64(math.MaxInt64)
	for i := range keys {
		ev := evs.at(int32(i))
		c, ok := custIdx[ev.CustomerID]
		if !ok {
			c = int32(len(custIdx))
			custIdx[ev.CustomerID] = c
		}
		t := ev.Time.UnixNano()
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
	var sigs []engine.Signal
	for lo := 0; lo < len(keys); {
		hi := lo + 1
		for hi < len(keys) && keys[hi].customer == keys[lo].customer {
			hi++
		}
		id := evs.at(keys[lo].pos).CustomerID
		prof := h.profiles[id]
		ep := engine.Profile{Tier: engine.TierMass}
		if prof != nil {
			ep.Tier, ep.Known = convert.Tier(prof.GetTier())
		} else {
			res.Counts.UnknownCustomers++
		}
		var st engine.State
		sigs = sigs[:0]
		for _, k := range keys[lo:hi] {
			ev := evs.at(k.pos)
			out, err := eng.ApplyChecked(&st, *ev, ep, &th)
			if err != nil {
				res.Counts.NotScored++
				continue
			}
			sigs = append(sigs, out...)
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

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// AddProfile records a customer profile the ingester already accepted
// (the rules service's events topic carries them): not validated again; a
// later profile of the same customer replaces the earlier one and the
// customer is counted once.
func (h *History) AddProfile(p *cwv1.CustomerProfile) {
	id := h.id(p.GetCustomerId())
	if _, ok := h.profiles[id]; !ok {
		h.counts.Customers++
	}
	h.profiles[id] = p
}

// HasProfile reports whether the history holds a profile of the customer.
func (h *History) HasProfile(id string) bool { _, ok := h.profiles[id]; return ok }

// Customers returns the ids of the customers with events, once each.
func (h *History) Customers() []string {
	seen := map[string]bool{}
	var out []string
	for i := 0; i < h.events.n; i++ {
		if id := h.events.at(int32(i)).CustomerID; !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// AddScored records an event the ingester already accepted and the rules
// service decoded (convert.DecodeRecord): counted as accepted, a repeated
// event id as a duplicate, as AddEvent does after validation.
func (h *History) AddScored(ev engine.Event) {
	h.counts.Events++
	if _, dup := h.seen[ev.ID]; dup {
		h.counts.Duplicates++
		return
	}
	h.seen[ev.ID] = struct{}{}
	h.counts.Accepted++
	ev.CustomerID, ev.AccountID, ev.Currency, ev.CounterpartyBank = h.id(ev.CustomerID), h.id(ev.AccountID), h.id(ev.Currency), h.id(ev.CounterpartyBank)
	h.events.add(ev)
}

// Len is the number of events held.
func (h *History) Len() int { return h.events.n }
