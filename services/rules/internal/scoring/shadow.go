package scoring

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/shadow"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// Shadow is one running shadow threshold set.
type Shadow struct {
	Name       string
	Thresholds *engine.Thresholds
}

// ShadowStore is the part of the store shadow runs read.
type ShadowStore interface {
	Shadow(name string) store.ShadowLoader
}

// shadowAlerts is the one alert engine of shadow sets: as the back-test's
// (no playbook action, no acknowledgement SLA matters for a comparison).
var shadowAlerts = &alerting.Engine{Playbook: alerting.DefaultPlaybook()}

// scoreShadows scores b once more per running shadow set, each over its own
// state (overlaid with the pending batch's write of that set), and returns
// each set's part of the write. Nothing of it is ever produced.
func (c *Consumer) scoreShadows(ctx context.Context, b *Batch) (map[string]store.ShadowWrite, error) {
	if c.Shadows == nil || c.ShadowStore == nil {
		return nil, nil
	}
	sets := c.Shadows()
	if len(sets) == 0 {
		return nil, nil
	}
	out := make(map[string]store.ShadowWrite, len(sets))
	for _, sh := range sets {
		sw, err := c.scoreShadow(ctx, b, sh)
		if err != nil {
			return nil, fmt.Errorf("shadow set %s: %w", sh.Name, err)
		}
		out[sh.Name] = sw
	}
	return out, nil
}

func (c *Consumer) scoreShadow(ctx context.Context, b *Batch, sh Shadow) (store.ShadowWrite, error) {
	sl := c.ShadowStore.Shadow(sh.Name)
	var pend *store.ShadowWrite
	if c.pending != nil {
		if pw, ok := c.pending.Shadow[sh.Name]; ok {
			pend = &pw
		}
	}
	var l Loader = sl
	if c.pending != nil {
		own := &store.Write{}
		if pend != nil {
			own = &pend.State
		}
		l = pendingLoader{l: sl, w: own, live: c.pending}
	}
	sc := &Scorer{Engine: c.Scorer.Engine, Lateness: c.Scorer.Lateness, Topic: c.Scorer.Topic, OnCorrupt: c.Scorer.OnCorrupt, shadow: true}
	o, err := sc.ScoreBatch(ctx, l, b, sh.Thresholds)
	if err != nil {
		return store.ShadowWrite{}, err
	}
	byCust := map[string][]*cwv1.RiskSignal{}
	var ids []string
	for _, sg := range o.shadowSigs {
		if _, ok := byCust[sg.CustomerID]; !ok {
			ids = append(ids, sg.CustomerID)
		}
		byCust[sg.CustomerID] = append(byCust[sg.CustomerID], convert.Signal(sg, convert.Source{}))
	}
	prev, err := sl.Alerts(ctx, ids)
	if err != nil {
		return store.ShadowWrite{}, err
	}
	if pend != nil {
		for id, a := range pend.Alerts {
			prev[id] = a
		}
	}
	w := o.Write
	w.KPI = nil
	sw := store.ShadowWrite{State: w, Alerts: map[string][]byte{}}
	for _, id := range ids {
		var open *cwv1.Alert
		if raw, ok := prev[id]; ok {
			open = &cwv1.Alert{}
			if err := proto.Unmarshal(raw, open); err != nil {
				open = nil // unreadable: start the customer's shadow alert afresh
			}
		}
		var prof *cwv1.CustomerProfile
		if cu := o.custs[id]; cu != nil && cu.profile.Known {
			prof = &cwv1.CustomerProfile{ManagerId: cu.manager, BranchId: cu.branch}
		}
		a := shadow.Merge(shadowAlerts, id, prof, open, byCust[id])
		if a == nil {
			continue
		}
		raw, err := proto.Marshal(a)
		if err != nil {
			return store.ShadowWrite{}, fmt.Errorf("encode shadow alert: %w", err)
		}
		sw.Alerts[id] = raw
	}
	return sw, nil
}
