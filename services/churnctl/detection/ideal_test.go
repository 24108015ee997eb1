package detection

import (
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// TestIdealTaperDetectorCannotWarn45DaysAhead measures how early any
// activity test could warn on this simulator, to settle whether issue 15's
// 45-day median lead is a matter of a better rule.
//
// The engine's rules run with activity.drop off; in its place runs an
// ideal detector that knows what the engine cannot: the exact shapes the
// simulator gives a departing customer's activity (simulate.ChurnParams:
// activity × y² for gradual_decline and churned_won_back, 0.2 + 0.8·y² for
// salary_moved, y falling from 1 to 0 over a taper of 60–120 days). Each
// day it computes the generalized likelihood ratio of the customer's
// weekly counts of card payments, cash withdrawals, deposits and logins
// (two Poisson streams, the baseline their mean over the 13 weeks before
// the taper) under "a taper began n weeks ago, over L weeks" against "no
// change", maximized over n ≤ 18, L = 8…18 and both shapes — the
// Neyman-Pearson test for this family — and raises an alert the first day
// it reaches h. Its alert joins the engine's other alerts; the figures are
// Score's, as for the engine.
//
// What it shows (docs/detection.md, "How early could any activity test
// warn"): this detector warns 45 days ahead at the median only at an h
// where fewer than half of its alerts are true (precision 0.28–0.33), and
// at precision ≥ 0.95 it warns about as early as the engine's own
// activity.drop does. The 45 days are out of reach because the simulator's
// churners give no earlier sign that a stable customer's ordinary months
// do not also give, not for want of a better rule. If the simulator
// changes so that they do, this test fails (a 45-day median lead at
// precision ≥ 0.5) and the target should be tried again.
func TestIdealTaperDetectorCannotWarn45DaysAhead(t *testing.T) {
	hs := []float64{1, 2, 3, 4, 5, 7, 9, 11, 13, 15, 18, 21, 25, 30}
	for _, seed := range []int64{1, 2, 3} {
		bank, err := simulate.Generate(simulate.Config{Customers: idealCustomers, Months: 12, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		in, labels := simfeed.FromBank(bank)
		th := engine.DefaultThresholds()
		if err := th.Set("activity.drop.min_baseline", "1000"); err != nil { // no customer has it: the rule is off
			t.Fatal(err)
		}
		res, err := backtest.Run(in, backtest.Options{Thresholds: &th})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range res.Alerts {
			for _, r := range a.GetReasons() {
				if r.GetRuleId() == engine.RuleActivityDrop {
					t.Fatalf("seed %d: activity.drop fired with min_baseline 1000", seed)
				}
			}
		}
		start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		scores := idealTaperScores(bank, start)
		var best struct{ lead, precision float64 }
		for _, h := range hs {
			alerts := withIdealAlerts(res.Alerts, scores, h, start)
			d := backtest.Score(alerts, labels, res.Start, res.End)
			t.Logf("seed %d, h %2.0f: %d alerted, %d false: precision %.3f, recall of detectable %.3f, median lead of detectable %.1f days",
				seed, h, len(alerts), d.FalseAlerts, d.Precision, d.RecallDetectable, d.MedianLeadDaysDetectable)
			if d.MedianLeadDaysDetectable >= 45 && d.Precision >= 0.5 {
				t.Errorf("seed %d, h %.0f: the ideal detector warns %.1f days ahead at the median with precision %.3f: the simulator's churners now show an earlier sign; try issue 15's 45-day target again",
					seed, h, d.MedianLeadDaysDetectable, d.Precision)
			}
			if d.Precision >= 0.95 && d.RecallDetectable >= 0.95 && d.MedianLeadDaysDetectable > best.lead {
				best.lead, best.precision = d.MedianLeadDaysDetectable, d.Precision
			}
		}
		// Not a straw man: it does reach the precision and recall targets.
		if best.lead == 0 {
			t.Errorf("seed %d: the ideal detector never reaches precision 0.95 with recall 0.95: it is not the competent detector this test needs", seed)
		}
		t.Logf("seed %d: at precision ≥ 0.95 the ideal detector warns at most %.1f days ahead at the median (precision %.3f)", seed, best.lead, best.precision)
	}
}

// idealCustomers: about 9 s a seed here (the scores are the cost);
// docs/detection.md has the 2,000-customer figures.
const idealCustomers = targetCustomers

// Weekly bins and taper lengths of the ideal detector.
const (
	idealBaselineWeeks = 13
	idealMaxTaperWeeks = 18
	idealMinTaperWeeks = 8
)

// idealTaperScores is each customer's likelihood-ratio score per day since
// start (see TestIdealTaperDetectorCannotWarn45DaysAhead).
func idealTaperScores(bank *simulate.Bank, start time.Time) map[string][]float64 {
	days := 0
	type counts struct{ act, login []float64 }
	by := map[string]*counts{}
	for _, c := range bank.Customers {
		by[c.CustomerID] = &counts{}
	}
	dayOf := func(ts string) int {
		d, err := time.Parse("2006-01-02", ts[:10])
		if err != nil {
			panic(err)
		}
		return int(d.Sub(start).Hours() / 24)
	}
	if n := len(bank.Events); n > 0 {
		days = dayOf(bank.Events[n-1].OccurredAt) + 1
	}
	for _, c := range by {
		c.act, c.login = make([]float64, days), make([]float64, days)
	}
	for _, e := range bank.Events {
		c := by[e.CustomerID]
		switch e.Type {
		case "CARD_PAYMENT", "WITHDRAWAL", "DEPOSIT":
			c.act[dayOf(e.OccurredAt)]++
		case "LOGIN":
			c.login[dayOf(e.OccurredAt)]++
		}
	}
	// f[shape][L][i]: the activity factor of week i of a taper of L weeks.
	var f [2][idealMaxTaperWeeks + 1][idealMaxTaperWeeks]float64
	for shape := range 2 {
		for L := idealMinTaperWeeks; L <= idealMaxTaperWeeks; L++ {
			for i := range min(L, idealMaxTaperWeeks) {
				y := 1 - (float64(i)+0.5)/float64(L)
				v := y * y
				if shape == 1 {
					v = 0.2 + 0.8*y*y
				}
				f[shape][L][i] = max(v, 1e-3)
			}
		}
	}
	const bins = idealMaxTaperWeeks + idealBaselineWeeks
	out := make(map[string][]float64, len(by))
	for id, c := range by {
		score := make([]float64, days)
		pa, pl := prefix(c.act), prefix(c.login)
		for d := 7*(idealBaselineWeeks+1) - 1; d < days; d++ {
			// bin k holds the days d-7k-6 … d-7k; have of them are complete
			have := min(bins, (d+1)/7)
			var ba, bl [bins]float64
			for k := range have {
				lo, hi := d-7*k-6, d-7*k+1
				ba[k], bl[k] = pa[hi]-pa[lo], pl[hi]-pl[lo]
			}
			best := 0.0
			// the taper began n weeks ago, after a full baseline
			for n := 1; n <= idealMaxTaperWeeks && n+idealBaselineWeeks <= have; n++ {
				var la, ll float64
				for k := n; k < n+idealBaselineWeeks; k++ {
					la += ba[k]
					ll += bl[k]
				}
				la /= idealBaselineWeeks
				ll /= idealBaselineWeeks
				for L := max(idealMinTaperWeeks, n); L <= idealMaxTaperWeeks; L++ {
					for shape := range 2 {
						llr := 0.0
						for i := range n {
							v := f[shape][L][i]
							k := n - 1 - i
							llr += (ba[k]+bl[k])*math.Log(v) - (la+ll)*(v-1)
						}
						best = max(best, llr)
					}
				}
			}
			score[d] = best
		}
		out[id] = score
	}
	return out
}

func prefix(v []float64) []float64 {
	p := make([]float64, len(v)+1)
	for i, x := range v {
		p[i+1] = p[i] + x
	}
	return p
}

// withIdealAlerts is alerts with each customer's first signal moved to the
// day its ideal score first reaches h, where that is earlier, and an alert
// for customers the score alone flags.
func withIdealAlerts(alerts []*cwv1.Alert, scores map[string][]float64, h float64, start time.Time) []*cwv1.Alert {
	first := map[string]time.Time{}
	for _, a := range alerts {
		if t := a.GetFirstSignalAt().AsTime(); first[a.GetCustomerId()].IsZero() || t.Before(first[a.GetCustomerId()]) {
			first[a.GetCustomerId()] = t
		}
	}
	for id, s := range scores {
		if d := slices.IndexFunc(s, func(v float64) bool { return v >= h }); d >= 0 {
			at := start.AddDate(0, 0, d+1) // the end of that day
			if f, ok := first[id]; !ok || at.Before(f) {
				first[id] = at
			}
		}
	}
	out := make([]*cwv1.Alert, 0, len(first))
	for _, id := range slices.Sorted(maps.Keys(first)) {
		out = append(out, &cwv1.Alert{CustomerId: id, FirstSignalAt: timestamppb.New(first[id])})
	}
	return out
}
