package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/redisx"
)

// Step is what one transaction writes.
type Step struct {
	Changes  []StagedChange
	Seen     map[string][]string // customer → merged signal ids
	Profiles []*cwv1.CustomerProfile
	DueDone  map[Deadline][]string // alert ids whose deadline entries are stale
}

// StagedChange is one alert change of a step with the trace it continues.
type StagedChange struct {
	Change      alerting.Change
	Traceparent string
}

// Add stages a change; tp is the traceparent of its cause ("" for none).
func (s *Step) Add(ch alerting.Change, tp string) {
	s.Changes = append(s.Changes, StagedChange{ch, tp})
}

func (s *Step) empty() bool {
	return len(s.Changes) == 0 && len(s.Seen) == 0 && len(s.Profiles) == 0 && len(s.DueDone) == 0
}

// Store is the alert service's Redis state.
type Store struct {
	rdb          redis.UniversalClient
	blocking     redis.UniversalClient // blocking stream reads hold a connection each
	retention    int
	signalMemory int
}

// Options shape the stored state.
type Options struct {
	// Retention bounds each audience stream (XADD MAXLEN ~).
	Retention int
	// SignalMemory bounds the merged signal ids kept per customer.
	SignalMemory int
}

// Open wraps rdb (the service's client) and opens a second client of cfg
// for the blocking stream reads, so that they never starve commands.
func Open(rdb redis.UniversalClient, cfg config.Common, o Options) (*Store, error) {
	blocking, err := redisx.New(cfg)
	if err != nil {
		return nil, err
	}
	return New(rdb, blocking, o), nil
}

// New is a store on rdb for commands and blocking for blocking reads (its
// own client); Close closes blocking.
func New(rdb, blocking redis.UniversalClient, o Options) *Store {
	if o.Retention == 0 {
		o.Retention = 100000
	}
	if o.SignalMemory == 0 {
		o.SignalMemory = 1000
	}
	return &Store{rdb: rdb, blocking: blocking, retention: o.Retention, signalMemory: o.SignalMemory}
}

// Close closes the blocking client (the service closes its own).
func (s *Store) Close() { _ = s.blocking.Close() }

// ErrConflict is returned when concurrent changes made a step rerun too often.
var ErrConflict = errors.New("concurrent change; retried too often")

// Transact loads the customers (profile, open alert, and whether each of
// sigIDs[customer] was merged), lets fn decide, and writes what fn staged
// atomically. The customers' open and profile keys are watched in the same
// round trip as the load, so a concurrent change (a human acting on an
// alert while a signal arrives) makes EXEC fail and the whole step rerun on
// fresh state.
func (s *Store) Transact(ctx context.Context, customers []string, sigIDs map[string][]string,
	fn func(map[string]*alerting.Customer) (*Step, error)) (*Step, error) {
	var out *Step
	// A ClusterClient picks the transaction's node by a watched key (every
	// alert key is in the {alerts} slot); the first customer's open key is
	// watched in the load anyway, so naming it here changes nothing else.
	var route []string
	if redisx.IsCluster(s.rdb) && len(customers) > 0 {
		route = []string{kOpen(customers[0])}
	}
	for attempt := 0; attempt < 20; attempt++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			state, err := s.load(ctx, tx, customers, sigIDs)
			if err != nil {
				return err
			}
			st, err := fn(state)
			if err != nil {
				return err
			}
			out = st
			if st.empty() {
				return nil
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error { return s.write(ctx, p, st) })
			return err
		}, route...)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		return out, err
	}
	return nil, ErrConflict
}

func (s *Store) load(ctx context.Context, tx *redis.Tx, customers []string, sigIDs map[string][]string) (map[string]*alerting.Customer, error) {
	type cmds struct {
		open, profile *redis.StringCmd
		seen          *redis.FloatSliceCmd
	}
	all := make(map[string]*cmds, len(customers))
	_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
		watch := make([]any, 0, 1+2*len(customers))
		watch = append(watch, "WATCH")
		for _, c := range customers {
			watch = append(watch, kOpen(c), kProfile(c))
		}
		p.Do(ctx, watch...)
		for _, c := range customers {
			cc := &cmds{open: p.Get(ctx, kOpen(c)), profile: p.Get(ctx, kProfile(c))}
			if ids := sigIDs[c]; len(ids) > 0 {
				cc.seen = p.ZMScore(ctx, kSigs(c), ids...)
			}
			all[c] = cc
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load customers: %w", err)
	}
	out := make(map[string]*alerting.Customer, len(customers))
	for _, c := range customers {
		cc := all[c]
		cust := &alerting.Customer{ID: c, Seen: map[string]bool{}}
		if b, err := cc.open.Bytes(); err == nil {
			a := &cwv1.Alert{}
			if err := proto.Unmarshal(b, a); err != nil {
				return nil, fmt.Errorf("decode open alert: %w", err)
			}
			cust.Open = a
		} else if !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("load open alert: %w", err)
		}
		if b, err := cc.profile.Bytes(); err == nil {
			p := &cwv1.CustomerProfile{}
			if err := proto.Unmarshal(b, p); err != nil {
				return nil, fmt.Errorf("decode profile: %w", err)
			}
			cust.Profile = p
		} else if !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("load profile: %w", err)
		}
		if cc.seen != nil {
			scores, err := cc.seen.Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("load merged signals: %w", err)
			}
			// ZMSCORE answers nil (0 here) for a missing member; merged ids
			// are stored with a positive score.
			for i, id := range sigIDs[c] {
				if i < len(scores) && scores[i] > 0 {
					cust.Seen[id] = true
				}
			}
		}
		out[c] = cust
	}
	return out, nil
}

func (s *Store) write(ctx context.Context, p redis.Pipeliner, st *Step) error {
	nowMs := float64(time.Now().UnixMilli())
	for c, ids := range st.Seen {
		zs := make([]redis.Z, len(ids))
		for i, id := range ids {
			zs[i] = redis.Z{Score: nowMs, Member: id}
		}
		p.ZAdd(ctx, kSigs(c), zs...)
		p.ZRemRangeByRank(ctx, kSigs(c), 0, int64(-s.signalMemory-1))
	}
	for _, pr := range st.Profiles {
		b, err := proto.Marshal(pr)
		if err != nil {
			return err
		}
		p.Set(ctx, kProfile(pr.GetCustomerId()), b, 0)
	}
	for key, ids := range st.DueDone {
		for _, id := range ids {
			p.ZRem(ctx, string(key), id)
		}
	}
	for _, sc := range st.Changes {
		if err := s.writeChange(ctx, p, sc); err != nil {
			return err
		}
	}
	return nil
}

func statsField(a *cwv1.Alert) string {
	return strings.TrimPrefix(a.GetSeverity().String(), "SEVERITY_") + "|" + strings.TrimPrefix(a.GetTier().String(), "TIER_")
}

func (s *Store) writeChange(ctx context.Context, p redis.Pipeliner, sc StagedChange) error {
	ch, a, b := sc.Change, sc.Change.Alert, sc.Change.Before
	c, id := a.GetCustomerId(), a.GetAlertId()
	body, err := proto.Marshal(a)
	if err != nil {
		return err
	}
	hist, err := proto.Marshal(ch.History())
	if err != nil {
		return err
	}
	if alerting.Open(a) {
		p.Set(ctx, kOpen(c), body, 0)
	} else {
		p.Del(ctx, kOpen(c))
		p.Set(ctx, kAlert(c, id), body, 0)
		// Each distinct rule of a resolved alert counts once for precision.
		seen := map[string]bool{}
		for _, r := range a.GetReasons() {
			if !seen[r.GetRuleId()] {
				seen[r.GetRuleId()] = true
				p.HIncrBy(ctx, kPrecision, r.GetRuleId()+"|"+a.GetOutcome().String(), 1)
			}
		}
	}
	p.RPush(ctx, kHistory(c, id), hist)

	// Listing indexes follow the routing.
	member := indexMember(a)
	if b == nil {
		p.ZAdd(ctx, kIndex(alerting.AudienceAll), redis.Z{Member: member})
		p.ZAdd(ctx, kCustomerAlerts(c), redis.Z{Member: member})
	}
	if b == nil || b.GetManagerId() != a.GetManagerId() {
		if b.GetManagerId() != "" {
			p.ZRem(ctx, kIndex(alerting.ManagerAudience(b.GetManagerId())), member)
		}
		if a.GetManagerId() != "" {
			p.ZAdd(ctx, kIndex(alerting.ManagerAudience(a.GetManagerId())), redis.Z{Member: member})
		}
	}
	if b == nil || b.GetBranchId() != a.GetBranchId() {
		if b.GetBranchId() != "" {
			p.ZRem(ctx, kIndex(alerting.BranchAudience(b.GetBranchId())), member)
		}
		if a.GetBranchId() != "" {
			p.ZAdd(ctx, kIndex(alerting.BranchAudience(a.GetBranchId())), redis.Z{Member: member})
		}
	}

	if alerting.Open(a) && !alerting.Open(b) {
		p.ZAdd(ctx, kOpenIndex, redis.Z{Member: member})
	} else if !alerting.Open(a) && alerting.Open(b) {
		p.ZRem(ctx, kOpenIndex, member)
	}

	// Wall-clock deadlines.
	if a.GetState() == cwv1.AlertState_ALERT_STATE_OPEN && a.GetAckDueAt() != nil {
		p.ZAdd(ctx, kDueAck, redis.Z{Score: float64(a.GetAckDueAt().AsTime().UnixMilli()), Member: id})
	} else if b.GetAckDueAt() != nil {
		p.ZRem(ctx, kDueAck, id)
	}
	if a.GetState() == cwv1.AlertState_ALERT_STATE_SNOOZED {
		p.ZAdd(ctx, kDueSnooze, redis.Z{Score: float64(a.GetSnoozedUntil().AsTime().UnixMilli()), Member: id})
	} else if b.GetState() == cwv1.AlertState_ALERT_STATE_SNOOZED {
		p.ZRem(ctx, kDueSnooze, id)
	}

	// Open-alert counts for the gauge, exact because this runs in the same
	// transaction as the change.
	if alerting.Open(b) {
		p.HIncrBy(ctx, kOpenStats, statsField(b), -1)
	}
	if alerting.Open(a) {
		p.HIncrBy(ctx, kOpenStats, statsField(a), 1)
	}

	upd, err := proto.Marshal(ch.Update())
	if err != nil {
		return err
	}
	auds := alerting.Audiences(ch)
	keys := make([]string, 0, len(auds))
	var flags strings.Builder
	names := make([]string, 0, len(auds))
	for _, au := range auds {
		keys = append(keys, kStream(au.Name))
		if au.Notify {
			flags.WriteByte('1')
		} else {
			flags.WriteByte('0')
		}
		if au.Name != alerting.AudienceAll {
			names = append(names, au.Name)
		}
	}
	var ingested int64
	if (ch.Kind == cwv1.AlertChange_ALERT_CHANGE_CREATED || ch.Kind == cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED) && !ch.IngestedAt.IsZero() {
		ingested = ch.IngestedAt.UnixMilli()
	}
	// EVAL, not EVALSHA: a NOSCRIPT (Redis restarted) inside MULTI would
	// fail this command alone and commit the rest.
	p.Eval(ctx, appendUpdate, keys, s.retention, upd, flags.String(), strings.Join(names, ","), sc.Traceparent, strconv.FormatInt(ingested, 10))
	return nil
}
