package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/replay"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Four-eyes threshold changes (SPEC §6): one principal (ops or admin)
// proposes a change with a reason and a back-test of it; a second one
// approves or rejects it. Only approval changes the set in force, on the
// version the proposal was made against. Who may call what is auth.Access;
// that the second principal is not the proposer is checked here, atomically
// with the decision (store.Approve, store.Reject).

// errBadBacktest refuses a proposal whose back-test is missing or does not
// describe a replay of the proposed change.
var errBadBacktest = errors.New("back-test")

const maxBacktestBytes = 64 << 10

// checkBacktest makes sure a proposal carries a back-test worth showing an
// approver: a named history with events, run from the version the change
// is proposed against.
func checkBacktest(bt *cwv1.ThresholdBacktest, expected int64) error {
	switch {
	case bt == nil:
		return fmt.Errorf("%w required: this rules service runs none itself; run the change over a history first (churnctl thresholds propose --customers F --events F does)", errBadBacktest)
	case strings.TrimSpace(bt.GetHistory()) == "":
		return fmt.Errorf("%w: history is empty: name what was replayed", errBadBacktest)
	case bt.GetEventsAccepted() <= 0:
		return fmt.Errorf("%w replayed no events: give it the history the change should be judged on", errBadBacktest)
	case bt.GetBaselineVersion() != expected:
		return fmt.Errorf("%w was run from threshold version %d but the change is proposed against version %d: run it again from the version in force",
			errBadBacktest, bt.GetBaselineVersion(), expected)
	case bt.GetStart() == nil || bt.GetEnd() == nil || bt.GetEnd().AsTime().Before(bt.GetStart().AsTime()):
		return fmt.Errorf("%w: start and end of the replayed event time are required, end not before start", errBadBacktest)
	case bt.GetAlertsBefore() < 0 || bt.GetAlertsAfter() < 0:
		return fmt.Errorf("%w: negative alert counts", errBadBacktest)
	case proto.Size(bt) > maxBacktestBytes:
		return fmt.Errorf("%w larger than %d bytes: keep it to the per-rule summary", errBadBacktest, maxBacktestBytes)
	}
	for _, r := range bt.GetRules() {
		if r.GetRuleId() == "" {
			return fmt.Errorf("%w: a per-rule line without a rule id", errBadBacktest)
		}
	}
	return nil
}

// ProposeThresholdChange records a pending proposal; nothing goes live.
// Without a back-test in the request the server runs its own.
func (s *Server) ProposeThresholdChange(ctx context.Context, req *cwv1.ProposeThresholdChangeRequest) (*cwv1.ProposeThresholdChangeResponse, error) {
	p, _ := auth.FromContext(ctx)
	prop, err := s.propose(ctx, p, req.GetExpectedVersion(), req.GetSettings(), req.GetReason(), req.GetBacktest())
	if err != nil {
		return nil, err
	}
	return &cwv1.ProposeThresholdChangeResponse{Proposal: prop}, nil
}

// propose records a pending proposal by p: with bt as given by the client,
// or, when bt is nil, with the server's back-test (UpdateThresholds under
// four-eyes comes here too).
func (s *Server) propose(ctx context.Context, p auth.Principal, expected int64, change []*cwv1.ThresholdSetting, reason string,
	bt *cwv1.ThresholdBacktest) (*cwv1.ThresholdProposal, error) {
	reason, err := checkChange(reason, change, expected)
	if err != nil {
		return nil, err
	}
	if bt == nil && s.Backtest != nil {
		if bt, err = s.serverBacktest(ctx, expected, change); err != nil {
			return nil, err
		}
	}
	if err := checkBacktest(bt, expected); err != nil {
		return nil, s.toStatus(err)
	}
	raw, err := proto.Marshal(bt)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "back-test: "+err.Error())
	}
	settings := make([]store.Setting, len(change))
	for i, kv := range change {
		settings[i] = store.Setting{Key: kv.GetKey(), Value: kv.GetValue()}
	}
	prop, err := s.Store.Propose(ctx, expected, settings, p.Subject, reason, raw, s.now(), s.proposalTTL(), applySettings(change))
	if err != nil {
		return nil, s.toStatus(err)
	}
	s.Log.InfoContext(ctx, "threshold change proposed", "proposal", prop.ID, "base_version", prop.BaseVersion,
		"proposer", p.Subject, "keys", len(prop.Changes), "backtest_by", bt.GetComputedBy())
	return proposalProto(prop), nil
}

// serverBacktest replays the service's recent events with the set in
// force (which must be version expected) and with the change on top of it.
func (s *Server) serverBacktest(ctx context.Context, expected int64, change []*cwv1.ThresholdSetting) (*cwv1.ThresholdBacktest, error) {
	cur, err := s.Store.Thresholds(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	if cur.Values.Version != expected {
		return nil, s.toStatus(fmt.Errorf("%w: current version is %d, expected %d", store.ErrStaleVersion, cur.Values.Version, expected))
	}
	live, next := cur.Values, cur.Values
	if err := applySettings(change)(&next); err != nil {
		return nil, s.toStatus(err)
	}
	if s.BacktestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.BacktestTimeout)
		defer cancel()
	}
	start := s.now()
	bt, err := s.Backtest(ctx, &live, &next)
	switch {
	case errors.Is(err, replay.ErrNoHistory), errors.Is(err, replay.ErrTooLarge):
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return nil, status.Errorf(codes.DeadlineExceeded, "the back-test over the events topic did not finish within %s: "+
			"lower CHURNWATCH_THRESHOLDS_BACKTEST_DAYS, raise CHURNWATCH_THRESHOLDS_BACKTEST_TIMEOUT, or back-test on files (churnctl thresholds propose --customers F --events F)",
			s.BacktestTimeout)
	case errors.Is(err, context.Canceled):
		return nil, status.FromContextError(err).Err()
	case err != nil:
		s.Log.WarnContext(ctx, "threshold back-test failed", "err", err)
		return nil, status.Errorf(codes.Unavailable, "the back-test over the events topic failed (%v): retry, or back-test on files (churnctl thresholds propose --customers F --events F)", err)
	}
	s.Log.InfoContext(ctx, "threshold back-test done", "events", bt.GetEventsAccepted(), "customers", bt.GetCustomers(),
		"alerts_before", bt.GetAlertsBefore(), "alerts_after", bt.GetAlertsAfter(), "took", s.now().Sub(start).String())
	return bt, nil
}

// ListThresholdProposals lists proposals, newest first.
func (s *Server) ListThresholdProposals(ctx context.Context, req *cwv1.ListThresholdProposalsRequest) (*cwv1.ListThresholdProposalsResponse, error) {
	if id := req.GetProposalId(); id != "" {
		prop, err := s.Store.Proposal(ctx, id, s.now())
		if err != nil {
			return nil, s.toStatus(err)
		}
		return &cwv1.ListThresholdProposalsResponse{Proposals: []*cwv1.ThresholdProposal{proposalProto(prop)}}, nil
	}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = defaultChanges
	}
	limit = min(limit, maxChanges)
	all, err := s.Store.Proposals(ctx, s.now())
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &cwv1.ListThresholdProposalsResponse{}
	for _, prop := range all {
		if len(resp.Proposals) == limit {
			break
		}
		if st := req.GetState(); st != cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_UNSPECIFIED && stateProto(prop.State) != st {
			continue
		}
		resp.Proposals = append(resp.Proposals, proposalProto(prop))
	}
	return resp, nil
}

// ApproveThresholdChange puts a pending proposal live.
func (s *Server) ApproveThresholdChange(ctx context.Context, req *cwv1.ApproveThresholdChangeRequest) (*cwv1.ApproveThresholdChangeResponse, error) {
	p, _ := auth.FromContext(ctx)
	id, note := req.GetProposalId(), strings.TrimSpace(req.GetReason())
	if err := checkDecision(id, note, false); err != nil {
		return nil, err
	}
	set, change, prop, err := s.Store.Approve(ctx, id, p.Subject, note, s.now(), func(prop store.Proposal, th *engine.Thresholds) error {
		settings := make([]*cwv1.ThresholdSetting, len(prop.Settings))
		for i, kv := range prop.Settings {
			settings[i] = &cwv1.ThresholdSetting{Key: kv.Key, Value: kv.Value}
		}
		return applySettings(settings)(th)
	})
	if err != nil {
		return nil, s.decisionStatus(ctx, p, cwv1.RulesAdminService_ApproveThresholdChange_FullMethodName, "approve", err)
	}
	s.Log.InfoContext(ctx, "threshold proposal approved", "proposal", id, "version", change.Version,
		"proposer", prop.Proposer, "approver", p.Subject, "keys", len(change.Changes))
	s.Watcher.set(set.Values)
	return &cwv1.ApproveThresholdChangeResponse{Thresholds: setProto(set), Change: changeProto(change), Proposal: proposalProto(prop)}, nil
}

// RejectThresholdChange closes a pending proposal with a reason.
func (s *Server) RejectThresholdChange(ctx context.Context, req *cwv1.RejectThresholdChangeRequest) (*cwv1.RejectThresholdChangeResponse, error) {
	p, _ := auth.FromContext(ctx)
	id, reason := req.GetProposalId(), strings.TrimSpace(req.GetReason())
	if err := checkDecision(id, reason, true); err != nil {
		return nil, err
	}
	prop, err := s.Store.Reject(ctx, id, p.Subject, reason, s.now())
	if err != nil {
		return nil, s.decisionStatus(ctx, p, cwv1.RulesAdminService_RejectThresholdChange_FullMethodName, "reject", err)
	}
	s.Log.InfoContext(ctx, "threshold proposal rejected", "proposal", id, "proposer", prop.Proposer, "by", p.Subject)
	return &cwv1.RejectThresholdChangeResponse{Proposal: proposalProto(prop)}, nil
}

func checkDecision(id, reason string, reasonRequired bool) error {
	switch {
	case id == "" || len(id) > 64:
		return status.Error(codes.InvalidArgument, "proposal_id is required (churnctl thresholds proposals lists them)")
	case reasonRequired && reason == "":
		return status.Error(codes.InvalidArgument, "a reason is required: the proposer and the audit trail see it")
	case len(reason) > maxReason:
		return status.Error(codes.InvalidArgument, "reason longer than 500 characters")
	}
	return nil
}

// decisionStatus maps a refused approval or rejection; a proposer deciding
// its own proposal is a denial, logged as one.
func (s *Server) decisionStatus(ctx context.Context, p auth.Principal, method, verb string, err error) error {
	if errors.Is(err, store.ErrSelfDecision) {
		auth.LogDenied(ctx, s.Log, "permission denied", p, method, "proposer may not decide its own proposal", "")
		return status.Errorf(codes.PermissionDenied, "you proposed this change: a second principal (an admin, or ops other than you) must %s it", verb)
	}
	return s.toStatus(err)
}

func stateProto(st string) cwv1.ThresholdProposalState {
	switch st {
	case store.ProposalPending:
		return cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_PENDING
	case store.ProposalApproved:
		return cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_APPROVED
	case store.ProposalRejected:
		return cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_REJECTED
	case store.ProposalExpired:
		return cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_EXPIRED
	}
	return cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_UNSPECIFIED
}

// backtestProto decodes a stored back-test; one that no longer decodes is
// left out (it was validated when proposed).
func backtestProto(raw []byte) *cwv1.ThresholdBacktest {
	if len(raw) == 0 {
		return nil
	}
	var bt cwv1.ThresholdBacktest
	if proto.Unmarshal(raw, &bt) != nil {
		return nil
	}
	return &bt
}

func proposalProto(p store.Proposal) *cwv1.ThresholdProposal {
	out := &cwv1.ThresholdProposal{Id: p.ID, State: stateProto(p.State), BaseVersion: p.BaseVersion, Proposer: p.Proposer,
		Reason: p.Reason, ProposedAt: timestamppb.New(p.ProposedAt), ExpiresAt: timestamppb.New(p.ExpiresAt),
		Backtest: backtestProto(p.Backtest), DecidedBy: p.DecidedBy, DecisionReason: p.DecisionReason, AppliedVersion: p.AppliedVersion}
	if !p.DecidedAt.IsZero() {
		out.DecidedAt = timestamppb.New(p.DecidedAt)
	}
	for _, kv := range p.Settings {
		out.Settings = append(out.Settings, &cwv1.ThresholdSetting{Key: kv.Key, Value: kv.Value})
	}
	out.Changes = settingChangesProto(p.Changes)
	return out
}

func settingChangesProto(cs []store.SettingChange) []*cwv1.ThresholdSettingChange {
	out := make([]*cwv1.ThresholdSettingChange, 0, len(cs))
	for _, ch := range cs {
		out = append(out, &cwv1.ThresholdSettingChange{Key: ch.Key, OldValue: ch.Old, NewValue: ch.New})
	}
	return out
}
