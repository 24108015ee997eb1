package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

func init() {
	Register(&Command{Name: "thresholds propose", Args: "RULE.FIELD[.TIER]=VALUE … --reason \"…\" [--customers F --events F [--labels F] | --mapping M] [--json]",
		Summary: "propose a threshold change for a second principal to approve (ops, admin), with its back-test", Run: thresholdsPropose,
		Help: `By default the rules service back-tests the change itself before it records
the proposal: it replays its events topic over the last
CHURNWATCH_THRESHOLDS_BACKTEST_DAYS (90) days of event time through the same
engine as churnctl backtest --compare, once with the thresholds in force and
once with the change, and scores both on the alert outcomes recorded so far
(RETAINED/CHURNED real, FALSE_ALARM not; docs/rules.md says how they are
matched). The call waits for it (at most CHURNWATCH_THRESHOLDS_BACKTEST_TIMEOUT,
2m).

With --customers/--events (or --mapping) the back-test runs here instead, over
those files (with --labels: precision and recall on the labels), and the
service stores it as sent. Either way the proposal carries alerts before and
after per rule and tier for the approver. Nothing goes live until a second
principal approves (churnctl thresholds approve ID).`})
	Register(&Command{Name: "thresholds proposals", Args: "[--state pending|approved|rejected|expired|all] [--limit N] [--json]",
		Summary: "four-eyes threshold proposals, newest first, with their back-test", Run: thresholdsProposals})
	Register(&Command{Name: "thresholds approve", Args: "PROPOSAL_ID [--reason \"…\"] [--json]",
		Summary: "approve another principal's threshold proposal: it goes live as the next version", Run: thresholdsApprove})
	Register(&Command{Name: "thresholds reject", Args: "PROPOSAL_ID --reason \"…\" [--json]",
		Summary: "reject another principal's threshold proposal, with a reason", Run: thresholdsReject})
}

// parseChange reads the RULE.FIELD[.TIER]=VALUE arguments and the reason
// of a direct change or a proposal.
func parseChange(pos []string, reason string) ([]*cwv1.ThresholdSetting, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, Usagef("--reason is required")
	}
	if len(pos) == 0 {
		return nil, Usagef("name at least one RULE.FIELD[.TIER]=VALUE, e.g. outflow.large.amount.MASS=5000")
	}
	var settings []*cwv1.ThresholdSetting
	for _, p := range pos {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || v == "" {
			return nil, Usagef("%q: want RULE.FIELD[.TIER]=VALUE", p)
		}
		settings = append(settings, &cwv1.ThresholdSetting{Key: k, Value: v})
	}
	return settings, nil
}

// liveThresholds is the set in force as the engine's value.
func liveThresholds(set *cwv1.ThresholdSet) (*engine.Thresholds, error) {
	th := engine.DefaultThresholds()
	for _, kv := range set.GetSettings() {
		if err := th.Set(kv.GetKey(), kv.GetValue()); err != nil {
			return nil, fmt.Errorf("the rules service's threshold %s=%s is unknown to this churnctl (%w): use a churnctl of the service's version", kv.GetKey(), kv.GetValue(), err)
		}
	}
	th.Version = set.GetVersion()
	return &th, nil
}

// compareRuns is the back-test a proposal carries (backtest.Compare per
// rule and tier).
func compareRuns(cur, prop *backtestRun, history string, baseline int64) *cwv1.ThresholdBacktest {
	res := cur.res
	bt := &cwv1.ThresholdBacktest{History: history, Customers: int64(res.Counts.Customers - res.Counts.CustomersRejected),
		EventsAccepted: int64(res.Counts.Accepted), EventsRejected: int64(res.Counts.Rejected), BaselineVersion: baseline,
		AlertsBefore: int32(len(cur.res.Alerts)), AlertsAfter: int32(len(prop.res.Alerts)), ComputedBy: "churnctl thresholds propose",
		Rules: backtest.Compare(cur.res, prop.res)}
	if !res.Start.IsZero() {
		bt.Start, bt.End = timestamppb.New(res.Start), timestamppb.New(res.End)
	}
	if cur.det != nil {
		bt.DetectionBefore, bt.DetectionAfter = detectionProto(cur.det), detectionProto(prop.det)
	}
	return bt
}

func detectionProto(d *backtest.Detection) *cwv1.BacktestDetection {
	return &cwv1.BacktestDetection{Precision: d.Precision, Recall: d.Recall, MedianLeadDays: d.MedianLeadDays, LabelledCustomers: int32(d.Customers)}
}

func thresholdsPropose(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds propose")
	reason := fs.String("reason", "", "why (required; the approver and the audit trail see it)")
	hf := addHistoryFlags(fs)
	asJSON := fs.Bool("json", false, "the proposal as one JSON object (with its id)")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	settings, err := parseChange(pos, *reason)
	if err != nil {
		return err
	}
	var rp *replayer
	if hf.given() {
		if rp, err = hf.load(env); err != nil {
			return err
		}
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	cur, err := c.GetThresholds(ctx, &cwv1.GetThresholdsRequest{})
	if err != nil {
		return RPCError("rules", err)
	}
	req := &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: cur.GetThresholds().GetVersion(), Settings: settings, Reason: *reason}
	if rp != nil {
		if req.Backtest, err = clientBacktest(rp, cur.GetThresholds(), settings); err != nil {
			return err
		}
	}
	resp, err := c.ProposeThresholdChange(ctx, req)
	if err != nil {
		return RPCError("rules", err)
	}
	p := resp.GetProposal()
	if *asJSON {
		return env.JSON(proposalJSON(p))
	}
	printProposal(env.Stdout, p)
	fmt.Fprintf(env.Stdout, "\na second principal (an admin, or ops other than you) decides it:\n  churnctl thresholds approve %s   |   churnctl thresholds reject %s --reason \"…\"\n", p.GetId(), p.GetId())
	return nil
}

// clientBacktest replays the files rp read with the set in force and with
// the change on top of it.
func clientBacktest(rp *replayer, set *cwv1.ThresholdSet, settings []*cwv1.ThresholdSetting) (*cwv1.ThresholdBacktest, error) {
	live, err := liveThresholds(set)
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	next := *live
	for _, kv := range settings {
		if err := next.Set(kv.GetKey(), kv.GetValue()); err != nil {
			return nil, Usagef("%s=%s: %v (churnctl thresholds show lists the keys)", kv.GetKey(), kv.GetValue(), err)
		}
	}
	if err := next.Validate(); err != nil {
		return nil, Usagef("the change leaves an invalid set: %v", err)
	}
	before, err := rp.run(fmt.Sprintf("version %d", live.Version), live)
	if err != nil {
		return nil, err
	}
	if before.res.Counts.Accepted == 0 {
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("the history has no accepted event to back-test on (%s)", rp.described)}
	}
	after, err := rp.run("proposed", &next)
	if err != nil {
		return nil, err
	}
	described := fmt.Sprintf("%s (%d customers, %d events read)", rp.described, before.res.Counts.Customers, before.res.Counts.Events)
	return compareRuns(before, after, described, live.Version), nil
}

var proposalStates = map[string]cwv1.ThresholdProposalState{
	"all":      cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_UNSPECIFIED,
	"pending":  cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_PENDING,
	"approved": cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_APPROVED,
	"rejected": cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_REJECTED,
	"expired":  cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_EXPIRED,
}

func thresholdsProposals(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds proposals")
	state := fs.String("state", "all", "pending, approved, rejected, expired or all")
	limit := fs.Int("limit", 50, "how many, newest first")
	asJSON := fs.Bool("json", false, "one JSON object per proposal")
	if pos, err := Parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return Usagef("thresholds proposals takes no arguments")
	}
	st, ok := proposalStates[strings.ToLower(*state)]
	if !ok {
		return Usagef("--state %q: want pending, approved, rejected, expired or all", *state)
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.ListThresholdProposals(ctx, &cwv1.ListThresholdProposalsRequest{State: st, Limit: int32(*limit)})
	if err != nil {
		return RPCError("rules", err)
	}
	for i, p := range resp.GetProposals() {
		if *asJSON {
			if err := env.JSON(proposalJSON(p)); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(env.Stdout)
		}
		printProposal(env.Stdout, p)
	}
	if len(resp.GetProposals()) == 0 && !*asJSON {
		fmt.Fprintf(env.Stdout, "no %s threshold proposals\n", strings.TrimPrefix(*state, "all"))
	}
	return nil
}

func proposalIDArg(pos []string, name string) (string, error) {
	if len(pos) != 1 {
		return "", Usagef("%s needs exactly one proposal id (churnctl thresholds proposals --state pending lists them)", name)
	}
	return pos[0], nil
}

func thresholdsApprove(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds approve")
	reason := fs.String("reason", "", "optional note for the audit trail")
	asJSON := fs.Bool("json", false, "the audited change as one JSON object")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	id, err := proposalIDArg(pos, "thresholds approve")
	if err != nil {
		return err
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.ApproveThresholdChange(ctx, &cwv1.ApproveThresholdChangeRequest{ProposalId: id, Reason: *reason})
	if err != nil {
		return RPCError("rules", err)
	}
	if *asJSON {
		return env.JSON(changeJSON(resp.GetChange()))
	}
	ch := resp.GetChange()
	fmt.Fprintf(env.Stdout, "approved %s (proposed by %s): threshold set version %d (was %d) is live\n", id, ch.GetProposer(), ch.GetVersion(), ch.GetPreviousVersion())
	for _, kv := range ch.GetChanges() {
		fmt.Fprintf(env.Stdout, "  %-46s %s → %s\n", kv.GetKey(), kv.GetOldValue(), kv.GetNewValue())
	}
	return nil
}

func thresholdsReject(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "thresholds reject")
	reason := fs.String("reason", "", "why (required; the proposer and the audit trail see it)")
	asJSON := fs.Bool("json", false, "the proposal as one JSON object")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	id, err := proposalIDArg(pos, "thresholds reject")
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return Usagef("--reason is required")
	}
	c, done, err := rulesClient(env)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.RejectThresholdChange(ctx, &cwv1.RejectThresholdChangeRequest{ProposalId: id, Reason: *reason})
	if err != nil {
		return RPCError("rules", err)
	}
	if *asJSON {
		return env.JSON(proposalJSON(resp.GetProposal()))
	}
	fmt.Fprintf(env.Stdout, "rejected %s (proposed by %s): %s\n", id, resp.GetProposal().GetProposer(), *reason)
	return nil
}

// ---- output ----

type ruleDeltaJSON struct {
	Rule    string `json:"rule"`
	Tier    string `json:"tier"`
	Before  int32  `json:"before"`
	After   int32  `json:"after"`
	Added   int32  `json:"added"`
	Removed int32  `json:"removed"`
}

type detectionJSON struct {
	Precision         float64 `json:"precision"`
	Recall            float64 `json:"recall"`
	MedianLeadDays    float64 `json:"medianLeadDays"`
	LabelledCustomers int32   `json:"labelledCustomers"`
}

type backtestJSON struct {
	History         string          `json:"history"`
	Start           string          `json:"start,omitempty"`
	End             string          `json:"end,omitempty"`
	Customers       int64           `json:"customers"`
	EventsAccepted  int64           `json:"eventsAccepted"`
	EventsRejected  int64           `json:"eventsRejected"`
	BaselineVersion int64           `json:"baselineVersion"`
	AlertsBefore    int32           `json:"alertsBefore"`
	AlertsAfter     int32           `json:"alertsAfter"`
	Rules           []ruleDeltaJSON `json:"rules"`
	DetectionBefore *detectionJSON  `json:"detectionBefore,omitempty"`
	DetectionAfter  *detectionJSON  `json:"detectionAfter,omitempty"`
	ComputedBy      string          `json:"computedBy,omitempty"`
}

func detectionOut(d *cwv1.BacktestDetection) *detectionJSON {
	if d == nil {
		return nil
	}
	return &detectionJSON{Precision: d.GetPrecision(), Recall: d.GetRecall(), MedianLeadDays: d.GetMedianLeadDays(), LabelledCustomers: d.GetLabelledCustomers()}
}

func backtestOut(bt *cwv1.ThresholdBacktest) *backtestJSON {
	if bt == nil {
		return nil
	}
	out := &backtestJSON{History: bt.GetHistory(), Start: ts(bt.GetStart()), End: ts(bt.GetEnd()), Customers: bt.GetCustomers(),
		EventsAccepted: bt.GetEventsAccepted(), EventsRejected: bt.GetEventsRejected(), BaselineVersion: bt.GetBaselineVersion(),
		AlertsBefore: bt.GetAlertsBefore(), AlertsAfter: bt.GetAlertsAfter(), Rules: []ruleDeltaJSON{},
		DetectionBefore: detectionOut(bt.GetDetectionBefore()), DetectionAfter: detectionOut(bt.GetDetectionAfter()), ComputedBy: bt.GetComputedBy()}
	for _, r := range bt.GetRules() {
		out.Rules = append(out.Rules, ruleDeltaJSON{Rule: r.GetRuleId(), Tier: enumName(r.GetTier().String(), "TIER_"),
			Before: r.GetBefore(), After: r.GetAfter(), Added: r.GetAdded(), Removed: r.GetRemoved()})
	}
	return out
}

type proposalJSONT struct {
	ID             string              `json:"id"`
	State          string              `json:"state"`
	BaseVersion    int64               `json:"baseVersion"`
	Proposer       string              `json:"proposer"`
	Reason         string              `json:"reason"`
	ProposedAt     string              `json:"proposedAt"`
	ExpiresAt      string              `json:"expiresAt"`
	Changes        []settingChangeJSON `json:"changes"`
	Backtest       *backtestJSON       `json:"backtest,omitempty"`
	DecidedBy      string              `json:"decidedBy,omitempty"`
	DecidedAt      string              `json:"decidedAt,omitempty"`
	DecisionReason string              `json:"decisionReason,omitempty"`
	AppliedVersion int64               `json:"appliedVersion,omitempty"`
}

func proposalJSON(p *cwv1.ThresholdProposal) proposalJSONT {
	out := proposalJSONT{ID: p.GetId(), State: enumName(p.GetState().String(), "THRESHOLD_PROPOSAL_STATE_"), BaseVersion: p.GetBaseVersion(),
		Proposer: p.GetProposer(), Reason: p.GetReason(), ProposedAt: ts(p.GetProposedAt()), ExpiresAt: ts(p.GetExpiresAt()),
		Changes: settingChanges(p.GetChanges()), Backtest: backtestOut(p.GetBacktest()), DecidedBy: p.GetDecidedBy(),
		DecidedAt: ts(p.GetDecidedAt()), DecisionReason: p.GetDecisionReason(), AppliedVersion: p.GetAppliedVersion()}
	return out
}

func settingChanges(cs []*cwv1.ThresholdSettingChange) []settingChangeJSON {
	out := []settingChangeJSON{}
	for _, kv := range cs {
		out = append(out, settingChangeJSON{Key: kv.GetKey(), Old: kv.GetOldValue(), New: kv.GetNewValue()})
	}
	return out
}

func printProposal(w io.Writer, p *cwv1.ThresholdProposal) {
	j := proposalJSON(p)
	fmt.Fprintf(w, "proposal %s  %s  against version %d  by %s at %s  (expires %s)\n", j.ID, j.State, j.BaseVersion, j.Proposer, j.ProposedAt, j.ExpiresAt)
	fmt.Fprintf(w, "  reason: %s\n", j.Reason)
	if j.DecidedBy != "" {
		fmt.Fprintf(w, "  %s by %s at %s", strings.ToLower(j.State), j.DecidedBy, j.DecidedAt)
		if j.DecisionReason != "" {
			fmt.Fprintf(w, ": %s", j.DecisionReason)
		}
		if j.AppliedVersion != 0 {
			fmt.Fprintf(w, " → version %d", j.AppliedVersion)
		}
		fmt.Fprintln(w)
	}
	for _, kv := range j.Changes {
		fmt.Fprintf(w, "  %-46s %s → %s\n", kv.Key, kv.Old, kv.New)
	}
	printBacktestSummary(w, j.Backtest, "  ")
}

// printBacktestSummary shows a proposal's back-test: alerts before and
// after, and per rule and tier what moved.
func printBacktestSummary(w io.Writer, bt *backtestJSON, indent string) {
	if bt == nil {
		return
	}
	fmt.Fprintf(w, "%sback-test from version %d over %s\n", indent, bt.BaselineVersion, bt.History)
	if bt.Start != "" {
		fmt.Fprintf(w, "%s  event time %s … %s; %d customers, %d events accepted, %d rejected\n", indent, bt.Start[:10], bt.End[:10],
			bt.Customers, bt.EventsAccepted, bt.EventsRejected)
	}
	added, removed := int32(0), int32(0)
	for _, r := range bt.Rules {
		added += r.Added
		removed += r.Removed
	}
	fmt.Fprintf(w, "%s  alerted customers %d → %d; per rule and tier +%d alerts gaining the rule, -%d losing it\n", indent,
		bt.AlertsBefore, bt.AlertsAfter, added, removed)
	if b, a := bt.DetectionBefore, bt.DetectionAfter; b != nil && a != nil {
		fmt.Fprintf(w, "%s  precision %.3f → %.3f, recall %.3f → %.3f, median lead %.1f → %.1f days (%d labelled customers)\n", indent,
			b.Precision, a.Precision, b.Recall, a.Recall, b.MedianLeadDays, a.MedianLeadDays, a.LabelledCustomers)
	}
	moved := 0
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s  RULE\tTIER\tBEFORE\tAFTER\tADDED\tREMOVED\n", indent)
	for _, r := range bt.Rules {
		if r.Added == 0 && r.Removed == 0 {
			continue
		}
		moved++
		fmt.Fprintf(tw, "%s  %s\t%s\t%d\t%d\t+%d\t-%d\n", indent, r.Rule, r.Tier, r.Before, r.After, r.Added, r.Removed)
	}
	if moved > 0 {
		tw.Flush()
	} else {
		fmt.Fprintf(w, "%s  no alert added or removed on this history\n", indent)
	}
}
