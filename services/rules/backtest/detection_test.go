package backtest

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

func alertAt(customer string, first time.Time, rules ...string) *cwv1.Alert {
	a := &cwv1.Alert{CustomerId: customer, FirstSignalAt: timestamppb.New(first)}
	for _, r := range rules {
		a.Reasons = append(a.Reasons, &cwv1.Explanation{RuleId: r})
	}
	return a
}

func day(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestScore checks every metric on a hand-counted case.
func TestScore(t *testing.T) {
	labels := []Label{
		{CustomerID: "A", Archetype: "sudden_drain", Churned: true, ChurnDate: day("2025-07-01")},
		{CustomerID: "B", Archetype: "sudden_drain", Churned: true, ChurnDate: day("2025-07-01")},
		{CustomerID: "C", Archetype: "gradual_decline", Churned: true, ChurnDate: day("2025-07-01")},
		{CustomerID: "D", Archetype: "gradual_decline", Churned: true, ChurnDate: day("2025-07-01")},
		{CustomerID: "E", Archetype: "stable"},
		{CustomerID: "F", Archetype: "stable"},
		{CustomerID: "G", Archetype: "stable"},
		{CustomerID: "H", Archetype: "stable"},
	}
	alerts := []*cwv1.Alert{
		alertAt("A", day("2025-05-22"), "outflow.large", "outflow.drain"),            // 40 days ahead
		alertAt("B", day("2025-06-21"), "outflow.drain"),                             // 10 days ahead
		alertAt("C", day("2025-07-01").Add(Grace-time.Second), "dormancy.declining"), // just inside the grace: −30 days
		alertAt("D", day("2025-07-01").Add(Grace), "dormancy.declining"),             // too late: alerted, not detected
		alertAt("E", day("2025-03-01"), "activity.drop"),                             // false alert
		alertAt("Z", day("2025-03-01"), "activity.drop"),                             // no label
	}
	start, end := day("2025-01-01"), day("2025-01-01").AddDate(0, 0, 365)
	d := Score(alerts, labels, start, end)

	if d.Customers != 8 || d.Churners != 4 || d.Stable != 4 || d.Unlabelled != 1 {
		t.Fatalf("population = %+v", d)
	}
	if d.Alerted != 5 || d.TruePositives != 4 || d.FalseAlerts != 1 || d.Detected != 3 {
		t.Fatalf("counts: alerted %d tp %d false %d detected %d", d.Alerted, d.TruePositives, d.FalseAlerts, d.Detected)
	}
	if d.Precision != 0.8 || d.Recall != 0.75 {
		t.Fatalf("precision %v recall %v", d.Precision, d.Recall)
	}
	// Leads 40, 10 and −30 (less a second): the median is the middle one.
	if d.MedianLeadDays != 10 {
		t.Fatalf("median lead = %v", d.MedianLeadDays)
	}
	months := 365 / 30.4375
	if math.Abs(d.Months-months) > 1e-9 || math.Abs(d.FalseAlertsPer1000StableMonth-1000.0/4/months) > 1e-9 {
		t.Fatalf("months %v, false rate %v", d.Months, d.FalseAlertsPer1000StableMonth)
	}
	want := map[string]RuleDetection{
		"activity.drop":      {Rule: "activity.drop", Alerts: 1, True: 0, False: 1, Precision: 0, FirstReason: 1},
		"dormancy.declining": {Rule: "dormancy.declining", Alerts: 2, True: 2, Precision: 1, FirstReason: 2},
		"outflow.drain":      {Rule: "outflow.drain", Alerts: 2, True: 2, Precision: 1, FirstReason: 1},
		"outflow.large":      {Rule: "outflow.large", Alerts: 1, True: 1, Precision: 1, FirstReason: 1},
	}
	if len(d.ByRule) != len(want) {
		t.Fatalf("by rule = %+v", d.ByRule)
	}
	for _, r := range d.ByRule {
		if r != want[r.Rule] {
			t.Errorf("rule %s = %+v, want %+v", r.Rule, r, want[r.Rule])
		}
	}
	arch := map[string]ArchetypeDetection{}
	for _, a := range d.ByArchetype {
		arch[a.Archetype] = a
	}
	if a := arch["sudden_drain"]; a.Customers != 2 || a.Detected != 2 || a.Recall != 1 || a.MedianLeadDays != 25 {
		t.Fatalf("sudden_drain = %+v", a)
	}
	if a := arch["gradual_decline"]; a.Alerted != 2 || a.Detected != 1 || a.Recall != 0.5 {
		t.Fatalf("gradual_decline = %+v", a)
	}
	if a := arch["stable"]; a.Churned || a.Customers != 4 || a.Alerted != 1 || a.Recall != 0 {
		t.Fatalf("stable = %+v", a)
	}
}

// TestScoreEmpty: no alerts and no labels give zeros, not NaN.
func TestScoreEmpty(t *testing.T) {
	d := Score(nil, nil, time.Time{}, time.Time{})
	if d.Precision != 0 || d.Recall != 0 || d.MedianLeadDays != 0 || d.FalseAlertsPer1000StableMonth != 0 || math.IsNaN(d.Months) {
		t.Fatalf("%+v", d)
	}
}

func TestMedianEven(t *testing.T) {
	if m := median([]float64{40, 10, 20, 30}); m != 25 {
		t.Fatalf("median = %v", m)
	}
}

func TestReadLabels(t *testing.T) {
	ls, err := ReadLabels(strings.NewReader(`{"customerId":"C1","archetype":"stable","churned":false}

{"customerId":"C2","archetype":"sudden_drain","churned":true,"churnDate":"2025-07-15"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Churned || !ls[1].Churned || !ls[1].ChurnDate.Equal(day("2025-07-15")) {
		t.Fatalf("labels = %+v", ls)
	}
	for _, bad := range []string{
		`{"customerId":"C2","archetype":"sudden_drain","churned":true}`,
		"{\"customerId\":\"C1\",\"churned\":false}\n{not json",
		`{"archetype":"stable"}`,
	} {
		if _, err := ReadLabels(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("ReadLabels(%q) = %v, want an error naming the line", bad, err)
		}
	}
}
