package kpi_test

import (
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
)

// bankCase is one testdata/*.yaml file: a small bank's history run through
// the engine as the scorer runs it, and the figures it must give.
type bankCase struct {
	Name      string                 `yaml:"name"`
	Now       time.Time              `yaml:"now"`
	Customers map[string]caseProfile `yaml:"customers"`
	Steps     []struct {
		At       time.Time    `yaml:"at"`
		Customer string       `yaml:"customer"`
		Type     string       `yaml:"type"`
		Amount   int64        `yaml:"amount"`
		Balance  *int64       `yaml:"balance"`
		Profile  *caseProfile `yaml:"profile"`
	} `yaml:"steps"`
	Alerts []struct {
		ID, Tier, Branch, Manager, Outcome string
		Rules                              []string
		// Raised is the first signal's event time (zero: as Created).
		Raised, Created, Due, Acknowledged, Escalated, Resolved time.Time
	} `yaml:"alerts"`
	Expect []struct {
		Month, Tier, Branch, Filter string
		Stages                      []int64
		NotChurnedAtStart           *int64   `yaml:"not_churned_at_start"`
		EnteredChurned              *int64   `yaml:"entered_churned"`
		ChurnRate                   *float64 `yaml:"churn_rate"`
		QuarterRetention            *float64 `yaml:"quarter_retention"`
		WinBacks                    *int64   `yaml:"win_backs"`
		Balance                     *int64   `yaml:"balance"`
		BalanceChange               *int64   `yaml:"balance_change"`
	} `yaml:"expect"`
	ExpectAlerts []struct {
		Month, Filter string
		Raised        *int64
		Acknowledged  *int64
		WithinSLA     *int64 `yaml:"within_sla"`
		Escalated     *int64
		Resolved      map[string]int64
		Precision     map[string]float64
		Reasons       map[string]int64
		Overdue       map[string]int64
		Response      []struct {
			Manager, Tier                                    string
			Acknowledged, Median, P90, SLA, Within, Breached int64
		}
	} `yaml:"expect_alerts"`
}

type caseProfile struct{ Tier, Branch string }

func loadCases(t *testing.T) map[string]bankCase {
	t.Helper()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	out := map[string]bankCase{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c bankCase
		if err := yaml.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = c
	}
	return out
}

// run plays the history as the scorer does: before each step every known
// customer is advanced to the step's time (the partition sweep), then the
// step's event is applied or its profile taken.
func run(t *testing.T, c bankCase) kpi.Deltas {
	t.Helper()
	e := engine.New(engine.Config{})
	th := engine.DefaultThresholds()
	states := map[string]*engine.State{}
	profiles := map[string]caseProfile{}
	for id, p := range c.Customers {
		profiles[id] = p
	}
	prof := func(id string) engine.Profile {
		tier, err := engine.ParseTier(profiles[id].Tier)
		if err != nil {
			t.Fatal(err)
		}
		return engine.Profile{Tier: tier, Known: true}
	}
	take := func(id string) kpi.Snapshot {
		return kpi.Take(states[id], profiles[id].Tier, profiles[id].Branch)
	}
	ds := kpi.Deltas{}
	ids := func() []string {
		var out []string
		for id := range states {
			out = append(out, id)
		}
		sort.Strings(out)
		return out
	}
	for i, st := range c.Steps {
		for _, id := range ids() {
			if id == st.Customer && st.Profile == nil {
				continue // Apply advances the customer itself
			}
			before := take(id)
			sigs := e.Advance(states[id], st.At, prof(id), &th)
			ds.Change(before, take(id), sigs, st.At)
		}
		switch {
		case st.Profile != nil:
			before := take(st.Customer)
			profiles[st.Customer] = *st.Profile
			ds.Move(before, take(st.Customer), states[st.Customer].Clock())
		case st.Customer != "":
			typ, err := engine.ParseEventType(st.Type)
			if err != nil {
				t.Fatal(err)
			}
			if states[st.Customer] == nil {
				states[st.Customer] = &engine.State{}
			}
			ev := engine.Event{ID: st.Customer + "-" + string(rune('a'+i)), CustomerID: st.Customer, AccountID: st.Customer + "-01",
				Time: st.At, Type: typ, Amount: st.Amount, Currency: "EUR"}
			if st.Balance != nil {
				ev.BalanceAfter, ev.HasBalance = *st.Balance, true
			}
			before := take(st.Customer)
			sigs, err := e.ApplyChecked(states[st.Customer], ev, prof(st.Customer), &th)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			ds.Change(before, take(st.Customer), sigs, st.At)
		}
	}
	return ds
}

// facts keeps the case's alerts as the store does: in every month they
// span, and the open ones apart.
func facts(c bankCase) (map[string][]kpi.AlertFact, []kpi.AlertFact) {
	by := map[string][]kpi.AlertFact{}
	var open []kpi.AlertFact
	sec := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.Unix()
	}
	for _, a := range c.Alerts {
		f := kpi.AlertFact{ID: a.ID, Version: 1, Tier: a.Tier, Branch: a.Branch, Manager: a.Manager, Rules: a.Rules,
			Raised: sec(a.Raised), Created: sec(a.Created), AckDue: sec(a.Due), Acknowledged: sec(a.Acknowledged), Escalated: sec(a.Escalated),
			Resolved: sec(a.Resolved), Outcome: a.Outcome}
		for _, m := range f.Months(c.Now) {
			by[m] = append(by[m], f)
		}
		if f.Open() {
			open = append(open, f)
		}
	}
	return by, open
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestFiguresOfAHandCheckedBank(t *testing.T) {
	for file, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			ds := run(t, c)
			byMonth, open := facts(c)
			compute := func(month, filter string) *cwv1.MonthKpis {
				t.Helper()
				resp, err := kpi.Compute(kpi.Input{Month: month, MonthsBack: 1, Branch: filter, Deltas: ds, Alerts: byMonth, Open: open,
					Now: c.Now, Clocks: []time.Time{c.Now}})
				if err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				return resp.Months[0]
			}
			for _, x := range c.Expect {
				mk := compute(x.Month, x.Filter)
				f, what := mk.GetTotal(), x.Month+" total"
				if x.Tier != "" {
					f, what = nil, x.Month+" tier "+x.Tier
					for _, tf := range mk.Tiers {
						if kpi.TierName(tf.Tier) == x.Tier {
							f = tf.Figures
						}
					}
				}
				if x.Branch != "" {
					f, what = nil, x.Month+" branch "+x.Branch
					for _, bf := range mk.Branches {
						if bf.BranchId == x.Branch {
							f = bf.Figures
						}
					}
				}
				if x.Filter != "" {
					what += " (only " + x.Filter + ")"
				}
				if f == nil {
					t.Errorf("%s: no figures", what)
					continue
				}
				s := f.GetCustomersByStage()
				if got := []int64{s.GetActive(), s.GetDeclining(), s.GetChurned(), s.GetWonBack()}; len(x.Stages) == 4 &&
					(got[0] != x.Stages[0] || got[1] != x.Stages[1] || got[2] != x.Stages[2] || got[3] != x.Stages[3]) {
					t.Errorf("%s: stages %v, want %v", what, got, x.Stages)
				}
				checkInt := func(name string, want *int64, got int64) {
					if want != nil && *want != got {
						t.Errorf("%s: %s %d, want %d", what, name, got, *want)
					}
				}
				checkFloat := func(name string, want *float64, got float64) {
					if want != nil && math.Abs(*want-got) > 1e-9 {
						t.Errorf("%s: %s %v, want %v", what, name, got, *want)
					}
				}
				checkInt("not churned at start", x.NotChurnedAtStart, f.NotChurnedAtStart)
				checkInt("entered churned", x.EnteredChurned, f.EnteredChurned)
				checkInt("win-backs", x.WinBacks, f.WinBacks)
				checkFloat("churn rate", x.ChurnRate, f.ChurnRate)
				if x.ChurnRate != nil && !near(f.RetentionRate, 1-f.ChurnRate) {
					t.Errorf("%s: retention %v is not 1 − churn %v", what, f.RetentionRate, f.ChurnRate)
				}
				checkFloat("quarter retention", x.QuarterRetention, f.QuarterRetentionRate)
				var held, change int64
				for _, b := range f.Balances {
					if b.Currency == "EUR" {
						held, change = b.HeldMinor, b.ChangeMinor
					}
				}
				checkInt("balance held", x.Balance, held)
				checkInt("balance change", x.BalanceChange, change)
			}
			for _, x := range c.ExpectAlerts {
				a := compute(x.Month, x.Filter).GetAlerts()
				what := x.Month + " alerts"
				if x.Filter != "" {
					what += " (only " + x.Filter + ")"
				}
				checkInt := func(name string, want *int64, got int64) {
					if want != nil && *want != got {
						t.Errorf("%s: %s %d, want %d", what, name, got, *want)
					}
				}
				checkInt("raised", x.Raised, a.Raised)
				checkInt("acknowledged", x.Acknowledged, a.Acknowledged)
				checkInt("acknowledged within SLA", x.WithinSLA, a.AcknowledgedWithinSla)
				checkInt("escalated", x.Escalated, a.Escalated)
				if x.Resolved != nil {
					got := map[string]int64{}
					for _, o := range a.ResolvedByOutcome {
						got[kpi.OutcomeName(o.Outcome)] = o.Alerts
					}
					checkCounts(t, what+": resolved", got, x.Resolved)
				}
				if x.Precision != nil {
					got := map[string]float64{}
					for _, p := range a.Precision {
						got[p.RuleId] = p.Precision
					}
					if len(got) != len(x.Precision) {
						t.Errorf("%s: precision %v, want %v", what, got, x.Precision)
					}
					for r, p := range x.Precision {
						if g, ok := got[r]; !ok || !near(g, p) {
							t.Errorf("%s: precision of %s %v, want %v", what, r, g, p)
						}
					}
				}
				if x.Reasons != nil {
					got := map[string]int64{}
					for i, r := range a.TopReasons {
						got[r.RuleId] = r.Alerts
						if i > 0 && r.Alerts > a.TopReasons[i-1].Alerts {
							t.Errorf("%s: top reasons not most frequent first: %v", what, a.TopReasons)
						}
					}
					checkCounts(t, what+": reasons", got, x.Reasons)
				}
				if x.Overdue != nil {
					got := map[string]int64{}
					for _, o := range a.Overdue {
						got[o.ManagerId] = o.Overdue
					}
					checkCounts(t, what+": overdue", got, x.Overdue)
				}
				for _, want := range x.Response {
					var got *cwv1.ResponseTime
					for _, r := range a.ResponseTimes {
						if r.ManagerId == want.Manager && kpi.TierName(r.Tier) == want.Tier {
							got = r
						}
					}
					if got == nil {
						t.Errorf("%s: no response time of %q %s: %v", what, want.Manager, want.Tier, a.ResponseTimes)
						continue
					}
					if got.Acknowledged != want.Acknowledged || got.MedianSeconds != want.Median || got.P90Seconds != want.P90 ||
						got.SlaSeconds != want.SLA || got.WithinSla != want.Within || got.Breached != want.Breached {
						t.Errorf("%s: response time of %q %s: %v, want %+v", what, want.Manager, want.Tier, got, want)
					}
				}
			}
		})
	}
}

func checkCounts(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	same := len(got) == len(want)
	for k, v := range got {
		same = same && want[k] == v
	}
	if !same {
		t.Errorf("%s %v, want %v", what, got, want)
	}
}

func TestRequestsRefusedWithTheReason(t *testing.T) {
	for _, c := range []struct {
		month string
		back  int
	}{{"2025-13", 1}, {"March", 1}, {"2025-03", 37}, {"2025-03", -1}} {
		if _, err := kpi.Compute(kpi.Input{Month: c.month, MonthsBack: c.back}); err == nil {
			t.Errorf("month %q, %d back: no error", c.month, c.back)
		}
	}
	if _, err := kpi.Compute(kpi.Input{Month: "2025-03", MonthsBack: 1, Deltas: kpi.Deltas{"2025-01": {"MASS|br-1|st.GONE": 1}}}); err == nil {
		t.Error("an unknown stored stage gave no error")
	}
}

func TestWindowIsTwelveMonthsByDefault(t *testing.T) {
	w, err := kpi.Window("2025-02", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 12 || w[0] != "2024-03" || w[11] != "2025-02" {
		t.Fatalf("window %v", w)
	}
}
