package scoring

import (
	"context"
	"sort"

	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// pendingLoader reads through l as if the write w were already in Redis:
// the batch scored while w lands sees its states, stamps, profiles, clocks
// and deadline entries. Whether w has landed when a read runs makes no
// difference, since laying w over the stored values twice changes nothing.
//
// For a shadow set, w is the set's part of the landing write and live the
// live part: a customer the set has no state of yet starts from live's
// state of it, if live has one, not from the older one in Redis
// (store.Customer.FromLive) or from nothing.
type pendingLoader struct {
	l    Loader
	w    *store.Write
	live *store.Write
}

func (p pendingLoader) Load(ctx context.Context, q store.Query) (store.Loaded, error) {
	got, err := p.l.Load(ctx, q)
	if err != nil {
		return got, err
	}
	if got.Customers == nil {
		got.Customers = map[string]store.Customer{}
	}
	for _, id := range q.Customers {
		p.customer(got.Customers, id, q.Held)
	}
	if got.Clocks == nil {
		got.Clocks = map[int32]int64{}
	}
	for part, ms := range p.w.Clocks {
		if cur, ok := got.Clocks[part]; !ok || ms > cur {
			got.Clocks[part] = ms // clocks only move forward (ZADD GT)
		}
	}
	for part, until := range q.DueUntil {
		changed := p.w.Deadlines[part]
		if len(changed) == 0 {
			continue
		}
		if got.Due == nil {
			got.Due = map[int32][]store.Due{}
		}
		var due []store.Due
		for _, d := range got.Due[part] {
			if _, ok := changed[d.CustomerID]; !ok {
				due = append(due, d)
			}
		}
		for id, ms := range changed {
			if ms >= 0 && ms <= until {
				due = append(due, store.Due{CustomerID: id, DeadlineMs: ms})
			}
		}
		// The order Redis returns a range in: by score, then member.
		sort.Slice(due, func(i, j int) bool {
			if due[i].DeadlineMs != due[j].DeadlineMs {
				return due[i].DeadlineMs < due[j].DeadlineMs
			}
			return due[i].CustomerID < due[j].CustomerID
		})
		if len(due) == 0 {
			delete(got.Due, part)
		} else {
			got.Due[part] = due
		}
	}
	return got, nil
}

func (p pendingLoader) LoadCustomers(ctx context.Context, ids []string, held func(string) bool) (map[string]store.Customer, error) {
	got, err := p.l.LoadCustomers(ctx, ids, held)
	if err != nil {
		return nil, err
	}
	if got == nil {
		got = map[string]store.Customer{}
	}
	for _, id := range ids {
		p.customer(got, id, held)
	}
	return got, nil
}

// customer lays w's state of id, if any, over what was read.
func (p pendingLoader) customer(m map[string]store.Customer, id string, held func(string) bool) {
	if b, ok := p.w.States[id]; ok {
		c := m[id]
		c.Stamp = p.w.Stamp
		if prof, ok := p.w.Profiles[id]; ok {
			c.Profile, c.Known = prof, true
		}
		if held == nil || !held(id) {
			c.Envelope, c.FromLive = b, false
		}
		m[id] = c
	}
	if p.live != nil {
		p.start(m, id)
	}
}

// start lays live's state of id over a customer without a state of its own.
func (p pendingLoader) start(m map[string]store.Customer, id string) {
	c, ok := m[id]
	if !ok || !c.FromLive && c.Envelope != nil {
		return // the set's own state
	}
	if b, ok := p.live.States[id]; ok {
		c.Envelope, c.FromLive = b, true
		m[id] = c
	}
}
