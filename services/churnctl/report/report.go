// Package report renders the monthly relationship-maintenance report
// (SPEC §9) from KpiService.GetKpis: the KPIs with the change on the
// previous month, the tiers and branches whose churn rose, the top reasons
// behind the month's alerts, response times against the SLA, overdue
// alerts by RM and precision per rule — as self-contained HTML, Markdown or
// CSV. It computes no figure of its own: every number is the RPC's, only
// formatted (and the changes are differences of two of the RPC's numbers).
package report

import (
	"fmt"
	"strings"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/money"
)

// Table is one section of the report: a caption, column headings and rows
// whose first cell names the row.
type Table struct {
	Caption string
	Columns []string
	Rows    [][]string
	// Empty is said instead of the table when it has no rows.
	Empty string
}

// Report is the report of one month, ready to render.
type Report struct {
	Title  string
	Notes  []string
	Tables []Table
}

// Build lays out the report of resp's last month (the previous month, when
// resp has it, gives the changes).
func Build(resp *cwv1.GetKpisResponse) (*Report, error) {
	if len(resp.GetMonths()) == 0 {
		return nil, fmt.Errorf("the KPI answer has no month: ask for --month YYYY-MM")
	}
	ms := resp.GetMonths()
	cur := ms[len(ms)-1]
	prev := &cwv1.MonthKpis{Month: "", Total: &cwv1.Figures{}, Alerts: &cwv1.AlertFigures{}}
	if len(ms) > 1 {
		prev = ms[len(ms)-2]
	}
	scope := "the bank"
	if b := resp.GetBranchId(); b != "" {
		scope = "branch " + b
	}
	r := &Report{Title: fmt.Sprintf("Relationship-maintenance report %s — %s", cur.GetMonth(), scope)}
	if t := resp.GetEventTime(); t != nil {
		r.Notes = append(r.Notes, "Event time reached "+t.AsTime().UTC().Format(time.RFC3339)+".")
	}
	if !cur.GetClosed() {
		r.Notes = append(r.Notes, "The month is not closed by event time yet: its customer figures may still change.")
	}
	r.Notes = append(r.Notes, "Changes are on "+orDash(prev.GetMonth())+". Definitions: docs/kpis.md.")

	r.Tables = append(r.Tables, kpiTable(cur, prev))
	r.Tables = append(r.Tables, tierTable(cur, prev), branchTable(cur, prev), roseTable(cur, prev))
	r.Tables = append(r.Tables, reasonTable(cur), responseTable(cur), overdueTable(cur), precisionTable(cur))
	return r, nil
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func pct(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }

func pp(d float64) string { return fmt.Sprintf("%+.2f pp", 100*d) }

func num(v int64) string { return fmt.Sprintf("%d", v) }

func signed(v int64) string { return fmt.Sprintf("%+d", v) }

func amount(minor int64, cur string) string { return money.FormatMinor(minor, cur) + " " + cur }

func signedAmount(minor int64, cur string) string {
	s := money.FormatMinor(minor, cur)
	if minor >= 0 {
		s = "+" + s
	}
	return s + " " + cur
}

func duration(sec int64) string {
	if sec == 0 {
		return "—"
	}
	d := time.Duration(sec) * time.Second
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func stages(f *cwv1.Figures) *cwv1.StageCounts {
	if s := f.GetCustomersByStage(); s != nil {
		return s
	}
	return &cwv1.StageCounts{}
}

func kpiTable(cur, prev *cwv1.MonthKpis) Table {
	c, p := cur.GetTotal(), prev.GetTotal()
	cs, ps := stages(c), stages(p)
	t := Table{Caption: "KPIs of " + cur.GetMonth() + " and the change on " + orDash(prev.GetMonth()),
		Columns: []string{"Figure", cur.GetMonth(), orDash(prev.GetMonth()), "Change"}}
	count := func(name string, a, b int64) { t.Rows = append(t.Rows, []string{name, num(a), num(b), signed(a - b)}) }
	rate := func(name string, a, b float64) { t.Rows = append(t.Rows, []string{name, pct(a), pct(b), pp(a - b)}) }
	count("Customers ACTIVE at month end", cs.GetActive(), ps.GetActive())
	count("Customers DECLINING at month end", cs.GetDeclining(), ps.GetDeclining())
	count("Customers CHURNED at month end", cs.GetChurned(), ps.GetChurned())
	count("Customers WON_BACK at month end", cs.GetWonBack(), ps.GetWonBack())
	count("Customers not CHURNED at month start", c.GetNotChurnedAtStart(), p.GetNotChurnedAtStart())
	count("Customers entering CHURNED", c.GetEnteredChurned(), p.GetEnteredChurned())
	rate("Churn rate", c.GetChurnRate(), p.GetChurnRate())
	rate("Retention rate (month)", c.GetRetentionRate(), p.GetRetentionRate())
	rate("Retention rate (quarter to date)", c.GetQuarterRetentionRate(), p.GetQuarterRetentionRate())
	count("Win-backs (CHURNED → WON_BACK)", c.GetWinBacks(), p.GetWinBacks())
	for _, b := range c.GetBalances() {
		t.Rows = append(t.Rows, []string{"Balances held (" + b.GetCurrency() + ")", amount(b.GetHeldMinor(), b.GetCurrency()),
			amount(b.GetHeldMinor()-b.GetChangeMinor(), b.GetCurrency()), signedAmount(b.GetChangeMinor(), b.GetCurrency())})
	}
	ca, pa := cur.GetAlerts(), prev.GetAlerts()
	count("Alerts raised", ca.GetRaised(), pa.GetRaised())
	count("Alerts acknowledged", ca.GetAcknowledged(), pa.GetAcknowledged())
	count("Alerts acknowledged within the tier SLA", ca.GetAcknowledgedWithinSla(), pa.GetAcknowledgedWithinSla())
	count("Alerts escalated", ca.GetEscalated(), pa.GetEscalated())
	count("Alerts resolved", ca.GetResolved(), pa.GetResolved())
	outcomes := func(a *cwv1.AlertFigures) map[cwv1.Outcome]int64 {
		m := map[cwv1.Outcome]int64{}
		for _, o := range a.GetResolvedByOutcome() {
			m[o.GetOutcome()] = o.GetAlerts()
		}
		return m
	}
	co, po := outcomes(ca), outcomes(pa)
	for _, o := range []cwv1.Outcome{cwv1.Outcome_OUTCOME_RETAINED, cwv1.Outcome_OUTCOME_CHURNED, cwv1.Outcome_OUTCOME_UNREACHABLE, cwv1.Outcome_OUTCOME_FALSE_ALARM} {
		count("Alerts resolved "+strings.TrimPrefix(o.String(), "OUTCOME_"), co[o], po[o])
	}
	return t
}

func tierName(t cwv1.Tier) string { return strings.TrimPrefix(t.String(), "TIER_") }

func balances(f *cwv1.Figures) string {
	var parts []string
	for _, b := range f.GetBalances() {
		parts = append(parts, amount(b.GetHeldMinor(), b.GetCurrency())+" ("+signedAmount(b.GetChangeMinor(), b.GetCurrency())+")")
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, "; ")
}

var groupColumns = []string{"Churn rate", "Previous", "Change", "Retention", "Quarter retention", "Entering CHURNED", "Win-backs",
	"ACTIVE", "DECLINING", "CHURNED", "WON_BACK", "Balances held (change)"}

func groupRow(name string, f, before *cwv1.Figures) []string {
	s := stages(f)
	return []string{name, pct(f.GetChurnRate()), pct(before.GetChurnRate()), pp(f.GetChurnRate() - before.GetChurnRate()),
		pct(f.GetRetentionRate()), pct(f.GetQuarterRetentionRate()), num(f.GetEnteredChurned()), num(f.GetWinBacks()),
		num(s.GetActive()), num(s.GetDeclining()), num(s.GetChurned()), num(s.GetWonBack()), balances(f)}
}

func tierTable(cur, prev *cwv1.MonthKpis) Table {
	t := Table{Caption: "By tier", Columns: append([]string{"Tier"}, groupColumns...), Empty: "No customers in scope."}
	for _, tf := range cur.GetTiers() {
		t.Rows = append(t.Rows, groupRow(tierName(tf.GetTier()), tf.GetFigures(), prevTier(prev, tf.GetTier())))
	}
	return t
}

func prevTier(prev *cwv1.MonthKpis, tier cwv1.Tier) *cwv1.Figures {
	for _, tf := range prev.GetTiers() {
		if tf.GetTier() == tier {
			return tf.GetFigures()
		}
	}
	return &cwv1.Figures{}
}

func prevBranch(prev *cwv1.MonthKpis, branch string) *cwv1.Figures {
	for _, bf := range prev.GetBranches() {
		if bf.GetBranchId() == branch {
			return bf.GetFigures()
		}
	}
	return &cwv1.Figures{}
}

func branchName(b string) string {
	if b == "" {
		return "(no branch)"
	}
	return b
}

func branchTable(cur, prev *cwv1.MonthKpis) Table {
	t := Table{Caption: "By branch", Columns: append([]string{"Branch"}, groupColumns...), Empty: "No customers in scope."}
	for _, bf := range cur.GetBranches() {
		t.Rows = append(t.Rows, groupRow(branchName(bf.GetBranchId()), bf.GetFigures(), prevBranch(prev, bf.GetBranchId())))
	}
	return t
}

func roseTable(cur, prev *cwv1.MonthKpis) Table {
	t := Table{Caption: "Tiers and branches whose churn rose", Columns: []string{"Tier or branch", "Churn rate", "Previous", "Change"},
		Empty: "Churn rose in no tier and no branch."}
	type rise struct {
		name     string
		now, was float64
	}
	var rs []rise
	for _, tf := range cur.GetTiers() {
		if was := prevTier(prev, tf.GetTier()).GetChurnRate(); tf.GetFigures().GetChurnRate() > was {
			rs = append(rs, rise{"tier " + tierName(tf.GetTier()), tf.GetFigures().GetChurnRate(), was})
		}
	}
	for _, bf := range cur.GetBranches() {
		if was := prevBranch(prev, bf.GetBranchId()).GetChurnRate(); bf.GetFigures().GetChurnRate() > was {
			rs = append(rs, rise{"branch " + branchName(bf.GetBranchId()), bf.GetFigures().GetChurnRate(), was})
		}
	}
	// Largest rise first: what moved most.
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].now-rs[j].was > rs[j-1].now-rs[j-1].was; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	for _, r := range rs {
		t.Rows = append(t.Rows, []string{r.name, pct(r.now), pct(r.was), pp(r.now - r.was)})
	}
	return t
}

func reasonTable(cur *cwv1.MonthKpis) Table {
	t := Table{Caption: "Top reasons behind the month's alerts", Columns: []string{"Rule", "Alerts raised with it"},
		Empty: "No alert was raised in the month."}
	for _, r := range cur.GetAlerts().GetTopReasons() {
		t.Rows = append(t.Rows, []string{r.GetRuleId(), num(r.GetAlerts())})
	}
	return t
}

func rmName(m string) string {
	if m == "" {
		return "(unassigned: branch head)"
	}
	return m
}

func responseTable(cur *cwv1.MonthKpis) Table {
	t := Table{Caption: "Time to acknowledge against the tier SLA (per RM and tier; the tier's row is \"all RMs\"), most behind first",
		Columns: []string{"RM", "Tier", "Acknowledged", "Median", "p90", "SLA", "Within SLA", "Breached"},
		Empty:   "No alert was acknowledged or overdue in the month."}
	for _, r := range cur.GetAlerts().GetResponseTimes() {
		rm := rmName(r.GetManagerId())
		if r.GetManagerId() == "" {
			rm = "all RMs"
		}
		t.Rows = append(t.Rows, []string{rm, tierName(r.GetTier()), num(r.GetAcknowledged()), duration(r.GetMedianSeconds()),
			duration(r.GetP90Seconds()), duration(r.GetSlaSeconds()), num(r.GetWithinSla()), num(r.GetBreached())})
	}
	return t
}

func overdueTable(cur *cwv1.MonthKpis) Table {
	t := Table{Caption: "Overdue alerts by RM (open, not acknowledged, past the SLA at the month's end or now)",
		Columns: []string{"RM", "Overdue alerts", "Oldest due"}, Empty: "No overdue alert."}
	for _, o := range cur.GetAlerts().GetOverdue() {
		t.Rows = append(t.Rows, []string{rmName(o.GetManagerId()), num(o.GetOverdue()), o.GetOldestDueAt().AsTime().UTC().Format(time.RFC3339)})
	}
	return t
}

func precisionTable(cur *cwv1.MonthKpis) Table {
	t := Table{Caption: "Precision per rule (alerts resolved in the month)",
		Columns: []string{"Rule", "RETAINED", "CHURNED", "UNREACHABLE", "FALSE_ALARM", "Precision"},
		Empty:   "No alert was resolved in the month."}
	for _, p := range cur.GetAlerts().GetPrecision() {
		t.Rows = append(t.Rows, []string{p.GetRuleId(), num(p.GetRetained()), num(p.GetChurned()), num(p.GetUnreachable()),
			num(p.GetFalseAlarm()), pct(p.GetPrecision())})
	}
	return t
}
