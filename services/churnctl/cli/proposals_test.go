package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	rulesapp "github.com/churnwatch/churnwatch/services/rules/app"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// TestThresholdProposalCommands: `thresholds propose` back-tests the change
// from the live set over the given files and the proposal carries exactly
// what the back-test package computes for them; the proposer cannot approve;
// a second ops principal can, and the value is live only then; history names
// both; reject needs a reason; every command has --help.
func TestThresholdProposalCommands(t *testing.T) {
	r := newRulesRig(t)
	dir := t.TempDir()
	bank, err := simulate.Generate(simulate.Config{Customers: 80, Months: 12, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := bank.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	files := []string{"--customers", filepath.Join(dir, "customers.ndjson"), "--events", filepath.Join(dir, "events.ndjson"),
		"--labels", filepath.Join(dir, "labels.ndjson")}

	for _, cmd := range []string{"propose", "proposals", "approve", "reject"} {
		code, out, _ := r.run("thresholds", cmd, "--help")
		if code != 0 || !strings.Contains(out, "Usage: churnctl thresholds "+cmd) {
			t.Fatalf("thresholds %s --help: %d %s", cmd, code, out)
		}
	}

	r.as("ops-1", auth.RoleOps)
	// Without files the rules service back-tests on its events topic, which
	// holds nothing here: refused, saying what to do.
	if code, _, errs := r.run("thresholds", "propose", "outflow.large.amount.MASS=2000", "--reason", "x"); code != ExitFailure ||
		!strings.Contains(errs, "scored no events") || !strings.Contains(errs, "--customers F --events F") {
		t.Fatalf("propose without a history on an empty service: %d %s", code, errs)
	}
	if code, _, _ := r.run("thresholds", "propose", "outflow.large.amount.MASS=2000", "--reason", "x", "--labels", "l.ndjson"); code != ExitUsage {
		t.Fatalf("propose with --labels but no history: %d", code)
	}
	if code, _, _ := r.run(append([]string{"thresholds", "propose", "outflow.large.amount.MASS=2000"}, files...)...); code != ExitUsage {
		t.Fatalf("propose without a reason: %d", code)
	}
	args := append([]string{"thresholds", "propose", "outflow.large.amount.MASS=2000", "outflow.large.amount.BASIC=1000",
		"--reason", "catch smaller outflows", "--json"}, files...)
	code, out, errs := r.run(args...)
	if code != 0 {
		t.Fatalf("propose: %d %s %s", code, out, errs)
	}
	var p proposalJSONT
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.ID == "" || p.State != "PENDING" || p.Proposer != "ops-1" || p.Backtest == nil {
		t.Fatalf("propose --json: %v %s", err, out)
	}

	// The attached back-test is the back-test package's, independently run.
	in, labels := simfeed.FromBank(bank)
	cur := engine.DefaultThresholds()
	next := cur
	for k, v := range map[string]string{"outflow.large.amount.MASS": "2000", "outflow.large.amount.BASIC": "1000"} {
		if err := next.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	before, err := backtest.Run(in, backtest.Options{Thresholds: &cur})
	if err != nil {
		t.Fatal(err)
	}
	after, err := backtest.Run(in, backtest.Options{Thresholds: &next})
	if err != nil {
		t.Fatal(err)
	}
	bt := p.Backtest
	if bt.BaselineVersion != 1 || int(bt.AlertsBefore) != len(before.Alerts) || int(bt.AlertsAfter) != len(after.Alerts) ||
		int(bt.EventsAccepted) != before.Counts.Accepted || bt.DetectionBefore == nil || bt.DetectionAfter == nil {
		t.Fatalf("back-test %+v; package: %d → %d alerts, %d events", bt, len(before.Alerts), len(after.Alerts), before.Counts.Accepted)
	}
	if len(after.Alerts) <= len(before.Alerts) {
		t.Fatalf("lower outflow thresholds raised no more alerts (%d → %d): the test checks too little", len(before.Alerts), len(after.Alerts))
	}
	wantAdded := map[string]int{}
	had := map[string]bool{}
	for _, a := range before.Alerts {
		for _, rs := range a.GetReasons() {
			if rs.GetRuleId() == "outflow.large" {
				had[a.GetCustomerId()] = true
			}
		}
	}
	for _, a := range after.Alerts {
		for _, rs := range a.GetReasons() {
			if rs.GetRuleId() == "outflow.large" && !had[a.GetCustomerId()] {
				wantAdded[strings.TrimPrefix(a.GetTier().String(), "TIER_")]++
			}
		}
	}
	gotAdded := map[string]int{}
	for _, d := range bt.Rules {
		if d.Rule == "outflow.large" {
			gotAdded[d.Tier] = int(d.Added)
		}
	}
	if len(wantAdded) == 0 || !equalCounts(gotAdded, wantAdded) {
		t.Fatalf("outflow.large added per tier %v, want %v", gotAdded, wantAdded)
	}
	if d := backtest.Score(before.Alerts, labels, before.Start, before.End); d.Precision != bt.DetectionBefore.Precision {
		t.Fatalf("precision before %v, want %v", bt.DetectionBefore.Precision, d.Precision)
	}

	// Not live; the proposer cannot approve.
	if code, out, _ = r.run("thresholds", "show", "--json"); code != 0 || !strings.Contains(out, `"version":1`) {
		t.Fatalf("show after propose: %s", out)
	}
	if code, _, errs = r.run("thresholds", "approve", p.ID); code != ExitFailure || !strings.Contains(errs, "second principal") {
		t.Fatalf("self-approval: %d %s", code, errs)
	}
	code, out, _ = r.run("thresholds", "proposals", "--state", "pending")
	if code != 0 || !strings.Contains(out, p.ID) || !strings.Contains(out, "outflow.large") || !strings.Contains(out, "precision") {
		t.Fatalf("proposals: %d %s", code, out)
	}

	// A second ops principal approves: live, and history names both.
	r.as("ops-2", auth.RoleOps)
	if code, _, _ = r.run("thresholds", "reject", p.ID); code != ExitUsage {
		t.Fatalf("reject without reason: %d", code)
	}
	if code, out, errs = r.run("thresholds", "approve", p.ID, "--reason", "numbers look right"); code != 0 || !strings.Contains(out, "version 2 (was 1) is live") {
		t.Fatalf("approve: %d %s %s", code, out, errs)
	}
	if code, out, _ = r.run("thresholds", "show", "--json"); code != 0 || !strings.Contains(out, `"outflow.large.amount.MASS":"2000"`) {
		t.Fatalf("show after approval: %s", out)
	}
	code, out, _ = r.run("thresholds", "history", "--json")
	var ch changeJSONT
	if code != 0 || json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &ch) != nil || ch.Kind != "proposal" || ch.Proposer != "ops-1" ||
		ch.Approver != "ops-2" || ch.ApprovalReason != "numbers look right" || ch.Backtest == nil || ch.Backtest.AlertsAfter != bt.AlertsAfter {
		t.Fatalf("history --json: %d %s", code, out)
	}
	if code, out, _ = r.run("thresholds", "history"); code != 0 || !strings.Contains(out, "proposed by ops-1, approved by ops-2") ||
		!strings.Contains(out, "alerted customers") {
		t.Fatalf("history: %s", out)
	}

	// Another proposal, rejected with a reason by an admin.
	r.as("ops-1", auth.RoleOps)
	code, out, errs = r.run(append([]string{"thresholds", "propose", "complaints.count=3", "--reason", "fewer complaint alerts", "--json"}, files[:4]...)...)
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil {
		t.Fatalf("second propose: %d %s %s", code, out, errs)
	}
	r.as("admin-1", auth.RoleAdmin)
	if code, out, errs = r.run("thresholds", "reject", p.ID, "--reason", "complaints matter"); code != 0 || !strings.Contains(out, "rejected "+p.ID) {
		t.Fatalf("reject: %d %s %s", code, out, errs)
	}
	if code, out, _ = r.run("thresholds", "proposals", "--state", "rejected", "--json"); code != 0 || !strings.Contains(out, `"decisionReason":"complaints matter"`) {
		t.Fatalf("rejected list: %s", out)
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) < len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestThresholdsSetUnderFourEyes: with CHURNWATCH_THRESHOLDS_FOUR_EYES=true
// on the rules service an admin's `thresholds set` becomes a proposal
// (printed with its id, nothing live); `thresholds propose` without files
// carries the rules service's back-test over its events topic.
func TestThresholdsSetUnderFourEyes(t *testing.T) {
	var brokers []string
	r := newRulesRigWith(t, func(c *rulesapp.Config) { c.ThresholdsFourEyes = true; brokers = c.Common.KafkaBrokers })
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: testkit.DefaultTopics().Events, Balancer: &kafka.Hash{}}
	defer w.Close()
	at := time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)
	var msgs []kafka.Message
	for i := range 3 {
		ev := &cwv1.AccountEvent{EventId: fmt.Sprintf("fe-%d", i), CustomerId: "FE1", AccountId: "FE1-01",
			OccurredAt: timestamppb.New(at.Add(time.Duration(i) * 24 * time.Hour)), Type: cwv1.EventType_EVENT_TYPE_CARD_PAYMENT,
			AmountMinor: 1500, Currency: "EUR"}
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte("FE1"), Value: b})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	r.as("admin-1", auth.RoleAdmin)
	// Wait until the rules service has scored them.
	deadline := time.Now().Add(30 * time.Second)
	var code int
	var out, errs string
	for {
		code, out, errs = r.run("thresholds", "set", "outflow.large.amount.MASS=700", "--reason", "pilot")
		if code == 0 || !strings.Contains(errs, "scored no events") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(out, "proposed as tp-1, needs a second person's approval") || !strings.Contains(out, "rules service") {
		t.Fatalf("set under four-eyes: %d %s %s", code, out, errs)
	}
	if code, out, _ = r.run("thresholds", "show", "--json"); code != 0 || !strings.Contains(out, `"version":1`) ||
		strings.Contains(out, `"outflow.large.amount.MASS":"700"`) {
		t.Fatalf("show after a four-eyes set: %s", out)
	}
	code, out, errs = r.run("thresholds", "set", "complaints.count=3", "--reason", "fewer", "--json")
	var p struct {
		Proposed bool `json:"proposed"`
		proposalJSONT
	}
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || !p.Proposed || p.ID != "tp-2" || p.State != "PENDING" || p.Backtest == nil ||
		p.Backtest.EventsAccepted != 3 {
		t.Fatalf("set --json under four-eyes: %d %s %s", code, out, errs)
	}
	r.as("ops-1", auth.RoleOps)
	code, out, errs = r.run("thresholds", "propose", "salary.stopped.days=40", "--reason", "earlier", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.ID != "tp-3" || p.Backtest == nil || p.Backtest.EventsAccepted != 3 {
		t.Fatalf("propose without files: %d %s %s", code, out, errs)
	}
	// The second person approves: live only now.
	if code, out, errs = r.run("thresholds", "approve", "tp-1"); code != 0 || !strings.Contains(out, "version 2 (was 1) is live") {
		t.Fatalf("approve: %d %s %s", code, out, errs)
	}
}
