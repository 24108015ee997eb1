package alerting_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func engine() *alerting.Engine {
	return &alerting.Engine{Playbook: alerting.DefaultPlaybook(), SLA: map[cwv1.Tier]time.Duration{
		cwv1.Tier_TIER_HIGH_NET_WORTH: 4 * time.Hour, cwv1.Tier_TIER_MASS: 24 * time.Hour,
	}}
}

func signal(id, rule string, score int32, observed string) *cwv1.RiskSignal {
	return &cwv1.RiskSignal{SignalId: id, CustomerId: "C1", RuleId: rule, Score: score,
		Stage: cwv1.Stage_STAGE_DECLINING, Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, EventTime: timestamppb.New(t0),
		Explanation: &cwv1.Explanation{RuleId: rule, Observed: observed, Threshold: "1"}}
}

func customer() *alerting.Customer {
	return &alerting.Customer{ID: "C1", Profile: &cwv1.CustomerProfile{CustomerId: "C1", Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, ManagerId: "rm-1", BranchId: "br-1"}}
}

func TestSignalCreatesThenMerges(t *testing.T) {
	e, c := engine(), customer()
	ch, ok := e.Signal(c, signal("s1", "outflow.large", 45, "120000"), t0)
	if !ok || ch.Kind != cwv1.AlertChange_ALERT_CHANGE_CREATED || !ch.Notify {
		t.Fatalf("first signal: ok=%v kind=%v notify=%v", ok, ch.Kind, ch.Notify)
	}
	a := ch.Alert
	if a.ManagerId != "rm-1" || a.BranchId != "br-1" || a.Tier != cwv1.Tier_TIER_HIGH_NET_WORTH || a.Severity != cwv1.Severity_SEVERITY_MEDIUM || a.Version != 1 {
		t.Fatalf("created alert: %v", a)
	}
	if got := a.AckDueAt.AsTime(); !got.Equal(t0.Add(4 * time.Hour)) {
		t.Fatalf("ack due %v, want HNW SLA 4h", got)
	}
	if !strings.Contains(a.RecommendedAction, "within 4 h") {
		t.Fatalf("HNW large outflow action: %q", a.RecommendedAction)
	}
	if cust, ok := alerting.CustomerOf(a.AlertId); !ok || cust != "C1" {
		t.Fatalf("CustomerOf(%q) = %q %v", a.AlertId, cust, ok)
	}

	// Same severity band, other rule: merged, not re-notified.
	ch, ok = e.Signal(c, signal("s2", "complaints", 50, "2"), t0.Add(time.Minute))
	if !ok || ch.Kind != cwv1.AlertChange_ALERT_CHANGE_UPDATED || ch.Notify {
		t.Fatalf("second signal: ok=%v kind=%v notify=%v", ok, ch.Kind, ch.Notify)
	}
	if ch.Alert.AlertId != a.AlertId || len(ch.Alert.Reasons) != 2 || ch.Alert.Version != 2 || ch.Alert.Score != 50 {
		t.Fatalf("merged alert: %v", ch.Alert)
	}
	// Same rule again, more severe: the explanation is replaced, severity rises, re-notify.
	ch, ok = e.Signal(c, signal("s3", "outflow.large", 85, "300000"), t0.Add(2*time.Minute))
	if !ok || ch.Kind != cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED || !ch.Notify {
		t.Fatalf("raising signal: ok=%v kind=%v notify=%v", ok, ch.Kind, ch.Notify)
	}
	if len(ch.Alert.Reasons) != 2 || ch.Alert.Reasons[0].Observed != "300000" || ch.Alert.Severity != cwv1.Severity_SEVERITY_CRITICAL {
		t.Fatalf("reasons merged by rule: %v", ch.Alert.Reasons)
	}
	if ch.Before.Severity != cwv1.Severity_SEVERITY_MEDIUM {
		t.Fatalf("before: %v", ch.Before.Severity)
	}
}

func TestDuplicateSignalChangesNothing(t *testing.T) {
	e, c := engine(), customer()
	s := signal("s1", "closure", 70, "1")
	if _, ok := e.Signal(c, s, t0); !ok {
		t.Fatal("first delivery ignored")
	}
	v := c.Open.Version
	if ch, ok := e.Signal(c, s, t0.Add(time.Hour)); ok {
		t.Fatalf("duplicate changed the alert: %v", ch.Kind)
	}
	if c.Open.Version != v {
		t.Fatalf("version moved %d → %d", v, c.Open.Version)
	}
}

func TestSnoozedStaysQuietUntilUnsnoozed(t *testing.T) {
	e, c := engine(), customer()
	ch, _ := e.Signal(c, signal("s1", "activity.drop", 30, "1"), t0)
	sn, err := e.Snooze(ch.Alert, t0.Add(48*time.Hour), "rm-1", "on holiday", t0)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Alert.AckDueAt != nil {
		t.Fatal("snooze should suspend the ack deadline")
	}
	c.Open = sn.Alert
	ch, ok := e.Signal(c, signal("s2", "outflow.drain", 90, "1"), t0.Add(time.Hour))
	if !ok || ch.Notify || ch.Alert.State != cwv1.AlertState_ALERT_STATE_SNOOZED || ch.Alert.Severity != cwv1.Severity_SEVERITY_CRITICAL {
		t.Fatalf("signal while snoozed: ok=%v notify=%v state=%v sev=%v", ok, ch.Notify, ch.Alert.State, ch.Alert.Severity)
	}
	if _, due := e.Unsnooze(ch.Alert, t0.Add(47*time.Hour)); due {
		t.Fatal("unsnoozed early")
	}
	un, due := e.Unsnooze(ch.Alert, t0.Add(48*time.Hour))
	if !due || !un.Notify || un.Alert.State != cwv1.AlertState_ALERT_STATE_OPEN || un.Kind != cwv1.AlertChange_ALERT_CHANGE_UNSNOOZED {
		t.Fatalf("unsnooze: due=%v %v", due, un.Alert)
	}
	if !un.Alert.AckDueAt.AsTime().Equal(t0.Add(52 * time.Hour)) {
		t.Fatalf("fresh ack deadline: %v", un.Alert.AckDueAt.AsTime())
	}
	if _, err := e.Snooze(un.Alert, t0, "rm-1", "", t0.Add(49*time.Hour)); !errors.Is(err, alerting.ErrSnoozeInPast) {
		t.Fatalf("snooze in the past: %v", err)
	}
}

func TestResolvedCustomerStartsNewAlert(t *testing.T) {
	e, c := engine(), customer()
	ch, _ := e.Signal(c, signal("s1", "closure", 70, "1"), t0)
	if _, err := e.Resolve(ch.Alert, cwv1.Outcome_OUTCOME_UNSPECIFIED, "rm-1", "", t0); !errors.Is(err, alerting.ErrOutcomeRequired) {
		t.Fatalf("resolve without outcome: %v", err)
	}
	r, err := e.Resolve(ch.Alert, cwv1.Outcome_OUTCOME_RETAINED, "rm-1", "kept with a better rate", t0.Add(time.Hour))
	if err != nil || r.Alert.State != cwv1.AlertState_ALERT_STATE_RESOLVED || r.Alert.Outcome != cwv1.Outcome_OUTCOME_RETAINED {
		t.Fatalf("resolve: %v %v", err, r.Alert)
	}
	if _, err := e.Resolve(r.Alert, cwv1.Outcome_OUTCOME_CHURNED, "rm-1", "", t0); !errors.Is(err, alerting.ErrResolved) {
		t.Fatalf("resolve twice: %v", err)
	}
	c.Open = r.Alert
	n, ok := e.Signal(c, signal("s2", "closure", 70, "1"), t0.Add(2*time.Hour))
	if !ok || n.Kind != cwv1.AlertChange_ALERT_CHANGE_CREATED || n.Alert.AlertId == ch.Alert.AlertId || n.Alert.Version != 1 {
		t.Fatalf("after resolve: %v %v", n.Kind, n.Alert)
	}
	// The first alert's signal, redelivered, does not reopen anything.
	if _, ok := e.Signal(c, signal("s1", "closure", 70, "1"), t0.Add(3*time.Hour)); ok {
		t.Fatal("old signal redelivered changed state")
	}
}

func TestEscalateAndAcknowledge(t *testing.T) {
	e, c := engine(), customer()
	ch, _ := e.Signal(c, signal("s1", "salary.stopped", 65, "50"), t0)
	if _, due := e.Escalate(ch.Alert, t0.Add(3*time.Hour)); due {
		t.Fatal("escalated before the SLA")
	}
	es, due := e.Escalate(ch.Alert, t0.Add(4*time.Hour))
	if !due || es.Alert.State != cwv1.AlertState_ALERT_STATE_ESCALATED || !es.Notify {
		t.Fatalf("escalate: %v %v", due, es.Alert)
	}
	if _, due := e.Escalate(es.Alert, t0.Add(5*time.Hour)); due {
		t.Fatal("escalated twice")
	}
	ack, changed, err := e.Acknowledge(es.Alert, "rm-1", "calling", t0.Add(5*time.Hour))
	if err != nil || !changed || ack.Alert.State != cwv1.AlertState_ALERT_STATE_ACKNOWLEDGED || ack.Alert.AcknowledgedAt == nil {
		t.Fatalf("ack: %v %v %v", err, changed, ack.Alert)
	}
	if _, changed, err := e.Acknowledge(ack.Alert, "rm-1", "", t0); err != nil || changed {
		t.Fatalf("second ack: changed=%v err=%v", changed, err)
	}
}

func TestReassign(t *testing.T) {
	e := engine()
	c := &alerting.Customer{ID: "C9"}
	s := signal("s1", "dormancy.declining", 40, "91")
	s.UnknownCustomer = true
	ch, _ := e.Signal(c, s, t0)
	if !ch.Alert.UnknownCustomer || ch.Alert.ManagerId != "" || ch.Alert.BranchId != "" {
		t.Fatalf("unknown customer alert: %v", ch.Alert)
	}
	p := &cwv1.CustomerProfile{CustomerId: "C9", ManagerId: "rm-2", BranchId: "br-2", Tier: cwv1.Tier_TIER_POTENTIAL}
	r, ok := e.Reassign(ch.Alert, p, t0.Add(time.Minute))
	// Routing follows the profile; tier and the unknown mark stay as the
	// signal judged them until the next signal.
	if !ok || r.Alert.ManagerId != "rm-2" || r.Alert.Tier != cwv1.Tier_TIER_HIGH_NET_WORTH || !r.Alert.UnknownCustomer || r.Before.ManagerId != "" {
		t.Fatalf("reassign: %v", r.Alert)
	}
	s2 := signal("s2", "dormancy.declining", 45, "95")
	s2.Tier = cwv1.Tier_TIER_POTENTIAL
	c.Open = r.Alert
	m, ok := e.Signal(c, s2, t0.Add(2*time.Minute))
	if !ok || m.Alert.Tier != cwv1.Tier_TIER_POTENTIAL || m.Alert.UnknownCustomer {
		t.Fatalf("next signal, judged as POTENTIAL with a profile: %v", m.Alert)
	}
	if _, ok := e.Reassign(r.Alert, p, t0); ok {
		t.Fatal("reassign to the same manager changed the alert")
	}
}

func TestSeverityBands(t *testing.T) {
	for score, want := range map[int32]cwv1.Severity{0: 1, 39: 1, 40: 2, 59: 2, 60: 3, 79: 3, 80: 4, 100: 4} {
		if got := alerting.SeverityOf(score); got != want {
			t.Errorf("SeverityOf(%d) = %v, want %v", score, got, want)
		}
	}
}

func TestPlaybook(t *testing.T) {
	p := alerting.DefaultPlaybook()
	for _, tc := range []struct {
		stage cwv1.Stage
		tier  cwv1.Tier
		rules []string
		want  string
	}{
		{cwv1.Stage_STAGE_DECLINING, cwv1.Tier_TIER_MASS, []string{"dormancy.declining"}, "care message"},
		{cwv1.Stage_STAGE_CHURNED, cwv1.Tier_TIER_MASS, []string{"dormancy.churned"}, "win-back offer"},
		{cwv1.Stage_STAGE_ACTIVE, cwv1.Tier_TIER_MASS, []string{"complaints"}, "Resolve the complaint first"},
		{cwv1.Stage_STAGE_ACTIVE, cwv1.Tier_TIER_HIGH_NET_WORTH, []string{"outflow.large"}, "RM call within 4 h"},
		{cwv1.Stage_STAGE_ACTIVE, cwv1.Tier_TIER_MASS, []string{"closure"}, "exit interview"},
		{cwv1.Stage_STAGE_ACTIVE, cwv1.Tier_TIER_BASIC, []string{"salary.stopped"}, "payroll"},
		{cwv1.Stage_STAGE_CHURNED, cwv1.Tier_TIER_BASIC, []string{"some.new.rule"}, "win-back offer"},
	} {
		if got := p.Action(tc.stage, tc.tier, tc.rules); !strings.Contains(got, tc.want) {
			t.Errorf("Action(%v,%v,%v) = %q, want it to contain %q", tc.stage, tc.tier, tc.rules, got, tc.want)
		}
	}
	if got := p.Action(cwv1.Stage_STAGE_ACTIVE, cwv1.Tier_TIER_MASS, []string{"complaints", "closure", "complaints"}); strings.Count(got, ";") != 1 {
		t.Errorf("two rules, two actions: %q", got)
	}

	custom, err := alerting.ParsePlaybook([]byte("plays:\n  - rule: complaints\n    tier: MASS\n    action: Call from the branch manager\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := custom.Action(cwv1.Stage_STAGE_ACTIVE, cwv1.Tier_TIER_MASS, []string{"complaints"}); got != "Call from the branch manager" {
		t.Errorf("override: %q", got)
	}
	if got := custom.Action(cwv1.Stage_STAGE_ACTIVE, cwv1.Tier_TIER_BASIC, []string{"complaints"}); !strings.Contains(got, "complaint first") {
		t.Errorf("defaults kept: %q", got)
	}
	if _, err := alerting.ParsePlaybook([]byte(`{"plays":[{"tier":"GOLD","action":"x"}]}`)); err == nil {
		t.Error("unknown tier accepted")
	}
	if _, err := alerting.ParsePlaybook([]byte("plays:\n  - rule: closure\n    acton: typo\n")); err == nil {
		t.Error("unknown field accepted")
	}
}

// A score that dips as signals age out and comes back to the same level is
// not news: only a severity above the alert's peak re-notifies.
func TestReNotifyOnlyAbovePeakSeverity(t *testing.T) {
	e, c := engine(), customer()
	steps := []struct {
		score      int32
		kind       cwv1.AlertChange
		notify     bool
		sev, peak  cwv1.Severity
		signalName string
	}{
		{45, cwv1.AlertChange_ALERT_CHANGE_CREATED, true, cwv1.Severity_SEVERITY_MEDIUM, cwv1.Severity_SEVERITY_MEDIUM, "s1"},
		{65, cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED, true, cwv1.Severity_SEVERITY_HIGH, cwv1.Severity_SEVERITY_HIGH, "s2"},
		{30, cwv1.AlertChange_ALERT_CHANGE_UPDATED, false, cwv1.Severity_SEVERITY_LOW, cwv1.Severity_SEVERITY_HIGH, "s3"},
		{70, cwv1.AlertChange_ALERT_CHANGE_UPDATED, false, cwv1.Severity_SEVERITY_HIGH, cwv1.Severity_SEVERITY_HIGH, "s4"},
		{90, cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED, true, cwv1.Severity_SEVERITY_CRITICAL, cwv1.Severity_SEVERITY_CRITICAL, "s5"},
	}
	for i, s := range steps {
		ch, ok := e.Signal(c, signal(s.signalName, "activity.drop", s.score, "0.4"), t0.Add(time.Duration(i)*time.Minute))
		if !ok || ch.Kind != s.kind || ch.Notify != s.notify || ch.Alert.Severity != s.sev || ch.Alert.PeakSeverity != s.peak {
			t.Fatalf("step %d (score %d): kind=%v notify=%v severity=%v peak=%v, want %v %v %v %v",
				i, s.score, ch.Kind, ch.Notify, ch.Alert.Severity, ch.Alert.PeakSeverity, s.kind, s.notify, s.sev, s.peak)
		}
	}
}

// The alert shows the tier the rules service judged the signal as, even
// when this service's profile already says another (issue 10: an HNW
// customer's transfer judged against the MASS amount showed HNW).
func TestAlertShowsTierJudgedAs(t *testing.T) {
	e, c := engine(), customer() // profile: HIGH_NET_WORTH
	s := signal("s1", "outflow.large", 45, "44171.17")
	s.Tier = cwv1.Tier_TIER_MASS
	s.Explanation.Threshold = "10000.00"
	ch, ok := e.Signal(c, s, t0)
	if !ok || ch.Alert.Tier != cwv1.Tier_TIER_MASS || ch.Alert.Reasons[0].Threshold != "10000.00" {
		t.Fatalf("alert %v: want tier MASS with the MASS threshold", ch.Alert)
	}
	if got := ch.Alert.AckDueAt.AsTime(); !got.Equal(t0.Add(24 * time.Hour)) {
		t.Fatalf("ack due %v: want the MASS SLA (24 h)", got)
	}
}
