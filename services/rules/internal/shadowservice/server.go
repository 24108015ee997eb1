// Package shadowservice is ShadowService: it starts, stops and lists shadow
// threshold sets, tells the events consumer which sets run (Registry), and
// serves the report comparing each set's alerts with the live ones (the
// live alerts' facts and outcomes are the KPI facts the rules service
// already keeps from churnwatch.alerts.v1; no consumer of its own).
package shadowservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
	"github.com/churnwatch/churnwatch/services/rules/internal/scoring"
	"github.com/churnwatch/churnwatch/services/rules/internal/shadow"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Registry keeps the running sets for the consumer, read again from Redis
// at most every Interval (a set started on another instance is scored here
// from then on).
type Registry struct {
	Store    *store.Store
	Interval time.Duration
	Log      *slog.Logger

	mu   sync.Mutex
	at   time.Time
	sets []scoring.Shadow
}

// Running returns the running sets (the last good list if Redis is away).
func (r *Registry) Running() []scoring.Shadow {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.at) < r.Interval && !r.at.IsZero() {
		return r.sets
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.refresh(ctx); err != nil {
		r.Log.Warn("shadow sets not re-read; scoring the last known ones", "err", err)
	}
	return r.sets
}

// refresh reads the sets; the caller holds mu.
func (r *Registry) refresh(ctx context.Context) error {
	all, err := r.Store.Shadows(ctx)
	if err != nil {
		return err
	}
	var sets []scoring.Shadow
	for _, s := range all {
		if !s.Stopped.IsZero() {
			continue
		}
		th, err := shadow.FromValues(s.Values)
		if err != nil {
			return err
		}
		sets = append(sets, scoring.Shadow{Name: s.Name, Thresholds: &th})
	}
	r.sets, r.at = sets, time.Now()
	return nil
}

// Invalidate makes the next Running read the sets again.
func (r *Registry) Invalidate() {
	r.mu.Lock()
	r.at = time.Time{}
	r.mu.Unlock()
}

// Server is ShadowService.
type Server struct {
	cwv1.UnimplementedShadowServiceServer
	Store    *store.Store
	Registry *Registry
	Log      *slog.Logger
	Now      func() time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// StartShadow starts a set from the live thresholds with settings changed.
func (s *Server) StartShadow(ctx context.Context, req *cwv1.StartShadowRequest) (*cwv1.StartShadowResponse, error) {
	p, _ := auth.FromContext(ctx)
	name := req.GetName()
	if err := shadow.CheckName(name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	reason := strings.TrimSpace(req.GetReason())
	if reason == "" || len(reason) > 500 {
		return nil, status.Error(codes.InvalidArgument, "a reason of 1 to 500 characters is required: it is shown with the set")
	}
	all, err := s.Store.Shadows(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	running := 0
	for _, set := range all {
		if set.Name == name {
			return nil, s.toStatus(store.ErrShadowExists)
		}
		if set.Stopped.IsZero() {
			running++
		}
	}
	if running >= shadow.MaxRunning {
		return nil, status.Error(codes.ResourceExhausted, shadow.ErrTooMany.Error())
	}
	live, err := s.Store.Thresholds(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	var settings []shadow.Setting
	for _, kv := range req.GetSettings() {
		settings = append(settings, shadow.Setting{Key: kv.GetKey(), Value: kv.GetValue()})
	}
	th, changed, err := shadow.Thresholds(live.Values, settings)
	if err != nil {
		return nil, s.toStatus(err)
	}
	// Customers quiet at the start come in through the live deadlines.
	seeded, err := s.Store.SeedShadowDeadlines(ctx, name)
	if err != nil {
		return nil, s.toStatus(err)
	}
	set := store.ShadowSet{Name: name, Changed: changed, Values: shadow.Values(&th), BaseVersion: live.Values.Version,
		Reason: reason, Actor: p.Subject, Started: s.now().UTC()}
	if err := s.Store.StartShadow(ctx, set); err != nil {
		return nil, s.toStatus(err)
	}
	s.Registry.Invalidate()
	s.Log.InfoContext(ctx, "shadow set started", "name", name, "actor", p.Subject, "keys", len(changed), "deadlines", seeded)
	return &cwv1.StartShadowResponse{Shadow: setProto(set)}, nil
}

// StopShadow stops a set.
func (s *Server) StopShadow(ctx context.Context, req *cwv1.StopShadowRequest) (*cwv1.StopShadowResponse, error) {
	p, _ := auth.FromContext(ctx)
	set, err := s.Store.StopShadow(ctx, req.GetName(), s.now().UTC())
	if err != nil {
		return nil, s.toStatus(err)
	}
	s.Registry.Invalidate()
	s.Log.InfoContext(ctx, "shadow set stopped", "name", set.Name, "actor", p.Subject)
	return &cwv1.StopShadowResponse{Shadow: setProto(set)}, nil
}

// PurgeShadow deletes a stopped set's data (store.PurgeShadow).
func (s *Server) PurgeShadow(ctx context.Context, req *cwv1.PurgeShadowRequest) (*cwv1.PurgeShadowResponse, error) {
	p, _ := auth.FromContext(ctx)
	began := time.Now()
	set, n, err := s.Store.PurgeShadow(ctx, req.GetName(), s.now().UTC())
	if err != nil {
		return nil, s.toStatus(err)
	}
	s.Log.InfoContext(ctx, "shadow set purged", "name", set.Name, "actor", p.Subject, "customers", n, "took", time.Since(began).Round(time.Millisecond))
	return &cwv1.PurgeShadowResponse{Shadow: setProto(set), Customers: n}, nil
}

// errPurged is GetShadowReport's answer for a purged set named alone.
var errPurged = errors.New("the shadow set was purged: its alerts are deleted and it has no report any more")

// ListShadows lists every set, running or stopped.
func (s *Server) ListShadows(ctx context.Context, _ *cwv1.ListShadowsRequest) (*cwv1.ListShadowsResponse, error) {
	all, err := s.Store.Shadows(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &cwv1.ListShadowsResponse{}
	for _, set := range all {
		resp.Shadows = append(resp.Shadows, setProto(set))
	}
	return resp, nil
}

// GetShadowReport compares the live alerts since the earliest reported
// set started with each set's alerts.
func (s *Server) GetShadowReport(ctx context.Context, req *cwv1.GetShadowReportRequest) (*cwv1.GetShadowReportResponse, error) {
	all, err := s.Store.Shadows(ctx)
	if err != nil {
		return nil, s.toStatus(err)
	}
	var sets []store.ShadowSet
	for _, set := range all {
		if req.GetName() != "" && set.Name != req.GetName() {
			continue
		}
		if !set.Purged.IsZero() {
			if req.GetName() != "" {
				return nil, s.toStatus(fmt.Errorf("%w (%s)", errPurged, set.Purged.UTC().Format(time.RFC3339)))
			}
			continue
		}
		sets = append(sets, set)
	}
	if req.GetName() != "" && len(sets) == 0 {
		return nil, s.toStatus(store.ErrShadowUnknown)
	}
	from := s.now()
	for _, set := range sets {
		if set.Started.Before(from) {
			from = set.Started
		}
	}
	var months []string
	for m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(s.now()); m = m.AddDate(0, 1, 0) {
		months = append(months, kpi.Month(m))
	}
	byMonth, open, err := s.Store.AlertFacts(ctx, months)
	if err != nil {
		return nil, s.toStatus(err)
	}
	latest := map[string]kpi.AlertFact{}
	add := func(f kpi.AlertFact) {
		if cur, ok := latest[f.ID]; !ok || f.Version > cur.Version {
			latest[f.ID] = f
		}
	}
	for _, fs := range byMonth {
		for _, f := range fs {
			add(f)
		}
	}
	for _, f := range open {
		add(f)
	}
	liveSet := shadow.SetAlerts{Name: shadow.LiveName, Live: true}
	outcomes := map[string]cwv1.Outcome{}
	resolvedAt := map[string]int64{}
	for _, f := range latest {
		cust, ok := alerting.CustomerOf(f.ID)
		if !ok || time.Unix(f.Created, 0).Before(from.Truncate(time.Second)) {
			continue
		}
		sum := &cwv1.ShadowAlertSummary{CustomerId: cust, RuleIds: f.Rules, Tier: cwv1.Tier(cwv1.Tier_value["TIER_"+f.Tier])}
		liveSet.Alerts = append(liveSet.Alerts, sum)
		if o := cwv1.Outcome(cwv1.Outcome_value["OUTCOME_"+f.Outcome]); f.Resolved != 0 && f.Resolved >= resolvedAt[cust] {
			outcomes[cust], resolvedAt[cust] = o, f.Resolved
		}
	}
	in := []shadow.SetAlerts{liveSet}
	full := map[string][]*cwv1.Alert{}
	for _, set := range sets {
		raw, err := s.Store.Shadow(set.Name).AllAlerts(ctx)
		if err != nil {
			return nil, s.toStatus(err)
		}
		sa := shadow.SetAlerts{Name: set.Name}
		for _, b := range raw {
			a := &cwv1.Alert{}
			if err := proto.Unmarshal(b, a); err != nil {
				return nil, s.toStatus(errors.Join(store.ErrCorrupt, err))
			}
			sa.Alerts = append(sa.Alerts, shadow.Summary(a))
			full[set.Name] = append(full[set.Name], a)
		}
		in = append(in, sa)
	}
	resp := &cwv1.GetShadowReportResponse{Sets: shadow.Report(in, outcomes)}
	for i, r := range resp.Sets {
		if i == 0 {
			continue
		}
		r.Shadow = setProto(sets[i-1])
		r.ShadowAlerts = full[r.Name]
	}
	return resp, nil
}

func setProto(set store.ShadowSet) *cwv1.ShadowSet {
	out := &cwv1.ShadowSet{Name: set.Name, Reason: set.Reason, Actor: set.Actor, StartedAt: timestamppb.New(set.Started), BaseVersion: set.BaseVersion}
	if !set.Stopped.IsZero() {
		out.StoppedAt = timestamppb.New(set.Stopped)
	}
	if !set.Purged.IsZero() {
		out.PurgedAt = timestamppb.New(set.Purged)
	}
	for _, k := range sortedKeys(set.Changed) {
		out.Settings = append(out.Settings, &cwv1.ThresholdSetting{Key: k, Value: set.Changed[k]})
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func (s *Server) toStatus(err error) error {
	switch {
	case errors.Is(err, store.ErrShadowExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, store.ErrShadowUnknown):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrShadowRunning), errors.Is(err, store.ErrShadowJustStopped), errors.Is(err, errPurged):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, shadow.ErrNoSettings), errors.Is(err, engine.ErrUnknownKey), errors.Is(err, engine.ErrBadValue),
		errors.Is(err, engine.ErrOutOfRange), errors.Is(err, engine.ErrUnknownTier):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrCorrupt):
		s.Log.Error("stored shadow data unreadable", "err", err)
		return status.Error(codes.DataLoss, "stored shadow data unreadable")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.Log.Warn("shadow call failed", "err", err)
	return status.Error(codes.Unavailable, "state store unavailable; retry")
}
