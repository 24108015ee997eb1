package app

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/alerts/alerting"
)

// scanLoop looks for due escalations and snooze ends every ScanInterval.
// SLAs are human response times, so they run on the wall clock (SPEC §3).
func (a *App) scanLoop(ctx context.Context) error {
	t := time.NewTicker(a.cfg.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := a.RunEscalations(ctx); err != nil && ctx.Err() == nil {
				a.base.Log.Warn("escalation scan failed; next tick retries", "err", err)
			}
		}
	}
}

// RunEscalations escalates every open alert whose acknowledgement deadline
// has passed and ends every snooze whose time has come, as of the app's
// clock, and returns how many alerts changed. The worker calls it every
// CHURNWATCH_ESCALATION_INTERVAL; tests call it directly.
func (a *App) RunEscalations(ctx context.Context) (int, error) {
	now := a.now()
	max := strconv.FormatInt(now.UnixMilli(), 10)
	changed := 0
	for _, key := range []string{kDueAck, kDueSnooze} {
		// Each pass removes or reschedules what it reads, so a bounded
		// number of passes drains the due part.
		for pass := 0; pass < 64; pass++ {
			ids, err := a.store.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: key, Start: "-inf", Stop: max, ByScore: true, Count: 256}).Result()
			if err != nil {
				return changed, err
			}
			for _, id := range ids {
				n, err := a.due(ctx, key, id, now)
				if err != nil {
					return changed, err
				}
				changed += n
			}
			if len(ids) < 256 {
				break
			}
		}
	}
	return changed, nil
}

// due escalates or unsnoozes one alert as a compare-and-set: transact
// WATCHes the customer's open alert (one hash slot, {c:ID}) while loading
// it, so when another instance's scan, an RPC or a signal merge changed the
// alert first, EXEC fails and the step reruns on the fresh alert, which is
// then no longer due. Every instance may run the scan; each alert
// escalates once.
func (a *App) due(ctx context.Context, key, id string, now time.Time) (int, error) {
	cust, ok := alerting.CustomerOf(id)
	if !ok {
		return 0, a.store.rdb.ZRem(ctx, key, id).Err()
	}
	st, err := a.store.transact(ctx, []string{cust}, nil, func(state map[string]*alerting.Customer) (*staged, error) {
		st := &staged{}
		open := state[cust].Open
		if open != nil && open.GetAlertId() == id {
			var ch alerting.Change
			var ok bool
			if key == kDueAck {
				ch, ok = a.engine.Escalate(open, now)
			} else {
				ch, ok = a.engine.Unsnooze(open, now)
			}
			if ok {
				st.add(ch, "")
				return st, nil
			}
		}
		// Resolved, acknowledged or rescheduled since: the entry is stale.
		st.dueDone = map[string][]string{key: {id}}
		return st, nil
	})
	if err != nil {
		return 0, err
	}
	a.recordChanges(ctx, st)
	return len(st.changes), nil
}
