// Package kpiservice serves KpiService (the retention KPIs of SPEC §9) from
// the facts the rules service keeps, and keeps the alert facts from the
// alerts topic. The figures themselves are computed by package kpi.
package kpiservice

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Reader is the part of the store the KPIs are read from.
type Reader interface {
	Clocks(ctx context.Context) (map[int32]int64, error)
	KPIDeltas(ctx context.Context) (kpi.Deltas, error)
	AlertFacts(ctx context.Context, months []string) (map[string][]kpi.AlertFact, []kpi.AlertFact, error)
}

// Server is KpiService.
type Server struct {
	cwv1.UnimplementedKpiServiceServer
	Store Reader
	Log   *slog.Logger
	Now   func() time.Time // wall clock; nil = time.Now
}

// GetKpis answers for the bank (ops, admin; optionally one branch) or for
// the caller's own branch (branch heads, whatever branch they ask for).
// Managers are refused by the access table (auth.Access).
func (s *Server) GetKpis(ctx context.Context, req *cwv1.GetKpisRequest) (*cwv1.GetKpisResponse, error) {
	months, err := kpi.Window(req.GetMonth(), int(req.GetMonthsBack()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	branch := req.GetBranchId()
	p, _ := auth.FromContext(ctx)
	switch auth.ScopeOf(p.Role) {
	case auth.ScopeAll:
	case auth.ScopeBranch:
		if branch != "" && branch != p.Branch {
			auth.LogDenied(ctx, s.Log, "KPI access denied", p, cwv1.KpiService_GetKpis_FullMethodName, "another branch's KPIs", "")
			return nil, status.Error(codes.PermissionDenied, "a branch head sees the KPIs of their own branch only: leave branch_id empty or ask for "+p.Branch)
		}
		if p.Branch == "" {
			return nil, status.Error(codes.PermissionDenied, "your token names no branch: ask your IdP administrator for a branch claim")
		}
		branch = p.Branch
	default:
		auth.LogDenied(ctx, s.Log, "KPI access denied", p, cwv1.KpiService_GetKpis_FullMethodName, "role without KPI scope", "")
		return nil, status.Error(codes.PermissionDenied, "KPIs are for branch heads, ops and admin")
	}
	clocks, err := s.Store.Clocks(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	deltas, err := s.Store.KPIDeltas(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	facts, open, err := s.Store.AlertFacts(ctx, months)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	in := kpi.Input{Month: req.GetMonth(), MonthsBack: len(months), Branch: branch, Deltas: deltas, Alerts: facts, Open: open, Now: now()}
	for _, ms := range clocks {
		in.Clocks = append(in.Clocks, time.UnixMilli(ms).UTC())
	}
	resp, err := kpi.Compute(in)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return resp, nil
}

func (s *Server) toStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, kpi.ErrRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrCorrupt), errors.Is(err, kpi.ErrStored):
		s.Log.ErrorContext(ctx, "stored KPI facts unreadable", "err", err)
		return status.Error(codes.DataLoss, "stored KPI facts unreadable: see the rules service log")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.Log.WarnContext(ctx, "KPI call failed", "err", err)
	return status.Error(codes.Unavailable, "state store unavailable: retry; if it persists check the rules service's Redis")
}
