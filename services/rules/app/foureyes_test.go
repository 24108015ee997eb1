package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

func testBacktest(baseline int64) *cwv1.ThresholdBacktest {
	return &cwv1.ThresholdBacktest{History: "customers.ndjson 14 records, events.ndjson 900 records", BaselineVersion: baseline,
		Start: timestamppb.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), End: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Customers: 14, EventsAccepted: 900, AlertsBefore: 3, AlertsAfter: 5, ComputedBy: "test",
		Rules: []*cwv1.BacktestRuleDelta{{RuleId: "outflow.large", Tier: cwv1.Tier_TIER_MASS, Before: 1, After: 3, Added: 2}}}
}

// TestFourEyesThresholds: the role matrix of the proposal RPCs; a proposal
// changes nothing until a second principal approves it; the proposer (also
// an admin) cannot approve or reject its own; an approval on a moved
// version is refused with the advice to re-propose; the approved value is
// what scoring uses next, on every instance; the audit names both; with
// CHURNWATCH_THRESHOLDS_FOUR_EYES=true a direct change is refused.
func TestFourEyesThresholds(t *testing.T) {
	s := newStack(t, 3)
	cfg := s.config(100)
	app := s.start(cfg)
	ctx := context.Background()
	addr := app.app.GRPCAddr()
	client := func(sub string, role auth.Role, branch string) cwv1.RulesAdminServiceClient {
		return cwv1.NewRulesAdminServiceClient(s.dial(addr, sub, role, branch))
	}
	ops1, ops2, admin1 := client("ops-1", auth.RoleOps, ""), client("ops-2", auth.RoleOps, ""), client("admin-1", auth.RoleAdmin, "")
	change := []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "500"}}
	propose := &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Settings: change, Reason: "pilot: smaller MASS outflows",
		Backtest: testBacktest(1)}

	// Roles: manager, branch head and ingest may not touch proposals.
	for _, c := range []cwv1.RulesAdminServiceClient{client("rm-1", auth.RoleManager, ""), client("bh-1", auth.RoleBranchHead, "br-1"),
		client("core", auth.RoleIngest, "")} {
		_, e1 := c.ProposeThresholdChange(ctx, propose)
		_, e2 := c.ListThresholdProposals(ctx, &cwv1.ListThresholdProposalsRequest{})
		_, e3 := c.ApproveThresholdChange(ctx, &cwv1.ApproveThresholdChangeRequest{ProposalId: "tp-1"})
		_, e4 := c.RejectThresholdChange(ctx, &cwv1.RejectThresholdChangeRequest{ProposalId: "tp-1", Reason: "x"})
		for i, err := range []error{e1, e2, e3, e4} {
			if code(err) != codes.PermissionDenied {
				t.Fatalf("call %d by a non-ops role: %v, want PermissionDenied", i, err)
			}
		}
	}
	// A proposal needs its back-test, run from the version it is made against.
	// Without one the server back-tests on its events topic, which holds
	// nothing yet: refused, saying what to do.
	if _, err := ops1.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Settings: change,
		Reason: "no back-test"}); code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "--customers F --events F") {
		t.Fatalf("proposal without back-test and no events: %v", err)
	}
	bad := []*cwv1.ProposeThresholdChangeRequest{
		{ExpectedVersion: 1, Settings: change, Reason: "old back-test", Backtest: testBacktest(0)},
		{ExpectedVersion: 1, Settings: change, Reason: "empty back-test", Backtest: &cwv1.ThresholdBacktest{BaselineVersion: 1, History: "x"}},
		{ExpectedVersion: 1, Settings: change, Backtest: testBacktest(1)},
		{ExpectedVersion: 1, Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.nope", Value: "1"}}, Reason: "x", Backtest: testBacktest(1)},
	}
	for i, req := range bad {
		if _, err := ops1.ProposeThresholdChange(ctx, req); code(err) != codes.InvalidArgument {
			t.Fatalf("bad proposal %d: %v, want InvalidArgument", i, err)
		}
	}
	if _, err := ops1.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 7, Settings: change, Reason: "x",
		Backtest: testBacktest(7)}); code(err) != codes.FailedPrecondition {
		t.Fatalf("proposal on a version not in force: %v", err)
	}

	p1, err := ops1.ProposeThresholdChange(ctx, propose)
	if err != nil {
		t.Fatal(err)
	}
	prop := p1.GetProposal()
	if prop.GetId() == "" || prop.GetState() != cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_PENDING || prop.GetProposer() != "ops-1" ||
		prop.GetBaseVersion() != 1 || len(prop.GetChanges()) != 1 || prop.GetChanges()[0].GetOldValue() != "10000" ||
		prop.GetBacktest().GetAlertsAfter() != 5 || prop.GetExpiresAt().AsTime().Sub(prop.GetProposedAt().AsTime()) != 7*24*time.Hour {
		t.Fatalf("proposal: %v", prop)
	}
	// An admin's competing proposal on the same version.
	p2, err := admin1.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Reason: "admin's idea",
		Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "800"}}, Backtest: testBacktest(1)})
	if err != nil {
		t.Fatal(err)
	}

	// Not live yet: a 600 EUR outflow of a MASS customer is nothing.
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	s.produce(s.topics.Events, outflow("fe-1", "U1", t0, 60000))
	s.waitCaughtUp(cfg.Group, s.topics.Events, 60*time.Second)
	if cur, err := ops2.GetThresholds(ctx, &cwv1.GetThresholdsRequest{}); err != nil || cur.GetThresholds().GetVersion() != 1 {
		t.Fatalf("a proposal changed the set in force: %v %v", cur, err)
	}

	// Self-decisions are refused, for ops and for admins.
	for _, c := range []struct {
		cl cwv1.RulesAdminServiceClient
		id string
	}{{ops1, prop.GetId()}, {admin1, p2.GetProposal().GetId()}} {
		_, err := c.cl.ApproveThresholdChange(ctx, &cwv1.ApproveThresholdChangeRequest{ProposalId: c.id})
		if code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "second principal") {
			t.Fatalf("self-approval of %s: %v", c.id, err)
		}
		_, err = c.cl.RejectThresholdChange(ctx, &cwv1.RejectThresholdChangeRequest{ProposalId: c.id, Reason: "withdraw"})
		if code(err) != codes.PermissionDenied {
			t.Fatalf("self-rejection of %s: %v", c.id, err)
		}
	}
	if _, err := ops2.ApproveThresholdChange(ctx, &cwv1.ApproveThresholdChangeRequest{ProposalId: "tp-404"}); code(err) != codes.NotFound {
		t.Fatalf("unknown proposal: %v", err)
	}

	// A second principal approves: live as version 2.
	ap, err := ops2.ApproveThresholdChange(ctx, &cwv1.ApproveThresholdChangeRequest{ProposalId: prop.GetId(), Reason: "back-test looks right"})
	if err != nil {
		t.Fatal(err)
	}
	if ap.GetThresholds().GetVersion() != 2 || setting(ap.GetThresholds(), "outflow.large.amount.MASS") != "500" ||
		ap.GetProposal().GetState() != cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_APPROVED || ap.GetProposal().GetAppliedVersion() != 2 {
		t.Fatalf("approval: %v", ap)
	}
	// The admin's proposal was made against version 1: refused, re-propose.
	_, err = ops1.ApproveThresholdChange(ctx, &cwv1.ApproveThresholdChangeRequest{ProposalId: p2.GetProposal().GetId()})
	if code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "propose the change again") {
		t.Fatalf("stale approval: %v", err)
	}
	if _, err := ops1.RejectThresholdChange(ctx, &cwv1.RejectThresholdChangeRequest{ProposalId: p2.GetProposal().GetId()}); code(err) != codes.InvalidArgument {
		t.Fatalf("rejection without reason: %v", err)
	}
	rj, err := ops1.RejectThresholdChange(ctx, &cwv1.RejectThresholdChangeRequest{ProposalId: p2.GetProposal().GetId(), Reason: "superseded by tp-1"})
	if err != nil || rj.GetProposal().GetState() != cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_REJECTED || rj.GetProposal().GetDecidedBy() != "ops-1" {
		t.Fatalf("reject: %v %v", rj, err)
	}
	pending, err := ops1.ListThresholdProposals(ctx, &cwv1.ListThresholdProposalsRequest{State: cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_PENDING})
	if err != nil || len(pending.GetProposals()) != 0 {
		t.Fatalf("pending after decisions: %v %v", pending, err)
	}
	all, err := ops1.ListThresholdProposals(ctx, &cwv1.ListThresholdProposalsRequest{})
	if err != nil || len(all.GetProposals()) != 2 || all.GetProposals()[0].GetId() != p2.GetProposal().GetId() {
		t.Fatalf("all proposals: %v %v", all, err)
	}

	// The audit names proposer and approver and carries the back-test.
	hist, err := ops1.ListThresholdChanges(ctx, &cwv1.ListThresholdChangesRequest{})
	if err != nil || len(hist.GetChanges()) != 1 {
		t.Fatalf("history: %v %v", hist, err)
	}
	h := hist.GetChanges()[0]
	if h.GetKind() != cwv1.ThresholdChangeKind_THRESHOLD_CHANGE_KIND_PROPOSAL || h.GetProposer() != "ops-1" || h.GetApprover() != "ops-2" ||
		h.GetActor() != "ops-2" || h.GetReason() != propose.Reason || h.GetApprovalReason() != "back-test looks right" ||
		h.GetProposalId() != prop.GetId() || h.GetBacktest().GetRules()[0].GetAdded() != 2 ||
		h.GetChanges()[0].GetOldValue() != "10000" || h.GetChanges()[0].GetNewValue() != "500" {
		t.Fatalf("audit entry: %v", h)
	}

	// Scoring uses the approved value, on this and on a newly started
	// instance (which loads it from Redis).
	four := cfg
	four.ThresholdsFourEyes = true
	other := s.start(four)
	s.produce(s.topics.Events, outflow("fe-2", "U1", t0.Add(time.Hour), 60000))
	sg := s.waitSignal(5*time.Second, func(sg *cwv1.RiskSignal) bool { return sg.GetRuleId() == "outflow.large" })
	if e := sg.GetExplanation(); e.GetThresholdVersion() != 2 || e.GetThreshold() != "500.00" || e.GetEventIds()[0] != "fe-2" {
		t.Fatalf("signal after approval: %v", sg)
	}

	// Four-eyes enforced: the admin's direct change becomes a proposal
	// there, with the server's back-test over the events topic; nothing
	// goes live.
	enforced := cwv1.NewRulesAdminServiceClient(s.dial(other.app.GRPCAddr(), "admin-1", auth.RoleAdmin, ""))
	_, err = enforced.UpdateThresholds(ctx, &cwv1.UpdateThresholdsRequest{ExpectedVersion: 2, Reason: "direct", Settings: change[:0:0]})
	if code(err) != codes.InvalidArgument {
		t.Fatalf("empty direct change under four-eyes: %v", err)
	}
	up, err := enforced.UpdateThresholds(ctx, &cwv1.UpdateThresholdsRequest{ExpectedVersion: 2, Reason: "direct",
		Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "700"}}})
	if err != nil {
		t.Fatalf("direct change under four-eyes: %v", err)
	}
	if pr := up.GetProposal(); pr.GetId() == "" || pr.GetState() != cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_PENDING ||
		pr.GetProposer() != "admin-1" || pr.GetBaseVersion() != 2 || up.GetChange() != nil || up.GetThresholds().GetVersion() != 2 ||
		pr.GetBacktest().GetComputedBy() != "rules service" || pr.GetBacktest().GetEventsAccepted() != 2 || pr.GetBacktest().GetBaselineVersion() != 2 {
		t.Fatalf("direct change under four-eyes, want a pending proposal with the server's back-test: %v", up)
	}
	if cur, err := ops2.GetThresholds(ctx, &cwv1.GetThresholdsRequest{}); err != nil || cur.GetThresholds().GetVersion() != 2 {
		t.Fatalf("a four-eyes set went live: %v %v", cur, err)
	}
	if _, err := enforced.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 2, Reason: "via four-eyes",
		Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "700"}}, Backtest: testBacktest(2)}); err != nil {
		t.Fatalf("proposal under four-eyes: %v", err)
	}
	// Without four-eyes the admin may still change directly, audited as direct.
	d, err := admin1.UpdateThresholds(ctx, &cwv1.UpdateThresholdsRequest{ExpectedVersion: 2, Reason: "direct fix",
		Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "600"}}})
	if err != nil || d.GetChange().GetKind() != cwv1.ThresholdChangeKind_THRESHOLD_CHANGE_KIND_DIRECT || d.GetChange().GetProposer() != "" {
		t.Fatalf("direct change: %v %v", d, err)
	}
}
