// Package replay is the rules service's back-test of a threshold change
// (docs/rules.md, "What the back-test is"): it reads the service's own
// events topic for a window of event time, replays it through the same
// engine and alert merge as `churnctl backtest --compare`
// (services/rules/backtest), once with the thresholds in force and once
// with the change, and scores both sides on the alert outcomes recorded so
// far.
//
// It reads the topic with plain per-partition readers from the offset of
// the window's start (ListOffsets by time), never with a consumer group,
// so the live consumers' positions are untouched.
package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// ErrNoHistory: the window holds no event to back-test on.
var ErrNoHistory = errors.New("no events to back-test on")

// ErrTooLarge: the window holds more events than MaxEvents.
var ErrTooLarge = errors.New("back-test window too large")

// MatchWindow is how far apart in time a recorded alert and a back-test
// alert of the same customer may have been raised and still be taken as
// the same warning (a signal stays live 30 days of event time).
const MatchWindow = 30 * 24 * time.Hour

// skew is how far an accepted event's time may lie after the record's
// timestamp: the ingester refuses events more than 5 minutes in the future
// of its clock, so a record stamped before window start − skew holds an
// event before the window.
const skew = 5 * time.Minute

// Backtester runs back-tests over the events topic.
type Backtester struct {
	Cluster kafkax.Cluster
	Topic   string
	Store   *store.Store
	// Window is the event time replayed, before the newest event
	// (CHURNWATCH_THRESHOLDS_BACKTEST_DAYS).
	Window time.Duration
	// MaxEvents caps the events held (CHURNWATCH_THRESHOLDS_BACKTEST_MAX_EVENTS).
	MaxEvents int
	// HomeBank and Lateness are the engine's, as live.
	HomeBank string
	Lateness time.Duration

	once sync.Once
	one  chan struct{} // one back-test at a time per instance: memory
}

// Run back-tests next against live over the window ending at the newest
// event the service has scored. ctx bounds it (the caller's timeout).
//
// One back-test runs at a time on an instance (each holds the window's
// events); another waits for it within its own ctx.
func (b *Backtester) Run(ctx context.Context, live, next *engine.Thresholds) (*cwv1.ThresholdBacktest, error) {
	b.once.Do(func() { b.one = make(chan struct{}, 1) })
	select {
	case b.one <- struct{}{}:
		defer func() { <-b.one }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	clocks, err := b.Store.Clocks(ctx)
	if err != nil {
		return nil, err
	}
	var newest int64
	for _, ms := range clocks {
		newest = max(newest, ms)
	}
	if newest == 0 {
		return nil, fmt.Errorf("%w: the rules service has scored no events yet; back-test on files instead (churnctl thresholds propose --customers F --events F)", ErrNoHistory)
	}
	end := time.UnixMilli(newest).UTC()
	from := end.Add(-b.Window)
	h, read, err := b.read(ctx, from)
	if err != nil {
		return nil, err
	}
	if h.Len() == 0 {
		return nil, fmt.Errorf("%w: the events topic holds no event from %s to %s (retention?); back-test on files instead (churnctl thresholds propose --customers F --events F)",
			ErrNoHistory, from.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	if err := b.profiles(ctx, h); err != nil {
		return nil, err
	}
	o := backtest.Options{HomeBank: b.HomeBank, Lateness: b.Lateness, Thresholds: live}
	before, err := h.Replay(o)
	if err != nil {
		return nil, err
	}
	o.Thresholds = next
	after, err := h.Replay(o)
	if err != nil {
		return nil, err
	}
	res := before
	bt := &cwv1.ThresholdBacktest{
		History: fmt.Sprintf("rules service: %s, %d records read, event time %s to %s (%s)", b.Topic, read,
			from.Format(time.RFC3339), end.Format(time.RFC3339), windowName(b.Window)),
		Customers: int64(res.Counts.Customers), EventsAccepted: int64(res.Counts.Accepted), BaselineVersion: live.Version,
		AlertsBefore: int32(len(before.Alerts)), AlertsAfter: int32(len(after.Alerts)), ComputedBy: "rules service",
		Start: timestamppb.New(res.Start), End: timestamppb.New(res.End), Rules: backtest.Compare(before, after),
	}
	outcomes, err := b.outcomes(ctx, res.Start, res.End)
	if err != nil {
		return nil, err
	}
	if len(outcomes) > 0 {
		bt.DetectionBefore, bt.DetectionAfter = Score(before.Alerts, outcomes), Score(after.Alerts, outcomes)
	}
	return bt, nil
}

func windowName(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// read collects the window's events and profiles, partition by partition.
func (b *Backtester) read(ctx context.Context, from time.Time) (*backtest.History, int, error) {
	cl := b.Cluster.Client(10 * time.Second)
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{b.Topic}})
	if err != nil {
		return nil, 0, fmt.Errorf("back-test: metadata of %s: %w", b.Topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name == b.Topic && t.Error == nil {
			for _, p := range t.Partitions {
				parts = append(parts, p.ID)
			}
		}
	}
	sort.Ints(parts)
	lasts, starts := make([]kafka.OffsetRequest, len(parts)), make([]kafka.OffsetRequest, len(parts))
	for i, p := range parts {
		lasts[i], starts[i] = kafka.LastOffsetOf(p), kafka.TimeOffsetOf(p, from.Add(-skew))
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{b.Topic: lasts}})
	if err != nil {
		return nil, 0, fmt.Errorf("back-test: end offsets of %s: %w", b.Topic, err)
	}
	so, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{b.Topic: starts}})
	if err != nil {
		return nil, 0, fmt.Errorf("back-test: offsets by time of %s: %w", b.Topic, err)
	}
	end, start := map[int]int64{}, map[int]int64{}
	for _, p := range lo.Topics[b.Topic] {
		end[p.Partition] = p.LastOffset
	}
	for _, p := range so.Topics[b.Topic] {
		start[p.Partition] = -1 // no record stamped at or after the time
		for off := range p.Offsets {
			if off >= 0 {
				start[p.Partition] = off
			}
		}
	}
	h := backtest.NewHistory(time.Now())
	read := 0
	for _, p := range parts {
		s, e := start[p], end[p]
		if s < 0 || s >= e {
			continue
		}
		n, err := b.readPartition(ctx, h, p, s, e, from)
		read += n
		if err != nil {
			return nil, read, err
		}
	}
	return h, read, nil
}

func (b *Backtester) readPartition(ctx context.Context, h *backtest.History, p int, start, end int64, from time.Time) (int, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: b.Cluster.Brokers, Dialer: b.Cluster.Dialer(), Topic: b.Topic, Partition: p,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 250 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return 0, err
	}
	n := 0
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return n, fmt.Errorf("back-test: read %s partition %d at offset ≥ %d: %w", b.Topic, p, start, err)
		}
		n++
		rec, derr := convert.DecodeRecord(m.Value)
		switch {
		case derr != nil || rec.Marker:
			// undecodable (the live consumer dead-lettered it) or a clock marker
		case rec.Profile != nil:
			h.AddProfile(rec.Profile)
		case !rec.Event.Time.Before(from):
			h.AddScored(rec.Event)
			if b.MaxEvents > 0 && h.Len() > b.MaxEvents {
				return n, fmt.Errorf("%w: more than %d events in the last %s of event time; lower CHURNWATCH_THRESHOLDS_BACKTEST_DAYS or raise CHURNWATCH_THRESHOLDS_BACKTEST_MAX_EVENTS",
					ErrTooLarge, b.MaxEvents, windowName(b.Window))
			}
		}
		if m.Offset >= end-1 {
			return n, nil
		}
	}
}

// profiles gives every customer without a profile in the window the one
// the rules service holds (accepted before the window).
func (b *Backtester) profiles(ctx context.Context, h *backtest.History) error {
	var missing []string
	for _, id := range h.Customers() {
		if !h.HasProfile(id) {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	got, err := b.Store.LoadCustomers(ctx, missing, func(string) bool { return true })
	if err != nil {
		return err
	}
	for _, id := range missing {
		c := got[id]
		if !c.Known {
			continue // scored as MASS and unknown, as live
		}
		tier, err := engine.ParseTier(c.Profile.Tier)
		if err != nil {
			continue
		}
		h.AddProfile(&cwv1.CustomerProfile{CustomerId: id, Tier: convert.TierProto(tier), BranchId: c.Profile.Branch, ManagerId: c.Profile.Manager})
	}
	return nil
}

// Outcome is one resolved alert's outcome as recorded: the customer, when
// its alert was raised and whether it was a real risk (RETAINED or
// CHURNED) or a FALSE_ALARM.
type Outcome struct {
	Customer string
	Raised   time.Time
	Real     bool
}

// outcomes reads the recorded outcomes of alerts raised from start −
// MatchWindow to end + MatchWindow (the alert facts of the KPIs).
func (b *Backtester) outcomes(ctx context.Context, start, end time.Time) ([]Outcome, error) {
	var months []string
	for m := time.Date(start.Year(), start.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-MatchWindow); !m.After(end.Add(MatchWindow)); m = m.AddDate(0, 1, 0) {
		if mm := kpi.Month(m); !slices.Contains(months, mm) {
			months = append(months, mm)
		}
	}
	byMonth, _, err := b.Store.AlertFacts(ctx, months)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Outcome
	for _, fs := range byMonth {
		for _, f := range fs {
			if seen[f.ID] || f.Customer == "" || f.Resolved == 0 {
				continue
			}
			seen[f.ID] = true
			var real bool
			switch f.Outcome {
			case "RETAINED", "CHURNED":
				real = true
			case "FALSE_ALARM":
			default:
				continue // UNREACHABLE says nothing about the warning
			}
			raised := time.Unix(f.RaisedAt(), 0).UTC()
			if raised.Before(start.Add(-MatchWindow)) || raised.After(end.Add(MatchWindow)) {
				continue
			}
			out = append(out, Outcome{Customer: f.Customer, Raised: raised, Real: real})
		}
	}
	return out, nil
}

// Score is detection quality of a back-test's alerts on recorded outcomes.
// A back-test alert matches an outcome of the same customer whose alert
// was raised within MatchWindow of the back-test alert's created_at.
//
//   - precision: matched back-test alerts with a real outcome (RETAINED or
//     CHURNED) among their matches / matched back-test alerts;
//   - recall: customers with a real outcome whose back-test alert matches
//     one of their real outcomes / customers with a real outcome;
//   - labelled_customers: customers with a recorded outcome.
//
// 0 where the denominator is 0. Lead time is not computed (0).
func Score(alerts []*cwv1.Alert, outcomes []Outcome) *cwv1.BacktestDetection {
	byCustomer := map[string][]Outcome{}
	for _, o := range outcomes {
		byCustomer[o.Customer] = append(byCustomer[o.Customer], o)
	}
	realCustomers := map[string]bool{}
	for _, o := range outcomes {
		if o.Real {
			realCustomers[o.Customer] = true
		}
	}
	var matched, matchedReal, detected int
	for _, a := range alerts {
		at := a.GetCreatedAt().AsTime()
		var any, real bool
		for _, o := range byCustomer[a.GetCustomerId()] {
			if d := o.Raised.Sub(at); d <= MatchWindow && d >= -MatchWindow {
				any = true
				real = real || o.Real
			}
		}
		if any {
			matched++
		}
		if real {
			matchedReal++
			detected++ // one back-test alert per customer
		}
	}
	return &cwv1.BacktestDetection{Precision: ratio(matchedReal, matched), Recall: ratio(detected, len(realCustomers)),
		LabelledCustomers: int32(len(byCustomer))}
}

func ratio(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}
