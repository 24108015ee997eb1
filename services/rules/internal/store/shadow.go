package store

// Shadow threshold sets (SPEC §4, issue 15 item 5). Keys:
//
//	cw:{th}:shadows                        hash  name → JSON of the set (ShadowSet), running or stopped
//	cw:{c:ID} field s:NAME                 the customer's state envelope under set NAME (same encoding as s)
//	cw:{c:ID} field a:NAME                 the customer's shadow alert under set NAME (cwv1.Alert, protobuf)
//	cw:rules:shadow:NAME:clocks            zset  partition clocks of set NAME (as cw:rules:clocks)
//	cw:rules:shadow:NAME:due:{p:N}         zset  absence deadlines of set NAME (as cw:rules:due:{p:N})
//	cw:rules:shadow:NAME:alerted           set   customers with a shadow alert under set NAME
//
// PurgeShadow deletes all but the entry in cw:{th}:shadows of a stopped set.
//
// Redis cost per customer per running set: one more state envelope in the
// customer's hash (the same bounded daily-bucket state as the live one, a
// few hundred bytes to ~2 KB), one deadline entry, and for alerted
// customers one alert (~0.5 KB) and one set member. The profile (field p)
// is shared with the live set. A stopped set's keys stay so that its report
// stays readable; they are never written again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrShadowExists and ErrShadowUnknown are returned by StartShadow and
// StopShadow.
var (
	ErrShadowExists  = errors.New("a shadow set of that name exists (running or stopped): choose another name")
	ErrShadowUnknown = errors.New("no shadow set of that name: churnctl thresholds shadow --list shows them")
	// ErrShadowRunning and ErrShadowJustStopped are returned by PurgeShadow.
	ErrShadowRunning     = errors.New("the shadow set is running: stop it first (churnctl thresholds shadow --stop NAME)")
	ErrShadowJustStopped = errors.New("the shadow set stopped less than five minutes ago: a rules instance may still be writing its last batch; purge it again later")
)

// ShadowPurgeGrace is how long after a stop PurgeShadow waits: rules
// instances re-read the running sets every CHURNWATCH_THRESHOLDS_POLL (1 s)
// and a batch scored just before may still be landing (retried through a
// Redis or broker outage), which would write the set's fields again after
// a purge.
const ShadowPurgeGrace = 5 * time.Minute

const shadowsKey = "cw:{th}:shadows"

// ShadowStateField and ShadowAlertField are the customer hash fields of set name.
func ShadowStateField(name string) string { return "s:" + name }

// ShadowAlertField is the customer hash field of set name's alert.
func ShadowAlertField(name string) string { return "a:" + name }

// ShadowClocksKey is the partition clocks of set name.
func ShadowClocksKey(name string) string { return "cw:rules:shadow:" + name + ":clocks" }

// ShadowDueKey is the deadline index of set name on one events partition.
func ShadowDueKey(name string, partition int32) string {
	return "cw:rules:shadow:" + name + ":due:{p:" + strconv.Itoa(int(partition)) + "}"
}

// ShadowAlertedKey is the customers set name alerted.
func ShadowAlertedKey(name string) string { return "cw:rules:shadow:" + name + ":alerted" }

// ShadowSet is one stored shadow set. Values holds every setting of the
// thresholds it scores with; Changed the ones that differ from the live
// set it started from.
type ShadowSet struct {
	Name        string            `json:"name"`
	Changed     map[string]string `json:"changed"`
	Values      map[string]string `json:"values"`
	BaseVersion int64             `json:"baseVersion"`
	Reason      string            `json:"reason"`
	Actor       string            `json:"actor"`
	Started     time.Time         `json:"started"`
	Stopped     time.Time         `json:"stopped,omitzero"`
	Purged      time.Time         `json:"purged,omitzero"`
}

// StartShadow stores a new running set; ErrShadowExists if the name is taken.
func (s *Store) StartShadow(ctx context.Context, set ShadowSet) error {
	b, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("encode shadow set: %w", err)
	}
	ok, err := s.rdb.HSetNX(ctx, shadowsKey, set.Name, b).Result()
	if err != nil {
		return fmt.Errorf("store shadow set: %w", err)
	}
	if !ok {
		return ErrShadowExists
	}
	return nil
}

// StopShadow marks a set stopped at now and returns it.
func (s *Store) StopShadow(ctx context.Context, name string, now time.Time) (ShadowSet, error) {
	set, err := s.shadowSet(ctx, name)
	if err != nil || !set.Stopped.IsZero() {
		return set, err
	}
	set.Stopped = now
	if err := s.putShadow(ctx, set); err != nil {
		return ShadowSet{}, err
	}
	return set, nil
}

// putShadow stores set over the stored one of its name.
func (s *Store) putShadow(ctx context.Context, set ShadowSet) error {
	b, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("encode shadow set: %w", err)
	}
	if err := s.rdb.HSet(ctx, shadowsKey, set.Name, b).Err(); err != nil {
		return fmt.Errorf("store shadow set: %w", err)
	}
	return nil
}

// PurgeShadow deletes a stopped set's data: the fields s:NAME and a:NAME of
// every customer hash (a SCAN of the customer keys, on every master of a
// Cluster), its clocks, deadline indexes and alerted set; then marks it
// purged at now. It returns the set and how many customer hashes held a
// field of it. Purging a purged set again does nothing.
func (s *Store) PurgeShadow(ctx context.Context, name string, now time.Time) (ShadowSet, int64, error) {
	set, err := s.shadowSet(ctx, name)
	if err != nil {
		return ShadowSet{}, 0, err
	}
	switch {
	case !set.Purged.IsZero():
		return set, 0, nil
	case set.Stopped.IsZero():
		return ShadowSet{}, 0, ErrShadowRunning
	case now.Sub(set.Stopped) < ShadowPurgeGrace:
		return ShadowSet{}, 0, fmt.Errorf("%w (after %s)", ErrShadowJustStopped, set.Stopped.Add(ShadowPurgeGrace).UTC().Format(time.RFC3339))
	}
	var customers int64
	err = s.eachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		n, err := scanDelete(ctx, node, "cw:{c:*}", func(p redis.Pipeliner, key string) *redis.IntCmd {
			return p.HDel(ctx, key, ShadowStateField(name), ShadowAlertField(name))
		})
		customers += n
		if err != nil {
			return err
		}
		_, err = scanDelete(ctx, node, "cw:rules:shadow:"+name+":*", func(p redis.Pipeliner, key string) *redis.IntCmd {
			return p.Del(ctx, key)
		})
		return err
	})
	if err != nil {
		return ShadowSet{}, customers, fmt.Errorf("purge shadow set %s (purge it again to finish): %w", name, err)
	}
	set.Purged = now
	if err := s.putShadow(ctx, set); err != nil {
		return ShadowSet{}, customers, err
	}
	return set, customers, nil
}

// SeedShadowDeadlines copies the live deadline index into set name's (ZADD
// NX, each entry at its live deadline), so that when a partition's clock
// of the set passes a customer's live deadline the set takes the customer
// over from the live state and judges it with its own thresholds — a
// customer already quiet when the set started, who may have no event to
// bring it in otherwise. Where the set's threshold is longer than the
// live one the customer is found not due yet and gets the set's own
// deadline; where it is shorter, the set judges it at the live deadline
// (late, dated as the engine dates it). Run before the set is stored, so
// the entries are there when the consumers first score it. It returns how
// many entries it copied (SCAN may return one twice: at most that many).
func (s *Store) SeedShadowDeadlines(ctx context.Context, name string) (int64, error) {
	var n int64
	err := s.eachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, "cw:rules:due:{p:*}", 1000).Result()
			if err != nil {
				return err
			}
			for _, key := range keys {
				part, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(key, "cw:rules:due:{p:"), "}"), 10, 32)
				if err != nil {
					continue // not a partition's index
				}
				copied, err := s.copyDeadlines(ctx, node, key, ShadowDueKey(name, int32(part)))
				n += copied
				if err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
	if err != nil {
		return n, fmt.Errorf("seed shadow set %s deadlines: %w", name, err)
	}
	return n, nil
}

// copyDeadlines copies the sorted set from (on node) into to, page by page.
func (s *Store) copyDeadlines(ctx context.Context, node redis.UniversalClient, from, to string) (int64, error) {
	var n int64
	var cursor uint64
	for {
		kv, next, err := node.ZScan(ctx, from, cursor, "", 1000).Result()
		if err != nil {
			return n, err
		}
		var zs []redis.Z
		for i := 0; i+1 < len(kv); i += 2 {
			score, err := strconv.ParseFloat(kv[i+1], 64)
			if err != nil {
				return n, fmt.Errorf("%w: deadline of %s in %s: %q", ErrCorrupt, kv[i], from, kv[i+1])
			}
			zs = append(zs, redis.Z{Member: kv[i], Score: score})
		}
		if len(zs) > 0 {
			// to has from's hash tag {p:N}: the same node holds both.
			if err := s.rdb.ZAddNX(ctx, to, zs...).Err(); err != nil {
				return n, err
			}
			n += int64(len(zs))
		}
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

// shadowSet is the stored set name, or ErrShadowUnknown.
func (s *Store) shadowSet(ctx context.Context, name string) (ShadowSet, error) {
	sets, err := s.Shadows(ctx)
	if err != nil {
		return ShadowSet{}, err
	}
	for _, set := range sets {
		if set.Name == name {
			return set, nil
		}
	}
	return ShadowSet{}, ErrShadowUnknown
}

// eachNode runs fn on every master of a Cluster, or on the one server.
func (s *Store) eachNode(ctx context.Context, fn func(context.Context, redis.UniversalClient) error) error {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock() // one node at a time: fn adds up counts
			defer mu.Unlock()
			return fn(ctx, c)
		})
	}
	return fn(ctx, s.rdb)
}

// scanDelete runs del on every key of node matching pattern, a pipeline
// per SCAN page, and returns how many of them answered more than 0.
func scanDelete(ctx context.Context, node redis.UniversalClient, pattern string, del func(redis.Pipeliner, string) *redis.IntCmd) (int64, error) {
	var n int64
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			pipe := node.Pipeline()
			cmds := make([]*redis.IntCmd, len(keys))
			for i, k := range keys {
				cmds[i] = del(pipe, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return n, err
			}
			for _, c := range cmds {
				if c.Val() > 0 {
					n++
				}
			}
		}
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

// Shadows returns every stored set, by start time.
func (s *Store) Shadows(ctx context.Context) ([]ShadowSet, error) {
	m, err := s.rdb.HGetAll(ctx, shadowsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("load shadow sets: %w", err)
	}
	out := make([]ShadowSet, 0, len(m))
	for name, raw := range m {
		var set ShadowSet
		if err := json.Unmarshal([]byte(raw), &set); err != nil {
			return nil, fmt.Errorf("%w: shadow set %q: %v", ErrCorrupt, name, err)
		}
		out = append(out, set)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// ShadowLoader reads set name's customer states, clocks and deadlines in
// the shape Load returns the live ones (profiles are the live ones).
type ShadowLoader struct {
	s    *Store
	name string
}

// Shadow returns the loader of set name.
func (s *Store) Shadow(name string) ShadowLoader { return ShadowLoader{s: s, name: name} }

// Load is Store.Load for the shadow set (no KPI watermark, no held states).
func (l ShadowLoader) Load(ctx context.Context, q Query) (Loaded, error) {
	pipe := l.s.rdb.Pipeline()
	hm := l.queue(ctx, pipe, q.Customers)
	clocks := pipe.ZRangeWithScores(ctx, ShadowClocksKey(l.name), 0, -1)
	due := make(map[int32]*redis.ZSliceCmd, len(q.DueUntil))
	for p, until := range q.DueUntil {
		due[p] = pipe.ZRangeByScoreWithScores(ctx, ShadowDueKey(l.name, p), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(until, 10)})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Loaded{}, fmt.Errorf("load shadow %s batch state: %w", l.name, err)
	}
	out := Loaded{Customers: make(map[string]Customer, len(q.Customers)), Due: map[int32][]Due{}}
	for i, id := range q.Customers {
		out.Customers[id] = shadowCustomer(hm[i])
	}
	cl, err := parseClocks(clocks.Val())
	if err != nil {
		return Loaded{}, err
	}
	out.Clocks = cl
	for p, cmd := range due {
		for _, z := range cmd.Val() {
			id, _ := z.Member.(string)
			out.Due[p] = append(out.Due[p], Due{CustomerID: id, DeadlineMs: int64(z.Score)})
		}
	}
	return out, nil
}

func (l ShadowLoader) queue(ctx context.Context, pipe redis.Pipeliner, ids []string) []customerCmd {
	out := make([]customerCmd, len(ids))
	for i, id := range ids {
		// The stamp field is never written for a shadow state: it reads
		// nil. The live state comes along for customers the set has not
		// scored yet (shadowCustomer).
		out[i] = customerCmd{cmd: pipe.HMGet(ctx, CustomerKey(id), ShadowStateField(l.name), "-", fieldProfile, fieldState), whole: true}
	}
	return out
}

// shadowCustomer is a customer as the set sees it: its own state, or, for
// a customer it has not scored since it started, the live state — the
// history the live set has built and the episodes it has signalled — which
// the set goes on from with its own thresholds (FromLive).
func shadowCustomer(c customerCmd) Customer {
	cu := c.customer() // reads the first three fields
	if cu.Envelope != nil {
		return cu
	}
	if v := c.cmd.Val(); len(v) > 3 {
		if s, ok := v[3].(string); ok {
			cu.Envelope, cu.FromLive = []byte(s), true
		}
	}
	return cu
}

// LoadCustomers is Store.LoadCustomers for the shadow set.
func (l ShadowLoader) LoadCustomers(ctx context.Context, ids []string, _ func(string) bool) (map[string]Customer, error) {
	out := make(map[string]Customer, len(ids))
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		pipe := l.s.rdb.Pipeline()
		hm := l.queue(ctx, pipe, part)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("load shadow %s due customers: %w", l.name, err)
		}
		for i, id := range part {
			out[id] = shadowCustomer(hm[i])
		}
	}
	return out, nil
}

// Alerts reads the set's alerts of customers ids (absent: none).
func (l ShadowLoader) Alerts(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(ids) == 0 {
		return out, nil
	}
	pipe := l.s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, CustomerKey(id), ShadowAlertField(l.name))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load shadow %s alerts: %w", l.name, err)
	}
	for i, id := range ids {
		if b, err := cmds[i].Bytes(); err == nil {
			out[id] = b
		}
	}
	return out, nil
}

// AllAlerts reads every alert of the set, by customer.
func (l ShadowLoader) AllAlerts(ctx context.Context) (map[string][]byte, error) {
	ids, err := l.s.rdb.SMembers(ctx, ShadowAlertedKey(l.name)).Result()
	if err != nil {
		return nil, fmt.Errorf("load shadow %s alerted customers: %w", l.name, err)
	}
	return l.Alerts(ctx, ids)
}

// ShadowWrite is one shadow set's part of a batch write: its states,
// deadlines and clocks (Profiles are the live write's, kept here only for
// a pending batch's overlay; KPI is ignored) and its changed alerts.
type ShadowWrite struct {
	State  Write
	Alerts map[string][]byte
}

// queueShadows queues every shadow set's part of w. Each set's state has
// its own offset watermark in its envelope, so the same idempotence
// argument as the live state's holds.
func queueShadows(ctx context.Context, p redis.Pipeliner, w Write) {
	for name, sw := range w.Shadow {
		queueDeadlineIndex(ctx, p, sw.State.Deadlines, func(part int32) string { return ShadowDueKey(name, part) })
		for id, b := range sw.State.States {
			if a, ok := sw.Alerts[id]; ok {
				p.HSet(ctx, CustomerKey(id), ShadowStateField(name), b, ShadowAlertField(name), a)
			} else {
				p.HSet(ctx, CustomerKey(id), ShadowStateField(name), b)
			}
		}
		var alerted []any
		for id, a := range sw.Alerts {
			if _, ok := sw.State.States[id]; !ok {
				p.HSet(ctx, CustomerKey(id), ShadowAlertField(name), a)
			}
			alerted = append(alerted, id)
		}
		if len(alerted) > 0 {
			p.SAdd(ctx, ShadowAlertedKey(name), alerted...)
		}
		for part, ms := range sw.State.Clocks {
			p.ZAddGT(ctx, ShadowClocksKey(name), redis.Z{Score: float64(ms), Member: strconv.Itoa(int(part))})
		}
	}
}
