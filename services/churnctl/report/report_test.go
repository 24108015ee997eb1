package report

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

func figures(active, declining, churned, wonBack, start, entered int64, rate float64, held, change int64) *cwv1.Figures {
	return &cwv1.Figures{CustomersByStage: &cwv1.StageCounts{Active: active, Declining: declining, Churned: churned, WonBack: wonBack},
		NotChurnedAtStart: start, EnteredChurned: entered, ChurnRate: rate, RetentionRate: 1 - rate, QuarterRetentionRate: 1 - rate,
		Balances: []*cwv1.BalanceHeld{{Currency: "EUR", HeldMinor: held, ChangeMinor: change}}}
}

// answer is a GetKpis answer for August with July before it.
func answer() *cwv1.GetKpisResponse {
	jul := &cwv1.MonthKpis{Month: "2025-07", Closed: true, Total: figures(1, 1, 1, 0, 3, 1, 1.0/3, 4900000, 0),
		Tiers: []*cwv1.TierFigures{{Tier: cwv1.Tier_TIER_MASS, Figures: figures(1, 0, 1, 0, 2, 1, 0.5, 1400000, 0)},
			{Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, Figures: figures(0, 1, 0, 0, 1, 0, 0, 3500000, 0)}},
		Branches: []*cwv1.BranchFigures{{BranchId: "br-1", Figures: figures(1, 0, 1, 0, 2, 1, 0.5, 1400000, 0)}},
		Alerts:   &cwv1.AlertFigures{Raised: 4}}
	aug := &cwv1.MonthKpis{Month: "2025-08", Closed: false, Total: figures(0, 1, 1, 1, 2, 1, 0.5, 5400000, 500000),
		Tiers: []*cwv1.TierFigures{{Tier: cwv1.Tier_TIER_MASS, Figures: figures(0, 1, 0, 1, 1, 0, 0, 1900000, 500000)},
			{Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, Figures: figures(0, 0, 1, 0, 1, 1, 1, 3500000, 0)}},
		Branches: []*cwv1.BranchFigures{{BranchId: "br-1", Figures: figures(0, 1, 0, 1, 1, 0, 0, 1900000, 500000)},
			{BranchId: "br-2", Figures: figures(0, 0, 1, 0, 1, 1, 1, 3500000, 0)}},
		Alerts: &cwv1.AlertFigures{Raised: 3, Acknowledged: 2, AcknowledgedWithinSla: 1, Escalated: 1, Resolved: 1,
			ResolvedByOutcome: []*cwv1.OutcomeCount{{Outcome: cwv1.Outcome_OUTCOME_FALSE_ALARM, Alerts: 1}},
			ResponseTimes: []*cwv1.ResponseTime{{ManagerId: "rm-2", Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, Acknowledged: 1, MedianSeconds: 86400,
				P90Seconds: 86400, SlaSeconds: 14400, Breached: 1}},
			Precision:  []*cwv1.RulePrecision{{RuleId: "outflow.large", FalseAlarm: 1}},
			TopReasons: []*cwv1.ReasonCount{{RuleId: "dormancy.declining", Alerts: 2}, {RuleId: "outflow.large", Alerts: 1}},
			Overdue:    []*cwv1.OverdueAlerts{{ManagerId: "rm-1", Overdue: 1, OldestDueAt: timestamppb.New(time.Date(2025, 8, 29, 0, 0, 0, 0, time.UTC))}}}}
	return &cwv1.GetKpisResponse{Months: []*cwv1.MonthKpis{jul, aug}, EventTime: timestamppb.New(time.Date(2025, 8, 31, 0, 0, 0, 0, time.UTC))}
}

func render(t *testing.T, format string) string {
	t.Helper()
	r, err := Build(answer())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Render(&b, r, format); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSameFiguresInEveryFormat checks that each format carries the RPC's
// figures and the changes on the previous month.
func TestSameFiguresInEveryFormat(t *testing.T) {
	want := []string{
		"50.00%",              // churn rate of August
		"33.33%",              // of July
		"+16.67 pp",           // the change
		"54000.00 EUR",        // balances held
		"+5000.00 EUR",        // their change
		"tier HIGH_NET_WORTH", // churn rose: 0 → 100 %
		"branch br-2",         // and in br-2 (none before)
		"dormancy.declining",
		"rm-1", "2025-08-29T00:00:00Z", // overdue by RM
		"24h00m", "4h00m", // response time against the SLA
		"not closed",
	}
	for _, format := range Formats {
		out := render(t, format)
		for _, w := range want {
			cell := w
			switch format {
			case "csv":
				cell = strings.TrimPrefix(w, "+")
			case "html":
				cell = strings.ReplaceAll(w, "+", "&#43;") // html/template's escape; a browser shows +
			}
			if w == "not closed" && format == "csv" {
				continue // notes are not cells
			}
			if !strings.Contains(out, cell) {
				t.Errorf("%s report lacks %q", format, cell)
			}
		}
		// Churn fell for MASS and br-1: they are not among the rises.
		if strings.Contains(out, "tier MASS") || strings.Contains(out, "branch br-1") {
			t.Errorf("%s report lists a tier or branch whose churn fell as rising", format)
		}
	}
}

func TestHTMLIsSelfContainedAndAccessible(t *testing.T) {
	out := render(t, "html")
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(out, bad) {
			t.Errorf("HTML report has %q: it must be one self-contained file", bad)
		}
	}
	for _, good := range []string{`<html lang="en">`, "<style>", "<caption>By tier</caption>", `<th scope="col">Churn rate</th>`,
		`<th scope="row">Churn rate</th>`, "<title>Relationship-maintenance report 2025-08 — the bank</title>"} {
		if !strings.Contains(out, good) {
			t.Errorf("HTML report lacks %q", good)
		}
	}
	if strings.Count(out, "<table>") != strings.Count(out, "<caption>") {
		t.Error("every table needs a caption")
	}
}

func TestCSVIsLongAndFormulaSafe(t *testing.T) {
	recs, err := csv.NewReader(strings.NewReader(render(t, "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "section,row,column,value" {
		t.Fatalf("header %v", recs[0])
	}
	found := false
	for _, r := range recs[1:] {
		if len(r) != 4 {
			t.Fatalf("record %v", r)
		}
		for _, c := range r {
			if c != "" && strings.ContainsRune("+=@", rune(c[0])) || strings.HasPrefix(c, "-") && strings.ContainsAny(c, " %p") {
				t.Errorf("cell %q would be read as a formula", c)
			}
		}
		if r[1] == "Churn rate" && r[2] == "Change" {
			found = r[3] == "16.67 pp"
		}
	}
	if !found {
		t.Error("no churn-rate change cell")
	}
}

func TestUnknownFormatIsRefused(t *testing.T) {
	r, _ := Build(answer())
	if err := Render(&bytes.Buffer{}, r, "pdf"); err == nil || !strings.Contains(err.Error(), "html, md, csv") {
		t.Fatalf("pdf: %v", err)
	}
	if _, err := Build(&cwv1.GetKpisResponse{}); err == nil {
		t.Fatal("an empty answer built a report")
	}
}
