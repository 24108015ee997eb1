package kpi

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// MaxMonthsBack bounds GetKpisRequest.months_back.
const MaxMonthsBack = 36

// ErrRequest is returned for a request that cannot be answered as asked.
var ErrRequest = errors.New("invalid KPI request")

// ErrStored is returned for stored KPI facts this version cannot read.
var ErrStored = errors.New("stored KPI fact unreadable")

// Input is everything the figures of a request are computed from.
type Input struct {
	Month      string // YYYY-MM
	MonthsBack int    // 1 … MaxMonthsBack
	Branch     string // "" = every branch
	// Deltas are the customer facts: every month's net changes, summed over
	// the events partitions.
	Deltas Deltas
	// Alerts are the alert facts kept in each month asked for; Open the
	// facts of every alert not resolved.
	Alerts map[string][]AlertFact
	Open   []AlertFact
	// Now is the wall clock (alert SLAs run on it); Clocks the events
	// partition clocks (event time).
	Now    time.Time
	Clocks []time.Time
}

// ParseMonth parses YYYY-MM.
func ParseMonth(s string) (time.Time, error) {
	t, err := time.Parse(MonthLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: month %q: want YYYY-MM, e.g. 2025-03", ErrRequest, s)
	}
	return t, nil
}

// Window is the months of a request, oldest first.
func Window(month string, back int) ([]string, error) {
	t, err := ParseMonth(month)
	if err != nil {
		return nil, err
	}
	if back == 0 {
		back = 12
	}
	if back < 1 || back > MaxMonthsBack {
		return nil, fmt.Errorf("%w: months_back %d: want 1 … %d", ErrRequest, back, MaxMonthsBack)
	}
	out := make([]string, back)
	for i := range back {
		out[i] = Month(t.AddDate(0, i-back+1, 0))
	}
	return out, nil
}

// stock is a group's customers by stage and balances held.
type stock struct {
	stages [4]int64
	bal    map[string]int64
}

func (s stock) clone() stock {
	return stock{stages: s.stages, bal: maps.Clone(s.bal)}
}

func (s stock) notChurned() int64 {
	return s.stages[engine.StageActive] + s.stages[engine.StageDeclining] + s.stages[engine.StageWonBack]
}

type flow struct{ churned, winback int64 }

// group keys: the whole scope, one tier, one branch.
const (
	groupTotal  = "*"
	groupTier   = "t:"
	groupBranch = "b:"
)

var stageIndex = map[string]engine.Stage{}

func init() {
	for s := engine.StageActive; s <= engine.StageWonBack; s++ {
		stageIndex[s.String()] = s
	}
}

// ledger is the stocks at each month's end and the flows of each month,
// per group.
type ledger struct {
	end   map[string]map[string]stock // month → group → stock at its end
	flows map[string]map[string]flow  // month → group → flows in it
}

func buildLedger(ds Deltas, branch string, until time.Time) (*ledger, error) {
	type change struct {
		groups  [3]string
		measure string
		d       int64
	}
	first := until
	byMonth := map[string][]change{}
	for month, fields := range ds {
		mt, err := ParseMonth(month)
		if err != nil {
			return nil, fmt.Errorf("%w: month %q", ErrStored, month)
		}
		if mt.After(until) {
			continue
		}
		if mt.Before(first) {
			first = mt
		}
		for f, d := range fields {
			tier, br, measure, err := ParseField(f)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrStored, err)
			}
			if branch != "" && br != branch {
				continue
			}
			byMonth[month] = append(byMonth[month], change{groups: [3]string{groupTotal, groupTier + tier, groupBranch + br}, measure: measure, d: d})
		}
	}
	l := &ledger{end: map[string]map[string]stock{}, flows: map[string]map[string]flow{}}
	cum := map[string]stock{}
	for m := first; !m.After(until); m = m.AddDate(0, 1, 0) {
		month := Month(m)
		fl := map[string]flow{}
		for _, c := range byMonth[month] {
			for _, g := range c.groups {
				s := cum[g]
				switch {
				case strings.HasPrefix(c.measure, measureStage):
					st, ok := stageIndex[c.measure[len(measureStage):]]
					if !ok {
						return nil, fmt.Errorf("%w: measure %q: unknown stage", ErrStored, c.measure)
					}
					s.stages[st] += c.d
				case strings.HasPrefix(c.measure, measureBalance):
					if s.bal == nil {
						s.bal = map[string]int64{}
					}
					s.bal[c.measure[len(measureBalance):]] += c.d
				case c.measure == measureChurned:
					f := fl[g]
					f.churned += c.d
					fl[g] = f
				case c.measure == measureWinback:
					f := fl[g]
					f.winback += c.d
					fl[g] = f
				default:
					return nil, fmt.Errorf("%w: measure %q unknown", ErrStored, c.measure)
				}
				cum[g] = s
			}
		}
		end := make(map[string]stock, len(cum))
		for g, s := range cum {
			end[g] = s.clone()
		}
		l.end[month], l.flows[month] = end, fl
	}
	return l, nil
}

func prevMonth(month string) string {
	t, _ := ParseMonth(month)
	return Month(t.AddDate(0, -1, 0))
}

func quarterStart(month string) string {
	t, _ := ParseMonth(month)
	return Month(t.AddDate(0, -int(t.Month()-1)%3, 0))
}

func (l *ledger) figures(month, g string) *cwv1.Figures {
	end, before := l.end[month][g], l.end[prevMonth(month)][g]
	fl := l.flows[month][g]
	f := &cwv1.Figures{
		CustomersByStage: &cwv1.StageCounts{Active: end.stages[engine.StageActive], Declining: end.stages[engine.StageDeclining],
			Churned: end.stages[engine.StageChurned], WonBack: end.stages[engine.StageWonBack]},
		NotChurnedAtStart: before.notChurned(), EnteredChurned: fl.churned, WinBacks: fl.winback,
	}
	f.ChurnRate = ratio(f.EnteredChurned, f.NotChurnedAtStart)
	f.RetentionRate = 1 - f.ChurnRate
	qs := quarterStart(month)
	var entered int64
	for m := qs; ; m = nextMonth(m) {
		entered += l.flows[m][g].churned
		if m == month {
			break
		}
	}
	f.QuarterRetentionRate = 1 - ratio(entered, l.end[prevMonth(qs)][g].notChurned())
	for _, cur := range slices.Sorted(maps.Keys(unionKeys(end.bal, before.bal))) {
		f.Balances = append(f.Balances, &cwv1.BalanceHeld{Currency: cur, HeldMinor: end.bal[cur], ChangeMinor: end.bal[cur] - before.bal[cur]})
	}
	return f
}

func nextMonth(month string) string {
	t, _ := ParseMonth(month)
	return Month(t.AddDate(0, 1, 0))
}

func unionKeys(a, b map[string]int64) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func ratio(n, d int64) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// Compute answers a request from its input.
func Compute(in Input) (*cwv1.GetKpisResponse, error) {
	months, err := Window(in.Month, in.MonthsBack)
	if err != nil {
		return nil, err
	}
	last, _ := ParseMonth(months[len(months)-1])
	l, err := buildLedger(in.Deltas, in.Branch, last)
	if err != nil {
		return nil, err
	}
	var minClock, maxClock time.Time
	for i, c := range in.Clocks {
		if i == 0 || c.Before(minClock) {
			minClock = c
		}
		if c.After(maxClock) {
			maxClock = c
		}
	}
	out := &cwv1.GetKpisResponse{BranchId: in.Branch}
	if !maxClock.IsZero() {
		out.EventTime = timestamppb.New(maxClock)
	}
	for _, month := range months {
		mt, _ := ParseMonth(month)
		mk := &cwv1.MonthKpis{Month: month, Total: l.figures(month, groupTotal),
			Closed: len(in.Clocks) > 0 && !minClock.Before(mt.AddDate(0, 1, 0))}
		groups := slices.Sorted(maps.Keys(l.end[month]))
		for _, g := range groups {
			switch {
			case strings.HasPrefix(g, groupTier):
				mk.Tiers = append(mk.Tiers, &cwv1.TierFigures{Tier: TierOf(g[len(groupTier):]), Figures: l.figures(month, g)})
			case strings.HasPrefix(g, groupBranch):
				mk.Branches = append(mk.Branches, &cwv1.BranchFigures{BranchId: g[len(groupBranch):], Figures: l.figures(month, g)})
			}
		}
		sort.SliceStable(mk.Tiers, func(i, j int) bool { return mk.Tiers[i].Tier < mk.Tiers[j].Tier })
		mk.Alerts = alertFigures(in, month, mt)
		out.Months = append(out.Months, mk)
	}
	return out, nil
}

// alertFigures are the alert KPIs of one month.
func alertFigures(in Input, month string, mt time.Time) *cwv1.AlertFigures {
	from, to := mt.Unix(), mt.AddDate(0, 1, 0).Unix()
	at := min(in.Now.Unix(), to) // overdue "at the month's end", or now
	in_ := func(ts int64) bool { return ts != 0 && ts >= from && ts < to }
	facts := map[string]AlertFact{}
	add := func(f AlertFact) {
		if in.Branch != "" && f.Branch != in.Branch {
			return
		}
		if cur, ok := facts[f.ID]; !ok || f.Version > cur.Version {
			facts[f.ID] = f
		}
	}
	for _, f := range in.Alerts[month] {
		add(f)
	}
	for _, f := range in.Open {
		if min(f.Created, f.RaisedAt()) < to {
			add(f)
		}
	}
	a := &cwv1.AlertFigures{}
	outcomes := map[string]int64{}
	type rmTier struct{ manager, tier string }
	acks := map[rmTier][]int64{}
	sla := map[rmTier]int64{}
	within := map[rmTier]int64{}
	breached := map[rmTier]int64{}
	reasons := map[string]int64{}
	precision := map[string]*cwv1.RulePrecision{}
	overdue := map[string]*cwv1.OverdueAlerts{}
	for _, id := range slices.Sorted(maps.Keys(facts)) {
		f := facts[id]
		keys := []rmTier{{f.Manager, f.Tier}, {"", f.Tier}}
		if in_(f.RaisedAt()) {
			a.Raised++
			for _, r := range f.Rules {
				reasons[r]++
			}
		}
		if in_(f.Acknowledged) {
			a.Acknowledged++
			ok := f.AckDue == 0 || f.Acknowledged <= f.AckDue
			if ok {
				a.AcknowledgedWithinSla++
			}
			for _, k := range keys {
				acks[k] = append(acks[k], f.Acknowledged-f.Created)
				if f.AckDue != 0 {
					sla[k] = max(sla[k], f.AckDue-f.Created)
				}
				if ok {
					within[k]++
				} else {
					breached[k]++
				}
			}
		}
		if in_(f.Escalated) {
			a.Escalated++
		}
		if in_(f.Resolved) {
			a.Resolved++
			outcomes[f.Outcome]++
			for _, r := range f.Rules {
				p := precision[r]
				if p == nil {
					p = &cwv1.RulePrecision{RuleId: r}
					precision[r] = p
				}
				switch f.Outcome {
				case "RETAINED":
					p.Retained++
				case "CHURNED":
					p.Churned++
				case "UNREACHABLE":
					p.Unreachable++
				case "FALSE_ALARM":
					p.FalseAlarm++
				}
			}
		}
		unacked := f.Acknowledged == 0 || f.Acknowledged >= at
		unresolved := f.Resolved == 0 || f.Resolved >= at
		if f.Created < at && unacked && unresolved && f.AckDue != 0 && f.AckDue < at {
			for _, k := range keys {
				breached[k]++
				if f.AckDue-f.Created > sla[k] {
					sla[k] = f.AckDue - f.Created
				}
			}
			o := overdue[f.Manager]
			if o == nil {
				o = &cwv1.OverdueAlerts{ManagerId: f.Manager}
				overdue[f.Manager] = o
			}
			o.Overdue++
			if o.OldestDueAt == nil || f.AckDue < o.OldestDueAt.GetSeconds() {
				o.OldestDueAt = timestamppb.New(time.Unix(f.AckDue, 0))
			}
		}
	}
	for _, o := range slices.Sorted(maps.Keys(outcomes)) {
		a.ResolvedByOutcome = append(a.ResolvedByOutcome, &cwv1.OutcomeCount{Outcome: outcomeOf(o), Alerts: outcomes[o]})
	}
	seen := map[rmTier]bool{}
	for _, m := range []map[rmTier]int64{breached, within} {
		for k := range m {
			seen[k] = true
		}
	}
	for k := range acks {
		seen[k] = true
	}
	for k := range seen {
		d := acks[k]
		slices.Sort(d)
		a.ResponseTimes = append(a.ResponseTimes, &cwv1.ResponseTime{ManagerId: k.manager, Tier: TierOf(k.tier),
			Acknowledged: int64(len(d)), MedianSeconds: rank(d, 0.5), P90Seconds: rank(d, 0.9), SlaSeconds: sla[k],
			WithinSla: within[k], Breached: breached[k]})
	}
	sort.Slice(a.ResponseTimes, func(i, j int) bool {
		x, y := a.ResponseTimes[i], a.ResponseTimes[j]
		if x.Breached != y.Breached {
			return x.Breached > y.Breached
		}
		if x.P90Seconds != y.P90Seconds {
			return x.P90Seconds > y.P90Seconds
		}
		if x.Tier != y.Tier {
			return x.Tier < y.Tier
		}
		return x.ManagerId < y.ManagerId
	})
	for _, r := range slices.Sorted(maps.Keys(precision)) {
		p := precision[r]
		p.Precision = ratio(p.Retained+p.Churned, p.Retained+p.Churned+p.FalseAlarm)
		a.Precision = append(a.Precision, p)
	}
	for r, n := range reasons {
		a.TopReasons = append(a.TopReasons, &cwv1.ReasonCount{RuleId: r, Alerts: n})
	}
	sort.Slice(a.TopReasons, func(i, j int) bool {
		x, y := a.TopReasons[i], a.TopReasons[j]
		return x.Alerts > y.Alerts || x.Alerts == y.Alerts && x.RuleId < y.RuleId
	})
	for _, o := range overdue {
		a.Overdue = append(a.Overdue, o)
	}
	sort.Slice(a.Overdue, func(i, j int) bool {
		x, y := a.Overdue[i], a.Overdue[j]
		if x.Overdue != y.Overdue {
			return x.Overdue > y.Overdue
		}
		return x.ManagerId < y.ManagerId
	})
	return a
}

// rank is the nearest-rank quantile q of sorted d (0 when empty).
func rank(d []int64, q float64) int64 {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(i, 0)]
}

func outcomeOf(name string) cwv1.Outcome {
	return cwv1.Outcome(cwv1.Outcome_value["OUTCOME_"+name])
}
