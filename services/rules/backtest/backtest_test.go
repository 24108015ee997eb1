package backtest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// fixedNow is the wall clock of the handmade cases: after every event.
var fixedNow = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

func customers(cs ...*cwv1.IncomingCustomer) []Record[*cwv1.IncomingCustomer] {
	out := make([]Record[*cwv1.IncomingCustomer], len(cs))
	for i, c := range cs {
		out[i] = Record[*cwv1.IncomingCustomer]{Line: i + 1, Value: c}
	}
	return out
}

func events(es ...*cwv1.IncomingEvent) []Record[*cwv1.IncomingEvent] {
	out := make([]Record[*cwv1.IncomingEvent], len(es))
	for i, e := range es {
		out[i] = Record[*cwv1.IncomingEvent]{Line: i + 1, Value: e}
	}
	return out
}

func ev(id, customer, at, typ, amount string) *cwv1.IncomingEvent {
	e := &cwv1.IncomingEvent{EventId: id, CustomerId: customer, AccountId: customer + "-01", OccurredAt: at, Type: typ}
	if amount != "" {
		e.Amount, e.Currency = amount, "EUR"
	}
	return e
}

func outflow(id, customer, at, amount, balanceAfter string) *cwv1.IncomingEvent {
	e := ev(id, customer, at, "TRANSFER_OUT", amount)
	e.CounterpartyBank, e.BalanceAfter = "OTHERBANK", balanceAfter
	return e
}

func mass(id, manager string) *cwv1.IncomingCustomer {
	return &cwv1.IncomingCustomer{CustomerId: id, Tier: "MASS", ManagerId: manager, BranchId: "br-01", DisplayName: "X"}
}

// TestLargeOutflowRaisesExplainedAlert: an external outflow over the MASS
// amount raises one routed alert with the rule's explanation and the
// playbook's action; one under it raises nothing.
func TestLargeOutflowRaisesExplainedAlert(t *testing.T) {
	in := Input{
		Customers: customers(mass("C1", "rm-001"), mass("C2", "rm-001")),
		Events: events(
			outflow("t-over", "C1", "2025-03-01T09:30:00Z", "12500.00", "50000.00"),
			outflow("t-under", "C2", "2025-03-01T09:30:00Z", "9999.99", "50000.00"),
		),
	}
	res, err := Run(in, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Alerts) != 1 {
		t.Fatalf("alerts = %v, want one", res.Alerts)
	}
	a := res.Alerts[0]
	if a.CustomerId != "C1" || a.ManagerId != "rm-001" || a.Tier != cwv1.Tier_TIER_MASS || a.State != cwv1.AlertState_ALERT_STATE_OPEN {
		t.Fatalf("alert = %v", a)
	}
	if len(a.Reasons) != 1 {
		t.Fatalf("reasons = %v", a.Reasons)
	}
	r := a.Reasons[0]
	if r.RuleId != "outflow.large" || r.Observed != "12500.00" || r.Threshold != "10000.00" || r.Unit != "EUR" || !slices.Equal(r.EventIds, []string{"t-over"}) {
		t.Fatalf("explanation = %v", r)
	}
	if a.Severity != cwv1.Severity_SEVERITY_MEDIUM || !strings.Contains(a.RecommendedAction, "transfer") {
		t.Fatalf("severity %s, action %q", a.Severity, a.RecommendedAction)
	}
	at := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	if !a.CreatedAt.AsTime().Equal(at) || !a.FirstSignalAt.AsTime().Equal(at) || !a.AckDueAt.AsTime().Equal(at.Add(24*time.Hour)) {
		t.Fatalf("times: created %v first %v ack due %v", a.CreatedAt.AsTime(), a.FirstSignalAt.AsTime(), a.AckDueAt.AsTime())
	}
	if res.Counts.Accepted != 2 || res.Signals != 1 || res.SignalsByRule["outflow.large"] != 1 || res.ThresholdVersion != 1 {
		t.Fatalf("counts %+v signals %d %v", res.Counts, res.Signals, res.SignalsByRule)
	}
}

// TestBadRecordsAreCountedWithLines: undecodable and invalid records are
// rejected with their lines and reasons, repeated ids count as duplicates,
// and the good records still raise their alert.
func TestBadRecordsAreCountedWithLines(t *testing.T) {
	in := Input{
		Customers: []Record[*cwv1.IncomingCustomer]{
			{Line: 1, Value: mass("C1", "rm-001")},
			{Line: 2, Value: &cwv1.IncomingCustomer{CustomerId: "C9", Tier: "GOLD"}},
		},
		Events: []Record[*cwv1.IncomingEvent]{
			{Line: 1, Value: ev("e1", "C1", "2025-03-01T09:00:00Z", "DEPOSIT", "100.00")},
			{Line: 2, Value: &cwv1.IncomingEvent{}, Err: errors.New("not JSON")},
			{Line: 3, Value: ev("e3", "C1", "2025-03-01T10:00:00Z", "TELEPORT", "")},
			{Line: 4, Value: ev("e4", "C1", "2099-03-01T10:00:00Z", "LOGIN", "")},
			{Line: 5, Value: ev("e1", "C1", "2025-03-01T09:00:00Z", "DEPOSIT", "100.00")},
			{Line: 6, Value: outflow("e6", "C1", "2025-03-02T09:00:00Z", "12000.00", "100.00")},
		},
	}
	res, err := Run(in, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Counts
	if c.Customers != 2 || c.CustomersRejected != 1 || c.Events != 6 || c.Accepted != 2 || c.Duplicates != 1 || c.Rejected != 3 {
		t.Fatalf("counts = %+v", c)
	}
	var lines []int
	for _, r := range res.Rejected {
		lines = append(lines, r.Line)
		if r.Reason == "" {
			t.Fatalf("rejection without reason: %+v", r)
		}
	}
	if !slices.Equal(lines, []int{2, 2, 3, 4}) {
		t.Fatalf("rejected lines = %v (%+v)", lines, res.Rejected)
	}
	if res.Rejected[0].CustomerID != "C9" || !strings.Contains(res.Rejected[0].Reason, "tier") ||
		res.Rejected[2].EventID != "e3" || !strings.Contains(res.Rejected[3].Reason, "future") {
		t.Fatalf("rejections = %+v", res.Rejected)
	}
	if len(res.Alerts) != 1 || res.Alerts[0].Reasons[0].RuleId != "outflow.large" {
		t.Fatalf("alerts = %v", res.Alerts)
	}
}

// TestUnknownCustomerScoredAsMass: events of a customer without a profile
// are scored with MASS thresholds and the alert says so.
func TestUnknownCustomerScoredAsMass(t *testing.T) {
	res, err := Run(Input{Events: events(outflow("t1", "C7", "2025-03-01T09:30:00Z", "12500.00", "50000.00"))}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.UnknownCustomers != 1 || len(res.Alerts) != 1 || !res.Alerts[0].UnknownCustomer || res.Alerts[0].Reasons[0].Threshold != "10000.00" {
		t.Fatalf("counts %+v alerts %v", res.Counts, res.Alerts)
	}
}

// TestEndClock: by default the clock stops at the end of the last event's
// day, as close-day on that date; Until advances further and the absence
// rules fire at their deadlines.
func TestEndClock(t *testing.T) {
	var es []*cwv1.IncomingEvent
	start := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	for d := 0; d < 40; d++ {
		es = append(es, ev("d"+start.AddDate(0, 0, d).Format("0102"), "C1", start.AddDate(0, 0, d).Format(time.RFC3339), "CARD_PAYMENT", "12.00"))
	}
	in := Input{Customers: customers(mass("C1", "rm-001")), Events: events(es...)}
	last := start.AddDate(0, 0, 39)
	res, err := Run(in, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Alerts) != 0 || !res.End.Equal(time.Date(2025, 2, 10, 0, 0, 0, 0, time.UTC)) || !res.Start.Equal(start) {
		t.Fatalf("alerts %v, window %v … %v", res.Alerts, res.Start, res.End)
	}
	res, err = Run(in, Options{Now: fixedNow, Until: last.AddDate(0, 0, 100)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Alerts) != 1 {
		t.Fatalf("alerts = %v", res.Alerts)
	}
	a := res.Alerts[0]
	// activity.drop fires first (nothing in 30 days against ~20), then
	// dormancy.declining exactly 90 days after the last activity.
	rules := map[string]bool{}
	for _, r := range a.Reasons {
		rules[r.RuleId] = true
	}
	if !rules["activity.drop"] || !rules["dormancy.declining"] || !a.LastSignalAt.AsTime().Equal(last.AddDate(0, 0, 90)) || a.Stage != cwv1.Stage_STAGE_DECLINING {
		t.Fatalf("alert = %v", a)
	}
}

// TestThresholdsChangeTheOutcome: a lower MASS amount read from a file
// raises an alert the defaults do not, with the new threshold in its
// explanation.
func TestThresholdsChangeTheOutcome(t *testing.T) {
	in := Input{Customers: customers(mass("C1", "rm-001")), Events: events(outflow("t1", "C1", "2025-03-01T09:30:00Z", "6000.00", "50000.00"))}
	res, err := Run(in, Options{Now: fixedNow})
	if err != nil || len(res.Alerts) != 0 {
		t.Fatalf("defaults: %v %v", res.Alerts, err)
	}
	th, err := ReadThresholds(strings.NewReader("# what-if\noutflow.large.amount.MASS = 5000  # half\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err = Run(in, Options{Now: fixedNow, Thresholds: &th})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Alerts) != 1 || res.Alerts[0].Reasons[0].Threshold != "5000.00" {
		t.Fatalf("alerts = %v", res.Alerts)
	}
	bad := engine.DefaultThresholds()
	bad.Tiers[engine.TierMass].ChurnedDays = 10
	if _, err := Run(in, Options{Thresholds: &bad}); !errors.Is(err, ErrBadThresholds) {
		t.Fatalf("invalid thresholds: err = %v", err)
	}
}

func TestReadThresholds(t *testing.T) {
	th, err := ReadThresholds(strings.NewReader(`{"version":7,"settings":{"dormancy.declining.days":"60","dormancy.declining.days.BASIC":"75","complaints.count.HIGH_NET_WORTH":"3"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if th.Version != 7 || th.Tiers[engine.TierMass].DecliningDays != 60 || th.Tiers[engine.TierBasic].DecliningDays != 75 || th.Tiers[engine.TierHNW].ComplaintCount != 3 {
		t.Fatalf("thresholds = %+v", th)
	}
	for _, tc := range []struct{ in, want string }{
		{"dormancy.declining.days=60\nnot a setting\n", "line 2"},
		{"dormancy.sleepy.days=3", "line 1"},
		{"dormancy.declining.days=200", "must exceed"}, // declining after churned
		{`{"settings":{"outflow.large.amount":"-1"}}`, "outflow.large.amount"},
		{`{"settings":`, "JSON"},
	} {
		_, err := ReadThresholds(strings.NewReader(tc.in))
		if !errors.Is(err, ErrBadThresholds) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadThresholds(%q) = %v, want ErrBadThresholds mentioning %q", tc.in, err, tc.want)
		}
	}
}
