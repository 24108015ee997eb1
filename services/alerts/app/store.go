package app

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
	"github.com/churnwatch/churnwatch/services/platform/redisx"
)

// Redis layout. Every key of the alert service shares ONE hash tag,
// {alerts}, so that a whole step (customer keys, listing indexes,
// deadlines, counters and the audience streams, which appendUpdate writes
// in one script with one shared entry id) stays one MULTI/EXEC in one hash
// slot on Redis Cluster. This is the exception to "never one global tag":
// the step's atomicity spans customers and global indexes by design, and
// the alert keyspace is small (open and resolved alerts, streams capped at
// the retention). On a Cluster it therefore lives on one master; the
// rules state and the ingester's dedup marks, which are the bulk, spread
// over all of them. Spreading alerts too would need per-customer steps
// with an outbox for the global keys.
//
// Key names before issue 10 were the same without "{alerts}:" and with
// the customer tag: cw:{c:ID}:open → cw:{alerts}:c:ID:open, cw:idx:all →
// cw:{alerts}:idx:all, cw:s:all → cw:{alerts}:s:all, and so on
// (docs/deployment.md has the rename for an existing Redis).
//
//	cw:{alerts}:c:ID:open        the customer's open alert (proto); absent when none
//	cw:{alerts}:c:ID:a:ALERT     a resolved alert (proto)
//	cw:{alerts}:c:ID:h:ALERT     the alert's history (list of AlertHistoryEntry)
//	cw:{alerts}:c:ID:sigs        merged signal ids (zset, newest SignalMemory kept)
//	cw:{alerts}:c:ID:profile     the customer's profile (proto)
//	cw:{alerts}:c:ID:alerts      the customer's alerts (listing index)
//	cw:{alerts}:idx:all|m:MGR|b:BR  listing indexes: members "CREATEDMS|ALERT", score 0, read by lex
//	cw:{alerts}:idx:open         open alerts (same members), for ops' Subscribe snapshot
//	cw:{alerts}:due:ack          open alerts by acknowledgement deadline (ms)
//	cw:{alerts}:due:snooze       snoozed alerts by snooze end (ms)
//	cw:{alerts}:stats:open       open alerts per "SEVERITY|TIER"
//	cw:{alerts}:precision        resolved outcomes per "RULE|OUTCOME"
//	cw:{alerts}:s:all|m:MGR|b:BR audience streams (AlertUpdates); ids shared with cw:{alerts}:s:all
//	cw:{alerts}:pub:last         last cw:{alerts}:s:all id published to churnwatch.alerts.v1; set
//	                             only by the commitPosition script while cw:{alerts}:pub:lease is the
//	                             setter's token
//	cw:{alerts}:pub:lease        publisher lease: the holder's random token, PX
//	                             CHURNWATCH_PUBLISH_LEASE_TTL; only the holder publishes
const keyPrefix = "cw:{alerts}:"

func ctag(c string) string            { return keyPrefix + "c:" + c + ":" }
func kOpen(c string) string           { return ctag(c) + "open" }
func kAlert(c, id string) string      { return ctag(c) + "a:" + id }
func kHistory(c, id string) string    { return ctag(c) + "h:" + id }
func kSigs(c string) string           { return ctag(c) + "sigs" }
func kProfile(c string) string        { return ctag(c) + "profile" }
func kCustomerAlerts(c string) string { return ctag(c) + "alerts" }
func kIndex(aud string) string        { return keyPrefix + "idx:" + aud }
func kStream(aud string) string       { return keyPrefix + "s:" + aud }

const (
	kDueAck    = keyPrefix + "due:ack"
	kDueSnooze = keyPrefix + "due:snooze"
	kOpenStats = keyPrefix + "stats:open"
	kPrecision = keyPrefix + "precision"
	kPubLast   = keyPrefix + "pub:last"
	kPubLease  = keyPrefix + "pub:lease"
	kOpenIndex = keyPrefix + "idx:open"
	audAll     = "all"
)

func audManager(m string) string { return "m:" + m }
func audBranch(b string) string  { return "b:" + b }

func indexMember(a *cwv1.Alert) string {
	return fmt.Sprintf("%013d|%s", a.GetCreatedAt().AsTime().UnixMilli(), a.GetAlertId())
}

// appendUpdate appends one update to the all-stream and to each audience
// stream with the same entry id, so that one cursor id is valid for every
// stream and the live fan-out (which tails the all-stream) hands out the
// ids a subscriber replays by. KEYS: all-stream, audience streams.
// ARGV: maxlen, payload, notify flags ("1"/"0" per key), audiences (csv of
// KEYS[2..]), traceparent, ingested-at ms.
const appendUpdate = `
local n = tonumber(ARGV[1])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', n, '*', 'u', ARGV[2], 'n', ARGV[3], 'a', ARGV[4], 'tp', ARGV[5], 'i', ARGV[6])
for k = 2, #KEYS do
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', n, id, 'u', ARGV[2], 'n', string.sub(ARGV[3], k, k), 'tp', ARGV[5], 'i', ARGV[6])
end
return id
`

// audience is one stream an update goes to and whether its readers are
// notified.
type audience struct {
	name   string
	notify bool
}

// audiencesOf routes a change: ops/admin (all) and the manager get the
// change's notify; the branch head sees every change of the branch but is
// notified only for unassigned customers and escalated alerts; after a
// reassignment the previous manager and branch get it once, quietly.
func audiencesOf(ch alerting.Change) []audience {
	var out []audience
	idx := map[string]int{}
	add := func(name string, notify bool) {
		if i, ok := idx[name]; ok {
			out[i].notify = out[i].notify || notify
			return
		}
		idx[name] = len(out)
		out = append(out, audience{name, notify})
	}
	a := ch.Alert
	add(audAll, ch.Notify)
	if a.GetManagerId() != "" {
		add(audManager(a.GetManagerId()), ch.Notify)
	}
	if a.GetBranchId() != "" {
		add(audBranch(a.GetBranchId()), ch.Notify && (a.GetManagerId() == "" || a.GetState() == cwv1.AlertState_ALERT_STATE_ESCALATED))
	}
	if b := ch.Before; b != nil {
		if b.GetManagerId() != "" {
			add(audManager(b.GetManagerId()), false)
		}
		if b.GetBranchId() != "" {
			add(audBranch(b.GetBranchId()), false)
		}
	}
	return out
}

// staged is what one transaction writes.
type staged struct {
	changes  []stagedChange
	seen     map[string][]string // customer → merged signal ids
	profiles []*cwv1.CustomerProfile
	dueDone  map[string][]string // deadline key → alert ids whose entries are stale
}

type stagedChange struct {
	ch          alerting.Change
	traceparent string
}

func (s *staged) add(ch alerting.Change, tp string) {
	s.changes = append(s.changes, stagedChange{ch, tp})
}

func (s *staged) empty() bool {
	return len(s.changes) == 0 && len(s.seen) == 0 && len(s.profiles) == 0 && len(s.dueDone) == 0
}

// store is the alert service's Redis state.
type store struct {
	rdb          redis.UniversalClient
	retention    int
	signalMemory int
}

var errConflict = errors.New("concurrent change; retried too often")

// transact loads the customers (profile, open alert, and whether each of
// sigIDs[customer] was merged), lets fn decide, and writes what fn staged
// atomically. The customers' open and profile keys are watched in the same
// round trip as the load, so a concurrent change (a human acting on an
// alert while a signal arrives) makes EXEC fail and the whole step rerun on
// fresh state.
func (s *store) transact(ctx context.Context, customers []string, sigIDs map[string][]string,
	fn func(map[string]*alerting.Customer) (*staged, error)) (*staged, error) {
	var out *staged
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
	return nil, errConflict
}

func (s *store) load(ctx context.Context, tx *redis.Tx, customers []string, sigIDs map[string][]string) (map[string]*alerting.Customer, error) {
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

func (s *store) write(ctx context.Context, p redis.Pipeliner, st *staged) error {
	nowMs := float64(time.Now().UnixMilli())
	for c, ids := range st.seen {
		zs := make([]redis.Z, len(ids))
		for i, id := range ids {
			zs[i] = redis.Z{Score: nowMs, Member: id}
		}
		p.ZAdd(ctx, kSigs(c), zs...)
		p.ZRemRangeByRank(ctx, kSigs(c), 0, int64(-s.signalMemory-1))
	}
	for _, pr := range st.profiles {
		b, err := proto.Marshal(pr)
		if err != nil {
			return err
		}
		p.Set(ctx, kProfile(pr.GetCustomerId()), b, 0)
	}
	for key, ids := range st.dueDone {
		for _, id := range ids {
			p.ZRem(ctx, key, id)
		}
	}
	for _, sc := range st.changes {
		if err := s.writeChange(ctx, p, sc); err != nil {
			return err
		}
	}
	return nil
}

func statsField(a *cwv1.Alert) string {
	return strings.TrimPrefix(a.GetSeverity().String(), "SEVERITY_") + "|" + strings.TrimPrefix(a.GetTier().String(), "TIER_")
}

func (s *store) writeChange(ctx context.Context, p redis.Pipeliner, sc stagedChange) error {
	ch, a, b := sc.ch, sc.ch.Alert, sc.ch.Before
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
		p.ZAdd(ctx, kIndex(audAll), redis.Z{Member: member})
		p.ZAdd(ctx, kCustomerAlerts(c), redis.Z{Member: member})
	}
	if b == nil || b.GetManagerId() != a.GetManagerId() {
		if b.GetManagerId() != "" {
			p.ZRem(ctx, kIndex(audManager(b.GetManagerId())), member)
		}
		if a.GetManagerId() != "" {
			p.ZAdd(ctx, kIndex(audManager(a.GetManagerId())), redis.Z{Member: member})
		}
	}
	if b == nil || b.GetBranchId() != a.GetBranchId() {
		if b.GetBranchId() != "" {
			p.ZRem(ctx, kIndex(audBranch(b.GetBranchId())), member)
		}
		if a.GetBranchId() != "" {
			p.ZAdd(ctx, kIndex(audBranch(a.GetBranchId())), redis.Z{Member: member})
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
	auds := audiencesOf(ch)
	keys := make([]string, 0, len(auds))
	var flags strings.Builder
	names := make([]string, 0, len(auds))
	for _, au := range auds {
		keys = append(keys, kStream(au.name))
		if au.notify {
			flags.WriteByte('1')
		} else {
			flags.WriteByte('0')
		}
		if au.name != audAll {
			names = append(names, au.name)
		}
	}
	var ingested int64
	if (ch.Kind == cwv1.AlertChange_ALERT_CHANGE_CREATED || ch.Kind == cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED) && !ch.IngestedAt.IsZero() {
		ingested = ch.IngestedAt.UnixMilli()
	}
	// EVAL, not EVALSHA: a NOSCRIPT (Redis restarted) inside MULTI would
	// fail this command alone and commit the rest.
	p.Eval(ctx, appendUpdate, keys, s.retention, upd, flags.String(), strings.Join(names, ","), sc.traceparent, strconv.FormatInt(ingested, 10))
	return nil
}

// getAlert returns an alert by id with its history, or nil when unknown.
func (s *store) getAlert(ctx context.Context, id string, history bool) (*cwv1.Alert, error) {
	c, ok := alerting.CustomerOf(id)
	if !ok {
		return nil, nil
	}
	alerts, err := s.getAlerts(ctx, []string{id})
	if err != nil || alerts[0] == nil || !history {
		return alerts[0], err
	}
	raw, err := s.rdb.LRange(ctx, kHistory(c, id), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	a := alerts[0]
	for _, r := range raw {
		h := &cwv1.AlertHistoryEntry{}
		if err := proto.Unmarshal([]byte(r), h); err != nil {
			return nil, fmt.Errorf("decode history: %w", err)
		}
		a.History = append(a.History, h)
	}
	return a, nil
}

// getAlerts loads alerts by id in one round trip; unknown ids give nil.
func (s *store) getAlerts(ctx context.Context, ids []string) ([]*cwv1.Alert, error) {
	type pair struct{ open, closed *redis.StringCmd }
	cmds := make([]pair, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			if c, ok := alerting.CustomerOf(id); ok {
				cmds[i] = pair{p.Get(ctx, kOpen(c)), p.Get(ctx, kAlert(c, id))}
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load alerts: %w", err)
	}
	out := make([]*cwv1.Alert, len(ids))
	for i, id := range ids {
		if cmds[i].open == nil {
			continue
		}
		for _, cmd := range []*redis.StringCmd{cmds[i].open, cmds[i].closed} {
			b, err := cmd.Bytes()
			if err != nil {
				continue
			}
			a := &cwv1.Alert{}
			if err := proto.Unmarshal(b, a); err != nil {
				return nil, fmt.Errorf("decode alert: %w", err)
			}
			if a.GetAlertId() == id {
				out[i] = a
				break
			}
		}
	}
	return out, nil
}
