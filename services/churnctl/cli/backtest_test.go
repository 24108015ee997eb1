package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
)

func btFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBacktestJSON: --json prints every alert as `alerts list --json` does
// (protojson of cwv1.Alert, strict decoding), then one summary with the
// detection figures; the alerts are the package's for the same input.
func TestBacktestJSON(t *testing.T) {
	dir := t.TempDir()
	bank, err := simulate.Generate(simulate.Config{Customers: 120, Months: 12, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := bank.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := churnctl(t, nil, "", "backtest", "--customers", filepath.Join(dir, "customers.ndjson"),
		"--events", filepath.Join(dir, "events.ndjson"), "--labels", filepath.Join(dir, "labels.ndjson"), "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sum cli.BacktestSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("summary line %q: %v", lines[len(lines)-1], err)
	}
	in, labels := simfeed.FromBank(bank)
	want, err := backtest.Run(in, backtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Alerts) == 0 || len(lines)-1 != len(want.Alerts) || sum.Alerts != len(want.Alerts) {
		t.Fatalf("%d alert lines, summary %d, package %d", len(lines)-1, sum.Alerts, len(want.Alerts))
	}
	for i, l := range lines[:len(lines)-1] {
		var a cwv1.Alert
		if err := protojson.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("line %d is not a cwv1.Alert: %v\n%s", i+1, err, l)
		}
		if !proto.Equal(&a, want.Alerts[i]) {
			t.Fatalf("alert %d:\n got  %v\n want %v", i, &a, want.Alerts[i])
		}
	}
	d := backtest.Score(want.Alerts, labels, want.Start, want.End)
	if sum.Detection == nil || sum.Detection.Churners != d.Churners || sum.Detection.Precision != d.Precision || sum.Detection.Recall != d.Recall {
		t.Fatalf("summary detection = %+v, want %+v", sum.Detection, d)
	}
	if sum.Counts.Accepted != len(bank.Events) || sum.Counts.Customers != len(bank.Customers) || sum.Thresholds != "defaults" || len(sum.Errors) != 0 {
		t.Fatalf("summary = %+v", sum)
	}
}

const btCustomers = `{"customerId":"C1","tier":"MASS","managerId":"rm-001","branchId":"br-01","displayName":"A"}
{"customerId":"C2","tier":"PLATINUM","managerId":"rm-001","branchId":"br-01","displayName":"B"}
`

// Line 3 has an unknown type, line 5 repeats line 2's id, line 6 is not CSV
// of the header's width.
const btEvents = `event_id,customer_id,account_id,occurred_at,type,amount,currency,counterparty_bank,balance_after,channel,sentiment
e1,C1,C1-01,2025-03-01T09:00:00Z,DEPOSIT,100.00,EUR,,50100.00,MOBILE,
e2,C1,C1-01,2025-03-01T10:00:00Z,TELEPORT,,,,,,
e3,C1,C1-01,2025-03-02T09:00:00Z,TRANSFER_OUT,6000.00,EUR,OTHERBANK,44100.00,MOBILE,
e1,C1,C1-01,2025-03-01T09:00:00Z,DEPOSIT,100.00,EUR,,50100.00,MOBILE,
e6,C1
`

// TestBacktestBadRecords: bad customer and event records are listed with
// their lines and reasons, counted, and the command exits 3 as ingest does;
// the good records are still replayed.
func TestBacktestBadRecords(t *testing.T) {
	dir := t.TempDir()
	cf, ef := btFile(t, dir, "customers.ndjson", btCustomers), btFile(t, dir, "events.csv", btEvents)
	th := btFile(t, dir, "low.thresholds", "# lower MASS amount\noutflow.large.amount.MASS=5000\n")
	code, out, errOut := churnctl(t, nil, "", "backtest", "--customers", cf, "--events", ef, "--thresholds", th)
	if code != cli.ExitRejected {
		t.Fatalf("exit %d, want %d: %s\n%s", code, cli.ExitRejected, errOut, out)
	}
	for _, want := range []string{
		"customers: 2 read, 1 rejected; events: 5 read, 2 accepted, 1 duplicates, 2 rejected",
		"line 2 customer C2: tier: unknown tier",
		"line 3 event e2: type: unknown type",
		"line 6 event e6:",
		"alerts: 1  by severity: MEDIUM 1",
		"alerts carrying each rule: outflow.large 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "3 record(s) rejected") {
		t.Fatalf("stderr = %q", errOut)
	}

	code, out, _ = churnctl(t, nil, "", "backtest", "--customers", cf, "--events", ef, "--thresholds", th, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sum cli.BacktestSummary
	if code != cli.ExitRejected || len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &sum) != nil {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if len(sum.Errors) != 3 || sum.Errors[1].Line != 3 || sum.Errors[1].EventID != "e2" || sum.Errors[0].CustomerID != "C2" {
		t.Fatalf("errors = %+v", sum.Errors)
	}
}

// TestBacktestCompare: the what-if of a proposed threshold set side by side
// with the current one.
func TestBacktestCompare(t *testing.T) {
	dir := t.TempDir()
	cf := btFile(t, dir, "customers.ndjson", strings.SplitAfter(btCustomers, "\n")[0])
	ef := btFile(t, dir, "events.csv", strings.Join(strings.SplitAfter(btEvents, "\n")[:2], "")+
		"e3,C1,C1-01,2025-03-02T09:00:00Z,TRANSFER_OUT,6000.00,EUR,OTHERBANK,44100.00,MOBILE,\n")
	// The JSON `thresholds show --json` prints works as well as lines.
	prop := btFile(t, dir, "proposed.json", `{"version":2,"settings":{"outflow.large.amount.MASS":"5000"}}`)
	code, out, errOut := churnctl(t, nil, "", "backtest", "--customers", cf, "--events", ef, "--compare", prop)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, re := range []string{
		`current\s+proposed`,
		`alerts\s+0\s+1`,
		`alerts with outflow\.large\s+0\s+1`,
		`alerted only under the proposed set: 1; only under the current set: 0`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %q:\n%s", re, out)
		}
	}
	code, out, _ = churnctl(t, nil, "", "backtest", "--customers", cf, "--events", ef, "--compare", prop, "--json")
	var both map[string]cli.BacktestSummary
	if code != 0 || json.Unmarshal([]byte(out), &both) != nil {
		t.Fatalf("exit %d: %s", code, out)
	}
	if both["current"].Alerts != 0 || both["proposed"].Alerts != 1 || both["proposed"].ThresholdVersion != 2 {
		t.Fatalf("compare JSON = %+v", both)
	}
}

func TestBacktestUsage(t *testing.T) {
	dir := t.TempDir()
	cf := btFile(t, dir, "customers.ndjson", btCustomers)
	bad := btFile(t, dir, "bad.thresholds", "dormancy.declining.days=abc\n")
	for _, args := range [][]string{
		{"backtest", "--customers", cf},
		{"backtest", "--customers", cf, "--events", cf, "--thresholds", bad},
		{"backtest", "--customers", cf, "--events", cf, "--until", "soon"},
	} {
		if code, _, errOut := churnctl(t, nil, "", args...); code != cli.ExitUsage || errOut == "" {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errOut, cli.ExitUsage)
		}
	}
}
