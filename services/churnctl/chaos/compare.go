package chaos

import (
	"fmt"
	"slices"
	"strings"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// CompareAlerts lists every way the live alerts differ from the
// back-test's, customer by customer. Wall-clock fields (created, updated,
// ack due) and the version count are left out: they depend on when the
// services ran, not on what they decided.
func CompareAlerts(live, offline []*cwv1.Alert) []string {
	byCustomer := func(as []*cwv1.Alert) map[string]*cwv1.Alert {
		m := map[string]*cwv1.Alert{}
		for _, a := range as {
			m[a.CustomerId] = a
		}
		return m
	}
	l, o := byCustomer(live), byCustomer(offline)
	var diffs []string
	if len(l) != len(live) {
		diffs = append(diffs, fmt.Sprintf("live has %d alerts for %d customers: a customer has two", len(live), len(l)))
	}
	ids := make([]string, 0, len(l)+len(o))
	for id := range l {
		ids = append(ids, id)
	}
	for id := range o {
		if l[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		a, b := l[id], o[id]
		switch {
		case a == nil:
			diffs = append(diffs, fmt.Sprintf("%s: back-test alert (%s) missing live", id, rulesOf(b)))
			continue
		case b == nil:
			diffs = append(diffs, fmt.Sprintf("%s: live alert (%s) not in the back-test", id, rulesOf(a)))
			continue
		}
		field := func(name string, x, y any) {
			if x != y {
				diffs = append(diffs, fmt.Sprintf("%s: %s live %v, back-test %v", id, name, x, y))
			}
		}
		field("alert id", a.AlertId, b.AlertId)
		field("state", a.State, b.State)
		field("stage", a.Stage, b.Stage)
		field("score", a.Score, b.Score)
		field("severity", a.Severity, b.Severity)
		field("tier", a.Tier, b.Tier)
		field("manager", a.ManagerId, b.ManagerId)
		field("unknown customer", a.UnknownCustomer, b.UnknownCustomer)
		field("first signal", a.FirstSignalAt.AsTime(), b.FirstSignalAt.AsTime())
		field("last signal", a.LastSignalAt.AsTime(), b.LastSignalAt.AsTime())
		field("recommended action", a.RecommendedAction, b.RecommendedAction)
		field("reasons", rulesOf(a), rulesOf(b))
		if len(a.Reasons) != len(b.Reasons) {
			continue
		}
		for i := range a.Reasons {
			x, y := a.Reasons[i], b.Reasons[i]
			field(x.RuleId+" observed", x.Observed, y.Observed)
			field(x.RuleId+" threshold", x.Threshold, y.Threshold)
			field(x.RuleId+" unit", x.Unit, y.Unit)
			field(x.RuleId+" threshold version", x.ThresholdVersion, y.ThresholdVersion)
			field(x.RuleId+" events", strings.Join(x.EventIds, ","), strings.Join(y.EventIds, ","))
			field(x.RuleId+" detail", x.Detail, y.Detail)
		}
	}
	return diffs
}

func rulesOf(a *cwv1.Alert) string {
	var r []string
	for _, x := range a.Reasons {
		r = append(r, x.RuleId)
	}
	return strings.Join(r, ",")
}
