package backtest

import (
	"sort"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// Compare is what a threshold proposal's back-test shows (`churnctl
// thresholds propose` and the rules service compute it alike): per rule
// and tier, the alerts carrying the rule before and after the change and
// the customers whose alert gains the rule (added) or loses it (removed),
// ordered by rule id, then tier.
func Compare(before, after *Result) []*cwv1.BacktestRuleDelta {
	type ruleTier struct {
		rule string
		tier cwv1.Tier
	}
	index := func(alerts []*cwv1.Alert) map[ruleTier]map[string]bool {
		out := map[ruleTier]map[string]bool{}
		for _, a := range alerts {
			for _, r := range a.GetReasons() {
				k := ruleTier{r.GetRuleId(), a.GetTier()}
				if out[k] == nil {
					out[k] = map[string]bool{}
				}
				out[k][a.GetCustomerId()] = true
			}
		}
		return out
	}
	b, a := index(before.Alerts), index(after.Alerts)
	keys := map[ruleTier]bool{}
	for k := range b {
		keys[k] = true
	}
	for k := range a {
		keys[k] = true
	}
	var out []*cwv1.BacktestRuleDelta
	for k := range keys {
		d := &cwv1.BacktestRuleDelta{RuleId: k.rule, Tier: k.tier, Before: int32(len(b[k])), After: int32(len(a[k]))}
		for c := range a[k] {
			if !b[k][c] {
				d.Added++
			}
		}
		for c := range b[k] {
			if !a[k][c] {
				d.Removed++
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetRuleId() != out[j].GetRuleId() {
			return out[i].GetRuleId() < out[j].GetRuleId()
		}
		return out[i].GetTier() < out[j].GetTier()
	})
	return out
}
