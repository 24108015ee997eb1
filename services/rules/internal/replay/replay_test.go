package replay

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// TestScore: outcomes match a back-test alert of the same customer within
// ±30 days; FALSE_ALARM lowers precision, a real outcome without a
// matching alert lowers recall; no match at all is 0, not NaN.
func TestScore(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	alert := func(c string, at time.Time) *cwv1.Alert {
		return &cwv1.Alert{CustomerId: c, CreatedAt: timestamppb.New(at)}
	}
	alerts := []*cwv1.Alert{alert("A", t0), alert("B", t0), alert("C", t0), alert("D", t0)}
	day := 24 * time.Hour
	outcomes := []Outcome{
		{Customer: "A", Raised: t0.Add(30 * day), Real: true},   // edge of the window: matches
		{Customer: "B", Raised: t0.Add(-2 * day), Real: false},  // false alarm
		{Customer: "C", Raised: t0.Add(31 * day), Real: true},   // too far: no match, a missed real risk
		{Customer: "E", Raised: t0, Real: true},                 // never alerted: missed
		{Customer: "B", Raised: t0.Add(-60 * day), Real: true},  // B's earlier alert, too far
		{Customer: "D", Raised: t0.Add(-30 * day), Real: false}, // edge: matches, false alarm
	}
	d := Score(alerts, outcomes)
	// matched: A (real), B (false), D (false) → precision 1/3; real
	// customers A, C, E, B → recall 1/4.
	if d.GetPrecision() != 1.0/3 || d.GetRecall() != 0.25 || d.GetLabelledCustomers() != 5 {
		t.Fatalf("score: %v", d)
	}
	if d := Score(alerts, []Outcome{{Customer: "Z", Raised: t0}}); d.GetPrecision() != 0 || d.GetRecall() != 0 || d.GetLabelledCustomers() != 1 {
		t.Fatalf("no match: %v", d)
	}
}
