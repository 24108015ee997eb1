package shadow_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/shadow"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "lower-drop", "x1-2"} {
		if err := shadow.CheckName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "live", "Upper", "1abc", "a:b", "a{b}", "abcdefghijklmnopqrstuvwxyz0123456789"} {
		if err := shadow.CheckName(bad); !errors.Is(err, shadow.ErrName) {
			t.Errorf("%q: got %v, want ErrName", bad, err)
		}
	}
}

func TestThresholdsChangesACopyOnly(t *testing.T) {
	base := engine.DefaultThresholds()
	before := shadow.Values(&base)
	key := "dormancy.declining.days.MASS"
	old := before[key]
	if old == "" {
		t.Fatalf("no key %s in %v", key, before)
	}
	th, changed, err := shadow.Thresholds(base, []shadow.Setting{{Key: key, Value: "20"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[key] != "20" {
		t.Fatalf("changed = %v", changed)
	}
	if v, _ := th.Get(key); v != "20" {
		t.Fatalf("shadow value %s", v)
	}
	if v, _ := base.Get(key); v != old {
		t.Fatalf("base changed to %s", v)
	}
	if _, _, err := shadow.Thresholds(base, []shadow.Setting{{Key: key, Value: old}}); !errors.Is(err, shadow.ErrNoSettings) {
		t.Fatalf("same value: %v", err)
	}
	if _, _, err := shadow.Thresholds(base, []shadow.Setting{{Key: "no.such.key", Value: "1"}}); err == nil {
		t.Fatal("unknown key accepted")
	}
	back, err := shadow.FromValues(shadow.Values(&th))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := back.Get(key); v != "20" {
		t.Fatalf("round trip %s", v)
	}
}

func sig(id, rule string, score int32, at time.Time) *cwv1.RiskSignal {
	return &cwv1.RiskSignal{SignalId: id, CustomerId: "C1", RuleId: rule, Score: score, EventTime: timestamppb.New(at), Tier: cwv1.Tier_TIER_MASS}
}

// Merging in several batches gives the alert merging all at once gives.
func TestMergeAcrossBatchesEqualsOnce(t *testing.T) {
	al := &alerting.Engine{}
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	sigs := []*cwv1.RiskSignal{sig("s1", "activity.drop", 30, t0), sig("s2", "outflow.large", 65, t0.Add(time.Hour)), sig("s3", "activity.drop", 45, t0.Add(2*time.Hour))}
	once := shadow.Merge(al, "C1", nil, nil, sigs)
	a := shadow.Merge(al, "C1", nil, nil, sigs[:1])
	a = shadow.Merge(al, "C1", nil, a, sigs[1:])
	if once.GetAlertId() != a.GetAlertId() || once.GetScore() != a.GetScore() || once.GetSeverity() != a.GetSeverity() || len(once.GetReasons()) != 2 || len(a.GetReasons()) != 2 {
		t.Fatalf("once %v\nsplit %v", once, a)
	}
	if once.GetSeverity() != cwv1.Severity_SEVERITY_MEDIUM || !once.GetFirstSignalAt().AsTime().Equal(t0) {
		t.Fatalf("alert %v", once)
	}
	if shadow.Merge(al, "C1", nil, nil, nil) != nil {
		t.Fatal("an alert from no signal")
	}
}

func TestReportPrecisionAndOnlyThisSet(t *testing.T) {
	s := func(c string) *cwv1.ShadowAlertSummary { return &cwv1.ShadowAlertSummary{CustomerId: c} }
	sets := []shadow.SetAlerts{
		{Name: "live", Live: true, Alerts: []*cwv1.ShadowAlertSummary{s("A"), s("B"), s("C")}},
		{Name: "lower", Alerts: []*cwv1.ShadowAlertSummary{s("A"), s("B"), s("C"), s("D")}},
		{Name: "higher", Alerts: []*cwv1.ShadowAlertSummary{s("A")}},
	}
	outcomes := map[string]cwv1.Outcome{"A": cwv1.Outcome_OUTCOME_CHURNED, "B": cwv1.Outcome_OUTCOME_FALSE_ALARM,
		"C": cwv1.Outcome_OUTCOME_UNREACHABLE}
	r := shadow.Report(sets, outcomes)
	if r[0].Judged != 2 || r[0].Correct != 1 || len(r[0].OnlyThisSet) != 0 {
		t.Fatalf("live %v", r[0])
	}
	if r[1].Judged != 2 || r[1].Correct != 1 || len(r[1].OnlyThisSet) != 1 || r[1].OnlyThisSet[0] != "D" {
		t.Fatalf("lower %v", r[1])
	}
	if r[2].Judged != 1 || r[2].Correct != 1 || len(r[2].OnlyThisSet) != 0 {
		t.Fatalf("higher %v", r[2])
	}
	if r[0].Alerts[1].Outcome != cwv1.Outcome_OUTCOME_FALSE_ALARM {
		t.Fatalf("outcome not carried: %v", r[0].Alerts[1])
	}
}
