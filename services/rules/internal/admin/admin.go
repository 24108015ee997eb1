// Package admin serves churnwatch.v1.RulesAdminService: live threshold
// tuning with optimistic concurrency and an audit trail, and the risk
// explanation of one customer. It also keeps every instance's in-memory
// threshold set current (Watcher).
package admin

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Watcher holds the current threshold set of this instance and reloads it
// from Redis when its version changes.
type Watcher struct {
	Store    *store.Store
	Interval time.Duration
	Log      *slog.Logger
	// OnChange is told every newly loaded version (metrics).
	OnChange func(version int64)
	cur      atomic.Pointer[engine.Thresholds]
}

// Current returns the set in force; never nil. Callers must not modify it.
func (w *Watcher) Current() *engine.Thresholds {
	if th := w.cur.Load(); th != nil {
		return th
	}
	th := engine.DefaultThresholds()
	w.cur.CompareAndSwap(nil, &th)
	return w.cur.Load()
}

// Refresh loads the stored set once.
func (w *Watcher) Refresh(ctx context.Context) error {
	set, err := w.Store.Thresholds(ctx)
	if err != nil {
		return err
	}
	w.set(set.Values)
	return nil
}

func (w *Watcher) set(th engine.Thresholds) {
	if old := w.cur.Load(); old != nil && old.Version == th.Version {
		return
	}
	w.cur.Store(&th)
	if w.Log != nil {
		w.Log.Info("threshold set in force", "version", th.Version)
	}
	if w.OnChange != nil {
		w.OnChange(th.Version)
	}
}

// Run polls until ctx ends. Polling (rather than pub/sub) cannot miss a
// change across a Redis restart; a version check is one small GET.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := w.Refresh(ctx); err != nil && ctx.Err() == nil {
				w.Log.Warn("reload thresholds", "err", err)
			}
		}
	}
}

// Server implements RulesAdminService.
type Server struct {
	cwv1.UnimplementedRulesAdminServiceServer
	Store   *store.Store
	Watcher *Watcher
	Log     *slog.Logger
	Now     func() time.Time
	// FourEyes turns a direct UpdateThresholds into a proposal a second
	// principal approves (CHURNWATCH_THRESHOLDS_FOUR_EYES).
	FourEyes bool
	// Backtest runs the server's back-test of a proposed set next against
	// the set in force live (replay.Backtester.Run); nil: a proposal must
	// carry its client's back-test.
	Backtest func(ctx context.Context, live, next *engine.Thresholds) (*cwv1.ThresholdBacktest, error)
	// BacktestTimeout bounds one server back-test
	// (CHURNWATCH_THRESHOLDS_BACKTEST_TIMEOUT); 0 = no bound but the call's.
	BacktestTimeout time.Duration
	// ProposalTTL is how long a proposal waits for its decision
	// (CHURNWATCH_THRESHOLDS_PROPOSAL_TTL); 0 = DefaultProposalTTL.
	ProposalTTL time.Duration
}

// DefaultProposalTTL is how long a proposal stays open by default.
const DefaultProposalTTL = 7 * 24 * time.Hour

// maxChanges bounds one ListThresholdChanges reply.
const (
	defaultChanges = 50
	maxChanges     = 1000
)

// GetThresholds returns the current set.
func (s *Server) GetThresholds(ctx context.Context, _ *cwv1.GetThresholdsRequest) (*cwv1.GetThresholdsResponse, error) {
	set, err := s.Store.Thresholds(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	return &cwv1.GetThresholdsResponse{Thresholds: setProto(set)}, nil
}

// UpdateThresholds applies settings on top of expected_version.
func (s *Server) UpdateThresholds(ctx context.Context, req *cwv1.UpdateThresholdsRequest) (*cwv1.UpdateThresholdsResponse, error) {
	p, _ := auth.FromContext(ctx)
	if s.FourEyes {
		prop, err := s.propose(ctx, p, req.GetExpectedVersion(), req.GetSettings(), req.GetReason(), nil)
		if err != nil {
			return nil, err
		}
		cur, err := s.Store.Thresholds(ctx)
		if err != nil {
			return nil, s.toStatus(err)
		}
		return &cwv1.UpdateThresholdsResponse{Thresholds: setProto(cur), Proposal: prop}, nil
	}
	reason, err := checkChange(req.GetReason(), req.GetSettings(), req.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	set, change, err := s.Store.Update(ctx, req.GetExpectedVersion(), p.Subject, reason, s.now(), applySettings(req.GetSettings()))
	if err != nil {
		return nil, s.toStatus(err)
	}
	s.Log.InfoContext(ctx, "thresholds updated", "version", change.Version, "actor", p.Subject, "keys", len(change.Changes))
	s.Watcher.set(set.Values)
	return &cwv1.UpdateThresholdsResponse{Thresholds: setProto(set), Change: changeProto(change)}, nil
}

// checkChange validates what a direct change and a proposal both need.
func checkChange(reason string, settings []*cwv1.ThresholdSetting, expected int64) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", status.Error(codes.InvalidArgument, "a reason is required: it goes into the audit trail")
	case len(reason) > maxReason:
		return "", status.Error(codes.InvalidArgument, "reason longer than 500 characters")
	case len(settings) == 0:
		return "", status.Error(codes.InvalidArgument, "no settings to change")
	case len(settings) > maxSettings:
		return "", status.Errorf(codes.InvalidArgument, "%d settings in one change: at most %d", len(settings), maxSettings)
	case expected <= 0:
		return "", status.Error(codes.InvalidArgument, "expected_version is required (GetThresholds tells the current one)")
	}
	return reason, nil
}

const (
	maxReason   = 500
	maxSettings = 500
)

// applySettings sets each key on a copy of the set in force and validates
// the result; a change of no value is refused.
func applySettings(settings []*cwv1.ThresholdSetting) func(th *engine.Thresholds) error {
	return func(th *engine.Thresholds) error {
		before := store.Settings(th)
		for _, kv := range settings {
			if err := th.Set(kv.GetKey(), kv.GetValue()); err != nil {
				return err
			}
		}
		if err := th.Validate(); err != nil {
			return err
		}
		if len(store.Diff(before, store.Settings(th))) > 0 {
			return nil
		}
		return errNoChange
	}
}

// ListThresholdChanges returns the audit trail, newest first.
func (s *Server) ListThresholdChanges(ctx context.Context, req *cwv1.ListThresholdChangesRequest) (*cwv1.ListThresholdChangesResponse, error) {
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = defaultChanges
	}
	limit = min(limit, maxChanges)
	cs, err := s.Store.Changes(ctx, limit)
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &cwv1.ListThresholdChangesResponse{}
	for _, c := range cs {
		resp.Changes = append(resp.Changes, changeProto(c))
	}
	return resp, nil
}

// GetCustomerRisk explains one customer's risk. Managers see only their
// customers and branch heads only their branch's (the customer record
// decides); a customer without a record is visible to ops and admin only.
// Refusals do not reveal whether the customer exists.
func (s *Server) GetCustomerRisk(ctx context.Context, req *cwv1.GetCustomerRiskRequest) (*cwv1.GetCustomerRiskResponse, error) {
	id := req.GetCustomerId()
	if id == "" || len(id) > 64 {
		return nil, status.Error(codes.InvalidArgument, "customer_id is required (≤ 64 characters)")
	}
	c, err := s.Store.Customer(ctx, id)
	if err != nil {
		return nil, s.toStatus(err)
	}
	// The scope comes from the one policy table (auth.ScopeOf): managers see
	// their customers, branch heads their branch's, ops and admin all.
	p, _ := auth.FromContext(ctx)
	if auth.ScopeOf(p.Role) != auth.ScopeAll && (!c.Known || !p.Sees(c.Profile.Manager, c.Profile.Branch)) {
		auth.LogDenied(ctx, s.Log, "customer risk access denied", p, cwv1.RulesAdminService_GetCustomerRisk_FullMethodName,
			"customer outside the principal's scope ("+auth.ScopeOf(p.Role).String()+")", auth.Ref(id))
		return nil, status.Error(codes.PermissionDenied, "this customer is outside your scope ("+auth.ScopeOf(p.Role).String()+")")
	}
	if c.Envelope == nil && !c.Known {
		return nil, status.Errorf(codes.NotFound, "customer %s: no events or record seen", id)
	}
	tier, tierErr := engine.ParseTier(c.Profile.Tier)
	resp := &cwv1.GetCustomerRiskResponse{
		CustomerId:       id,
		Tier:             convert.TierProto(tier),
		KnownCustomer:    c.Known && tierErr == nil,
		Stage:            cwv1.Stage_STAGE_ACTIVE,
		Severity:         cwv1.Severity_SEVERITY_LOW,
		ThresholdVersion: s.Watcher.Current().Version,
	}
	if c.Envelope == nil {
		return resp, nil
	}
	env, err := store.UnmarshalEnvelope(c.Envelope)
	var st engine.State
	if err == nil {
		err = st.UnmarshalBinary(env.State)
	}
	if err != nil {
		return nil, status.Errorf(codes.DataLoss, "customer state unreadable: %v", err)
	}
	clocks, err := s.Store.Clocks(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	now := st.Clock()
	resp.Partition = env.Partition
	if ms, ok := clocks[env.Partition]; ok {
		pc := time.UnixMilli(ms).UTC()
		resp.PartitionClock = timestamppb.New(pc)
		if pc.After(now) {
			now = pc
		}
	}
	stage, score, sev, live := st.Risk(now)
	resp.Stage, resp.Score, resp.Severity = convert.StageProto(stage), int32(score), convert.SeverityProto(sev)
	if la := st.LastActivity(); !la.IsZero() {
		resp.LastActivity = timestamppb.New(la)
	}
	for _, sg := range live {
		resp.LiveSignals = append(resp.LiveSignals, convert.Signal(sg, convert.Source{Partition: env.Partition}))
	}
	resp.Daily = dailyProto(&st, now)
	return resp, nil
}

// dailyProto is the customer's last engine.HistoryDays days up to now's day.
func dailyProto(st *engine.State, now time.Time) []*cwv1.CustomerDay {
	days := st.Daily(now, engine.HistoryDays)
	out := make([]*cwv1.CustomerDay, len(days))
	for i, d := range days {
		out[i] = &cwv1.CustomerDay{Date: d.Date.Format(time.DateOnly), Transactions: int32(d.Transactions)}
		if d.HasBalance {
			out[i].BalanceMinor, out[i].Currency = &d.Balance, st.Currency()
		}
	}
	return out
}

func (s *Server) proposalTTL() time.Duration {
	if s.ProposalTTL > 0 {
		return s.ProposalTTL
	}
	return DefaultProposalTTL
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// errNoChange refuses an update that would change no value: a new version
// identical to the old one would only blur the audit trail.
var errNoChange = errors.New("the settings change no value")

// toStatus maps domain errors to gRPC codes at the edge.
func (s *Server) toStatus(err error) error {
	switch {
	case errors.Is(err, errNoChange):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrStaleVersion):
		return status.Error(codes.FailedPrecondition, err.Error()+"; read the thresholds again (churnctl thresholds show) and retry on the current version")
	case errors.Is(err, store.ErrStaleProposal), errors.Is(err, store.ErrNotPending):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, store.ErrNoProposal):
		return status.Error(codes.NotFound, err.Error()+" (churnctl thresholds proposals lists them)")
	case errors.Is(err, errBadBacktest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, err.Error()+"; read the thresholds again and retry")
	case errors.Is(err, engine.ErrUnknownKey), errors.Is(err, engine.ErrBadValue),
		errors.Is(err, engine.ErrOutOfRange), errors.Is(err, engine.ErrUnknownTier):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrCorrupt):
		s.Log.Error("stored data unreadable", "err", err)
		return status.Error(codes.DataLoss, "stored data unreadable")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.Log.Warn("rules admin call failed", "err", err)
	return status.Error(codes.Unavailable, "state store unavailable")
}

func setProto(set store.ThresholdSet) *cwv1.ThresholdSet {
	out := &cwv1.ThresholdSet{Version: set.Values.Version, UpdatedBy: set.UpdatedBy, Reason: set.Reason}
	if !set.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(set.UpdatedAt)
	}
	for _, kv := range store.Settings(&set.Values) {
		out.Settings = append(out.Settings, &cwv1.ThresholdSetting{Key: kv.Key, Value: kv.New})
	}
	return out
}

func changeProto(c store.ThresholdChange) *cwv1.ThresholdChange {
	out := &cwv1.ThresholdChange{Version: c.Version, PreviousVersion: c.PreviousVersion, Actor: c.Actor,
		ChangedAt: timestamppb.New(c.ChangedAt), Reason: c.Reason, Changes: settingChangesProto(c.Changes),
		Kind: cwv1.ThresholdChangeKind_THRESHOLD_CHANGE_KIND_DIRECT}
	if c.Kind == store.KindProposal {
		out.Kind = cwv1.ThresholdChangeKind_THRESHOLD_CHANGE_KIND_PROPOSAL
		out.ProposalId, out.Proposer, out.Approver, out.ApprovalReason = c.ProposalID, c.Proposer, c.Approver, c.ApprovalReason
		out.Backtest = backtestProto(c.Backtest)
	}
	return out
}
