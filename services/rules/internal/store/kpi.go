package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
)

// The KPI facts (docs/kpis.md):
//
//	cw:rules:kpi:{p:N}:applied      string  highest events offset of partition N whose KPI facts are counted
//	cw:rules:kpi:{p:N}:m:YYYY-MM    hash    field TIER|BRANCH|MEASURE → net change in that month, from partition N's
//	                                        records; MEASURE is st.<STAGE> (customers in the stage), churned
//	                                        (entering CHURNED), winback (CHURNED → WON_BACK) or bal.<CUR> (balance
//	                                        held, minor units)
//	cw:rules:kpi:{p:N}:months       set     the months partition N has a hash for
//	cw:rules:kpi:alerts:{m:YYYY-MM} hash    alert id → JSON fact (kpi.AlertFact) of every alert raised in the month (first signal, event time) or open at some time in it
//	cw:rules:kpi:alerts:{open}      hash    alert id → JSON fact of every alert not resolved
//
// A partition's KPI keys share its hash tag with its deadline index, so the
// counts and their watermark are written by one script (addCounts) on Redis
// Cluster too (before the states there: see Apply); the script adds nothing
// when the watermark already covers the write. The counts are
// bounded by months × tiers × branches × measures; an alert fact is kept in
// at most 24 months.

// KPIAppliedKey is the KPI watermark of one events partition.
func KPIAppliedKey(p int32) string { return "cw:rules:kpi:{p:" + strconv.Itoa(int(p)) + "}:applied" }

// KPIMonthKey is the KPI counts of one events partition and month.
func KPIMonthKey(p int32, month string) string {
	return "cw:rules:kpi:{p:" + strconv.Itoa(int(p)) + "}:m:" + month
}

// KPIMonthsKey is the set of months of one events partition's KPI counts.
func KPIMonthsKey(p int32) string { return "cw:rules:kpi:{p:" + strconv.Itoa(int(p)) + "}:months" }

// AlertFactsKey is the alert facts kept for a month.
func AlertFactsKey(month string) string { return "cw:rules:kpi:alerts:{m:" + month + "}" }

// OpenAlertFactsKey is the facts of every alert not resolved.
const OpenAlertFactsKey = "cw:rules:kpi:alerts:{open}"

// KPIWrite is one partition's KPI part of a batch write: the counts of its
// records above the stored watermark, and the new watermark.
type KPIWrite struct {
	Applied int64
	Deltas  kpi.Deltas
}

// addCounts adds a partition's counts unless its watermark shows them
// added already, so that writing the same batch again (Apply retried after
// an error whose reply was lost) adds nothing. KEYS: the watermark, the
// months set, then one hash per month; ARGV: the new watermark, then per
// month its name, its number of fields and field, change pairs. Sent as
// EVAL (not EVALSHA): a restarted Redis needs nothing loaded, and it runs
// inside MULTI and pipelines alike.
const addCounts = `
if tonumber(redis.call('GET', KEYS[1]) or '-1') >= tonumber(ARGV[1]) then return 0 end
local a = 2
for k = 3, #KEYS do
  local n = tonumber(ARGV[a + 1])
  redis.call('SADD', KEYS[2], ARGV[a])
  a = a + 2
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1`

func queueKPI(ctx context.Context, p redis.Pipeliner, w Write) {
	for part, kw := range w.KPI {
		keys := []string{KPIAppliedKey(part), KPIMonthsKey(part)}
		args := []any{kw.Applied}
		for month, fields := range kw.Deltas {
			keys = append(keys, KPIMonthKey(part, month))
			args = append(args, month, len(fields))
			for f, d := range fields {
				args = append(args, f, d)
			}
		}
		p.Eval(ctx, addCounts, keys, args...)
	}
}

func queueKPIApplied(ctx context.Context, pipe redis.Pipeliner, parts []int32) map[int32]*redis.StringCmd {
	out := make(map[int32]*redis.StringCmd, len(parts))
	for _, p := range parts {
		out[p] = pipe.Get(ctx, KPIAppliedKey(p))
	}
	return out
}

func kpiApplied(cmds map[int32]*redis.StringCmd) (map[int32]int64, error) {
	out := make(map[int32]int64, len(cmds))
	for p, c := range cmds {
		v, err := c.Result()
		if errors.Is(err, redis.Nil) {
			out[p] = -1
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load KPI watermark of partition %d: %w", p, err)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: KPI watermark of partition %d: %q", ErrCorrupt, p, v)
		}
		out[p] = n
	}
	return out, nil
}

// KPIDeltas reads the KPI counts of every events partition, summed.
func (s *Store) KPIDeltas(ctx context.Context) (kpi.Deltas, error) {
	clocks, err := s.Clocks(ctx)
	if err != nil {
		return nil, err
	}
	pipe := s.rdb.Pipeline()
	months := map[int32]*redis.StringSliceCmd{}
	for p := range clocks {
		months[p] = pipe.SMembers(ctx, KPIMonthsKey(p))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load KPI months: %w", err)
	}
	pipe = s.rdb.Pipeline()
	type read struct {
		month string
		cmd   *redis.MapStringStringCmd
	}
	var reads []read
	for p, c := range months {
		for _, m := range c.Val() {
			reads = append(reads, read{m, pipe.HGetAll(ctx, KPIMonthKey(p, m))})
		}
	}
	if len(reads) == 0 {
		return kpi.Deltas{}, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load KPI counts: %w", err)
	}
	out := kpi.Deltas{}
	for _, r := range reads {
		for f, v := range r.cmd.Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: KPI count %s of %s: %q", ErrCorrupt, f, r.month, v)
			}
			out.Add(r.month, f, n)
		}
	}
	return out, nil
}

// WriteAlertFacts keeps the facts of a batch of alert updates: each in the
// months it spans up to at (the update's time) and, while open, in the open
// hash. A fact older than the stored one (a redelivered update) is skipped,
// so replays change nothing. Two round trips.
func (s *Store) WriteAlertFacts(ctx context.Context, facts []kpi.AlertFact, at []time.Time) error {
	if len(facts) == 0 {
		return nil
	}
	// The newest of the batch per alert.
	latest := map[string]int{}
	for i, f := range facts {
		if j, ok := latest[f.ID]; !ok || f.Version > facts[j].Version {
			latest[f.ID] = i
		}
	}
	pipe := s.rdb.Pipeline()
	stored := map[string]*redis.StringCmd{}
	for id, i := range latest {
		stored[id] = pipe.HGet(ctx, AlertFactsKey(kpi.Month(time.Unix(facts[i].Created, 0))), id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("load alert facts: %w", err)
	}
	pipe = s.rdb.Pipeline()
	for id, i := range latest {
		f := facts[i]
		if v, err := stored[id].Result(); err == nil {
			if old, err := kpi.DecodeAlertFact(v); err == nil && old.Version >= f.Version {
				continue
			}
		}
		enc := f.Encode()
		for _, m := range f.Months(at[i]) {
			pipe.HSet(ctx, AlertFactsKey(m), id, enc)
		}
		if f.Open() {
			pipe.HSet(ctx, OpenAlertFactsKey, id, enc)
		} else {
			pipe.HDel(ctx, OpenAlertFactsKey, id)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("write alert facts: %w", err)
	}
	return nil
}

// AlertFacts reads the alert facts kept for months, and the open ones.
func (s *Store) AlertFacts(ctx context.Context, months []string) (map[string][]kpi.AlertFact, []kpi.AlertFact, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(months))
	for i, m := range months {
		cmds[i] = pipe.HGetAll(ctx, AlertFactsKey(m))
	}
	open := pipe.HGetAll(ctx, OpenAlertFactsKey)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("load alert facts: %w", err)
	}
	decode := func(m map[string]string) ([]kpi.AlertFact, error) {
		out := make([]kpi.AlertFact, 0, len(m))
		for _, v := range m {
			f, err := kpi.DecodeAlertFact(v)
			if err != nil {
				return nil, fmt.Errorf("%w: an alert fact: %v", ErrCorrupt, err)
			}
			out = append(out, f)
		}
		return out, nil
	}
	byMonth := make(map[string][]kpi.AlertFact, len(months))
	for i, m := range months {
		fs, err := decode(cmds[i].Val())
		if err != nil {
			return nil, nil, err
		}
		byMonth[m] = fs
	}
	o, err := decode(open.Val())
	if err != nil {
		return nil, nil, err
	}
	return byMonth, o, nil
}
