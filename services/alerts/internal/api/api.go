// Package api serves AlertService over gRPC: lookups and listings from the
// store, lifecycle actions as store transactions decided by the alerting
// engine, Subscribe by package stream. Domain errors become gRPC status
// codes here and nowhere else.
package api

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/lifecycle"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/alerts/internal/stream"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// Server is AlertService. Roles are checked by the interceptor (Policy);
// here each alert is narrowed to the callers who may see it.
type Server struct {
	cwv1.UnimplementedAlertServiceServer
	store     *store.Store
	lifecycle *lifecycle.Service
	stream    *stream.Service
	log       *slog.Logger
}

// New serves AlertService from st, applying actions through lc and
// streaming through sub.
func New(st *store.Store, lc *lifecycle.Service, sub *stream.Service, log *slog.Logger) *Server {
	return &Server{store: st, lifecycle: lc, stream: sub, log: log}
}

// Subscribe streams the caller's alert updates (package stream).
func (s *Server) Subscribe(req *cwv1.SubscribeRequest, ss grpc.ServerStreamingServer[cwv1.SubscribeResponse]) error {
	p, err := principal(ss.Context())
	if err != nil {
		return err
	}
	return internal(s.stream.Subscribe(req, ss, p))
}

func principal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Principal{}, status.Error(codes.Unauthenticated, "no principal")
	}
	return p, nil
}

func internal(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	return status.Error(codes.Unavailable, "alert store unavailable; retry")
}

// lookup loads an alert the caller may see: NotFound when it does not
// exist, PermissionDenied (logged, no PII) when it is someone else's.
func (s *Server) lookup(ctx context.Context, p auth.Principal, id string, history bool) (*cwv1.Alert, error) {
	if _, ok := alerting.CustomerOf(id); !ok {
		return nil, status.Error(codes.InvalidArgument, "alert_id is not an alert id")
	}
	a, err := s.store.GetAlert(ctx, id, history)
	if err != nil {
		s.log.ErrorContext(ctx, "load alert", "err", err)
		return nil, internal(err)
	}
	if a == nil {
		return nil, status.Error(codes.NotFound, "no such alert")
	}
	if !alerting.Visible(p, a) {
		s.Denied(ctx, p, id)
		return nil, status.Error(codes.PermissionDenied, "this alert is not routed to you")
	}
	return a, nil
}

// Denied logs a refused alert access once. Alert ids contain the customer
// id: only their Ref is logged.
func (s *Server) Denied(ctx context.Context, p auth.Principal, id string) {
	method, _ := grpc.Method(ctx)
	auth.LogDenied(ctx, s.log, "alert access denied", p, method, "alert not routed to the principal ("+auth.ScopeOf(p.Role).String()+")", auth.Ref(id))
}

func (s *Server) GetAlert(ctx context.Context, req *cwv1.GetAlertRequest) (*cwv1.GetAlertResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	a, err := s.lookup(ctx, p, req.GetAlertId(), true)
	if err != nil {
		return nil, err
	}
	return &cwv1.GetAlertResponse{Alert: a}, nil
}

// act applies a lifecycle action to one alert transactionally.
func (s *Server) act(ctx context.Context, id string, fn func(a *cwv1.Alert) (alerting.Change, bool, error)) (*cwv1.Alert, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	cust, ok := alerting.CustomerOf(id)
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "alert_id is not an alert id")
	}
	var result *cwv1.Alert
	st, err := s.store.Transact(ctx, []string{cust}, nil, func(state map[string]*alerting.Customer) (*store.Step, error) {
		st := &store.Step{}
		open := state[cust].Open
		if open == nil || open.GetAlertId() != id {
			// Not the open alert: resolved, or unknown.
			a, err := s.store.GetAlert(ctx, id, false)
			if err != nil {
				return nil, err
			}
			if a == nil {
				return nil, status.Error(codes.NotFound, "no such alert")
			}
			open = a
		}
		if !alerting.Visible(p, open) {
			s.Denied(ctx, p, id)
			return nil, status.Error(codes.PermissionDenied, "this alert is not routed to you")
		}
		ch, changed, err := fn(open)
		if err != nil {
			return nil, err
		}
		result = open
		if changed {
			st.Add(ch, "")
			result = ch.Alert
		}
		return st, nil
	})
	if err != nil {
		switch {
		case errors.Is(err, alerting.ErrResolved):
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		case errors.Is(err, alerting.ErrOutcomeRequired), errors.Is(err, alerting.ErrSnoozeInPast),
			errors.Is(err, alerting.ErrManagerRequired), errors.Is(err, alerting.ErrNoteRequired):
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if _, ok := status.FromError(err); !ok || status.Code(err) == codes.Unknown {
			s.log.ErrorContext(ctx, "alert action", "err", err)
		}
		return nil, internal(err)
	}
	s.lifecycle.Record(ctx, st)
	return result, nil
}

func (s *Server) AcknowledgeAlert(ctx context.Context, req *cwv1.AcknowledgeAlertRequest) (*cwv1.AcknowledgeAlertResponse, error) {
	p, _ := auth.FromContext(ctx)
	a, err := s.act(ctx, req.GetAlertId(), func(a *cwv1.Alert) (alerting.Change, bool, error) {
		return s.lifecycle.Engine().Acknowledge(a, p.Subject, req.GetNote(), s.lifecycle.Now())
	})
	if err != nil {
		return nil, err
	}
	return &cwv1.AcknowledgeAlertResponse{Alert: a}, nil
}

func (s *Server) ResolveAlert(ctx context.Context, req *cwv1.ResolveAlertRequest) (*cwv1.ResolveAlertResponse, error) {
	p, _ := auth.FromContext(ctx)
	if req.GetOutcome() == cwv1.Outcome_OUTCOME_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, alerting.ErrOutcomeRequired.Error())
	}
	a, err := s.act(ctx, req.GetAlertId(), func(a *cwv1.Alert) (alerting.Change, bool, error) {
		ch, err := s.lifecycle.Engine().Resolve(a, req.GetOutcome(), p.Subject, req.GetNote(), s.lifecycle.Now())
		return ch, err == nil, err
	})
	if err != nil {
		return nil, err
	}
	return &cwv1.ResolveAlertResponse{Alert: a}, nil
}

func (s *Server) SnoozeAlert(ctx context.Context, req *cwv1.SnoozeAlertRequest) (*cwv1.SnoozeAlertResponse, error) {
	p, _ := auth.FromContext(ctx)
	if req.GetUntil() == nil {
		return nil, status.Error(codes.InvalidArgument, "until is required")
	}
	a, err := s.act(ctx, req.GetAlertId(), func(a *cwv1.Alert) (alerting.Change, bool, error) {
		ch, err := s.lifecycle.Engine().Snooze(a, req.GetUntil().AsTime(), p.Subject, req.GetNote(), s.lifecycle.Now())
		return ch, err == nil, err
	})
	if err != nil {
		return nil, err
	}
	return &cwv1.SnoozeAlertResponse{Alert: a}, nil
}

// ReassignAlert moves an open alert to another manager: branch heads for
// their branch's alerts, ops and admins for any; a manager may not hand
// its alerts away. The note is kept on the alert's history.
func (s *Server) ReassignAlert(ctx context.Context, req *cwv1.ReassignAlertRequest) (*cwv1.ReassignAlertResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if p.Role != auth.RoleBranchHead && p.Role != auth.RoleOps && p.Role != auth.RoleAdmin {
		s.Denied(ctx, p, req.GetAlertId())
		return nil, status.Error(codes.PermissionDenied, "only branch heads, ops and admins reassign alerts")
	}
	a, err := s.act(ctx, req.GetAlertId(), func(a *cwv1.Alert) (alerting.Change, bool, error) {
		return s.lifecycle.Engine().ReassignTo(a, req.GetManagerId(), p.Subject, req.GetNote(), s.lifecycle.Now())
	})
	if err != nil {
		return nil, err
	}
	return &cwv1.ReassignAlertResponse{Alert: a}, nil
}

const (
	defaultPageSize = 50
	maxPageSize     = 500
	// maxScan bounds the index entries one ListAlerts call reads when the
	// filters match little; the page token resumes where it stopped.
	maxScan = 5000
)

func (s *Server) ListAlerts(ctx context.Context, req *cwv1.ListAlertsRequest) (*cwv1.ListAlertsResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	aud, ok := alerting.AudienceOf(p)
	if !ok {
		s.Denied(ctx, p, "")
		return nil, status.Error(codes.PermissionDenied, "no alerts are routed to this principal")
	}
	key := store.AudienceIndex(aud)
	if m := req.GetManagerId(); m != "" {
		key = store.AudienceIndex(alerting.ManagerAudience(m)) // alerting.Visible still narrows it to the caller's
	}
	if c := req.GetCustomerId(); c != "" {
		key = store.CustomerIndex(c)
	}
	now := s.lifecycle.Now()
	if req.GetSort() != cwv1.ListAlertsSort_LIST_ALERTS_SORT_UNSPECIFIED {
		return s.listSorted(ctx, p, req, key, now)
	}
	size := int(req.GetPageSize())
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !strings.Contains(string(b), "|") {
			return nil, status.Error(codes.InvalidArgument, "bad page_token")
		}
		after = string(b)
	}
	resp := &cwv1.ListAlertsResponse{}
	last, more, err := s.store.ScanIndex(ctx, key, after, 200, maxScan, func(a *cwv1.Alert) (bool, error) {
		if alerting.Visible(p, a) && matches(req, a, now) {
			resp.Alerts = append(resp.Alerts, a)
		}
		return len(resp.Alerts) < size, nil
	})
	if err != nil {
		return nil, internal(err)
	}
	if more {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	return resp, nil
}

// listSorted serves ListAlerts sorted by severity or due time: the first
// maxScan entries of the index are filtered and sorted, and the page token
// is an offset into that order.
func (s *Server) listSorted(ctx context.Context, p auth.Principal, req *cwv1.ListAlertsRequest, key store.Index, now time.Time) (*cwv1.ListAlertsResponse, error) {
	size := int(req.GetPageSize())
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	off := 0
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		if err != nil || err2 != nil || !strings.HasPrefix(string(b), "o:") || n < 0 {
			return nil, status.Error(codes.InvalidArgument, "bad page_token")
		}
		off = n
	}
	var hits []*cwv1.Alert
	if _, _, err := s.store.ScanIndex(ctx, key, "", maxScan, maxScan, func(a *cwv1.Alert) (bool, error) {
		if alerting.Visible(p, a) && matches(req, a, now) {
			hits = append(hits, a)
		}
		return true, nil
	}); err != nil {
		return nil, internal(err)
	}
	due := func(a *cwv1.Alert) int64 {
		if d := a.GetAckDueAt(); d != nil && a.GetAcknowledgedAt() == nil {
			return d.AsTime().UnixMilli()
		}
		return math.MaxInt64
	}
	sort.SliceStable(hits, func(i, j int) bool {
		x, y := hits[i], hits[j]
		if req.GetSort() == cwv1.ListAlertsSort_LIST_ALERTS_SORT_SEVERITY && x.GetSeverity() != y.GetSeverity() {
			return x.GetSeverity() > y.GetSeverity()
		}
		return due(x) < due(y)
	})
	resp := &cwv1.ListAlertsResponse{}
	if off < len(hits) {
		end := min(off+size, len(hits))
		resp.Alerts = hits[off:end]
		if end < len(hits) {
			resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(end)))
		}
	}
	return resp, nil
}

// overdue: not acknowledged (open or escalated) past its deadline.
func overdue(a *cwv1.Alert, now time.Time) bool {
	st := a.GetState()
	return (st == cwv1.AlertState_ALERT_STATE_OPEN || st == cwv1.AlertState_ALERT_STATE_ESCALATED) &&
		a.GetAckDueAt() != nil && a.GetAckDueAt().AsTime().Before(now)
}

func matches(req *cwv1.ListAlertsRequest, a *cwv1.Alert, now time.Time) bool {
	if m := req.GetManagerId(); m != "" && a.GetManagerId() != m {
		return false
	}
	if req.GetOverdue() && !overdue(a, now) {
		return false
	}
	if len(req.GetStates()) > 0 && !slices.Contains(req.GetStates(), a.GetState()) {
		return false
	}
	if len(req.GetSeverities()) > 0 && !slices.Contains(req.GetSeverities(), a.GetSeverity()) {
		return false
	}
	if len(req.GetTiers()) > 0 && !slices.Contains(req.GetTiers(), a.GetTier()) {
		return false
	}
	if r := req.GetRuleId(); r != "" && !slices.ContainsFunc(a.GetReasons(), func(e *cwv1.Explanation) bool { return e.GetRuleId() == r }) {
		return false
	}
	return true
}

// GetRulePrecision reports outcome counts per rule over all resolved
// alerts. The figures are bank-wide aggregates without customer data, so
// every alert role sees the same report.
func (s *Server) GetRulePrecision(ctx context.Context, _ *cwv1.GetRulePrecisionRequest) (*cwv1.GetRulePrecisionResponse, error) {
	counts, err := s.store.PrecisionCounts(ctx)
	if err != nil {
		return nil, internal(err)
	}
	byRule := map[string]*cwv1.RulePrecision{}
	for f, v := range counts {
		rule, outcome, ok := strings.Cut(f, "|")
		if !ok {
			continue
		}
		rp := byRule[rule]
		if rp == nil {
			rp = &cwv1.RulePrecision{RuleId: rule}
			byRule[rule] = rp
		}
		var n int64
		for _, c := range v {
			n = n*10 + int64(c-'0')
		}
		switch outcome {
		case cwv1.Outcome_OUTCOME_RETAINED.String():
			rp.Retained += n
		case cwv1.Outcome_OUTCOME_CHURNED.String():
			rp.Churned += n
		case cwv1.Outcome_OUTCOME_UNREACHABLE.String():
			rp.Unreachable += n
		case cwv1.Outcome_OUTCOME_FALSE_ALARM.String():
			rp.FalseAlarm += n
		}
	}
	resp := &cwv1.GetRulePrecisionResponse{}
	for _, rp := range byRule {
		if d := rp.Retained + rp.Churned + rp.FalseAlarm; d > 0 {
			rp.Precision = float64(rp.Retained+rp.Churned) / float64(d)
		}
		resp.Rules = append(resp.Rules, rp)
	}
	sort.Slice(resp.Rules, func(i, j int) bool { return resp.Rules[i].RuleId < resp.Rules[j].RuleId })
	return resp, nil
}
