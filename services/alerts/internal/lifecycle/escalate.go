package lifecycle

import (
	"context"
	"time"

	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
)

// ScanLoop looks for due escalations and snooze ends every interval.
// SLAs are human response times, so they run on the wall clock (SPEC §3).
func (s *Service) ScanLoop(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := s.RunEscalations(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("escalation scan failed; next tick retries", "err", err)
			}
		}
	}
}

// RunEscalations escalates every open alert whose acknowledgement deadline
// has passed and ends every snooze whose time has come, as of the app's
// clock, and returns how many alerts changed. The worker calls it every
// CHURNWATCH_ESCALATION_INTERVAL; tests call it directly.
func (s *Service) RunEscalations(ctx context.Context) (int, error) {
	now := s.now()
	changed := 0
	for _, key := range []store.Deadline{store.AckDeadline, store.SnoozeDeadline} {
		// Each pass removes or reschedules what it reads, so a bounded
		// number of passes drains the due part.
		for pass := 0; pass < 64; pass++ {
			ids, err := s.store.DueBy(ctx, key, now, 256)
			if err != nil {
				return changed, err
			}
			for _, id := range ids {
				n, err := s.due(ctx, key, id, now)
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
// WATCHes the customer's open alert while loading
// it, so when another instance's scan, an RPC or a signal merge changed the
// alert first, EXEC fails and the step reruns on the fresh alert, which is
// then no longer due. Every instance may run the scan; each alert
// escalates once.
func (s *Service) due(ctx context.Context, key store.Deadline, id string, now time.Time) (int, error) {
	cust, ok := alerting.CustomerOf(id)
	if !ok {
		return 0, s.store.DropDue(ctx, key, id)
	}
	st, err := s.store.Transact(ctx, []string{cust}, nil, func(state map[string]*alerting.Customer) (*store.Step, error) {
		st := &store.Step{}
		open := state[cust].Open
		if open != nil && open.GetAlertId() == id {
			var ch alerting.Change
			var ok bool
			if key == store.AckDeadline {
				ch, ok = s.engine.Escalate(open, now)
			} else {
				ch, ok = s.engine.Unsnooze(open, now)
			}
			if ok {
				st.Add(ch, "")
				return st, nil
			}
		}
		// Resolved, acknowledged or rescheduled since: the entry is stale.
		st.DueDone = map[store.Deadline][]string{key: {id}}
		return st, nil
	})
	if err != nil {
		return 0, err
	}
	s.Record(ctx, st)
	return len(st.Changes), nil
}
