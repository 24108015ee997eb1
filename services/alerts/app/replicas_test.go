package app_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// fastLease makes takeovers quick and batches small, so a test sees many
// batches and a takeover within a second.
func fastLease(c *app.Config) {
	c.PublishLeaseTTL = time.Second
	c.PublishLeaseRenew = 100 * time.Millisecond
	c.PublishBatch = 3
}

// topicRecords reads churnwatch.alerts.v1 with a deadline.
func (e *env) topicRecords() []app.TopicRecord {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, err := app.ReadTopic(ctx, e.kafka.Brokers, e.cfg.Common.Topics.Alerts)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// published waits until the publisher position is the outbox's last entry:
// everything committed so far is on the topic.
func (e *env) published() {
	e.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Node.Addr})
	defer rdb.Close()
	ctx := context.Background()
	var pos string
	waitFor(e.t, 30*time.Second, "publisher caught up with the outbox", func() bool {
		last, err := rdb.XRevRangeN(ctx, "cw:{alerts}:s:all", "+", "-", 1).Result()
		pos, _ = rdb.Get(ctx, "cw:{alerts}:pub:last").Result()
		return err == nil && len(last) == 1 && pos == last[0].ID
	})
}

// versions returns every alert's current version, as the API reports it.
func (e *env) versions(customers []string) map[string]int64 {
	e.t.Helper()
	want := map[string]int64{}
	adm := e.admin()
	for _, c := range customers {
		resp, err := adm.ListAlerts(context.Background(), &cwv1.ListAlertsRequest{CustomerId: c})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, a := range resp.Alerts {
			want[a.AlertId] = a.Version
		}
	}
	return want
}

// Two instances share Redis and the broker (issue 10: each change was on
// the topic twice). The lease holder is killed right after a Kafka write,
// before its position update; the other instance takes over and publishes
// the rest: each change once, in version order, no gap.
func TestReplicasPublishEachChangeOnceAcrossKill(t *testing.T) {
	var writes atomic.Int64
	var killed atomic.Pointer[string]
	hook := func(name string) app.Option {
		return app.WithPublishHook(func(stage string) error {
			if stage == "written" && writes.Add(1) == 4 {
				killed.Store(&name)
				return app.ErrKilled
			}
			return nil
		})
	}
	e := startOn(t, testkit.RedisTarget{Node: testkit.Redis(t)}, testkit.Kafka(t), testkit.NewKeys(t), nil, fastLease, nil, hook("e"))
	f := e.peer(fastLease, hook("f"))
	waitFor(t, 10*time.Second, "one lease holder", func() bool { return e.app.PublisherLeader() != f.app.PublisherLeader() })

	var customers []string
	for i := range 8 {
		customers = append(customers, fmt.Sprintf("CR%d", i))
	}
	round := func(r int) {
		var msgs []kafkaMsg
		for i, c := range customers {
			msgs = append(msgs, kmsg(c, sig(fmt.Sprintf("r%d-%s", r, c), c, "activity.drop", int32(30+10*r+i))))
		}
		e.produceAll(msgs)
	}
	for r := range 4 {
		round(r)
	}
	e.signalsCaughtUp()
	waitFor(t, 20*time.Second, "a holder killed after a write", func() bool { return killed.Load() != nil })
	survivor := map[string]*env{"e": f, "f": e}[*killed.Load()]
	waitFor(t, 20*time.Second, "the survivor takes the lease", func() bool { return survivor.app.PublisherLeader() })
	for r := 4; r < 6; r++ {
		round(r)
	}
	e.signalsCaughtUp()
	want := e.versions(customers)
	if len(want) != len(customers) {
		t.Fatalf("%d alerts for %d customers", len(want), len(customers))
	}
	for id, v := range want {
		if v != 6 {
			t.Fatalf("%s at version %d after 6 signals", id, v)
		}
	}
	e.published()
	if err := app.CheckExactlyOnce(e.topicRecords(), want); err != nil {
		t.Fatal(err)
	}
	if e.app.PublisherLeader() && f.app.PublisherLeader() {
		t.Fatal("both instances hold the lease")
	}
}

// Two instances run the SLA scan at the same moment on the same overdue
// alerts: each alert escalates once (one ESCALATED change, one version).
func TestReplicasEscalateOnce(t *testing.T) {
	e := start(t, fastLease)
	f := e.peer(fastLease)
	var customers []string
	for i := range 40 {
		c := fmt.Sprintf("CE%d", i)
		customers = append(customers, c)
		e.profile(c, "rm-1", "br-1", cwv1.Tier_TIER_HIGH_NET_WORTH)
	}
	e.profilesCaughtUp()
	for _, c := range customers {
		e.signal("e-"+c, c, "outflow.large", 70)
	}
	for _, c := range customers {
		e.alertOf(c, nil)
	}
	e.clock.Add(4*time.Hour + time.Minute) // past the HNW SLA; f shares the clock
	ctx := context.Background()
	var total atomic.Int64
	for range 3 {
		var wg sync.WaitGroup
		startLine := make(chan struct{})
		for _, inst := range []*env{e, f, e, f, e, f} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startLine
				n, err := inst.app.RunEscalations(ctx)
				if err != nil {
					t.Error(err)
				}
				total.Add(int64(n))
			}()
		}
		close(startLine)
		wg.Wait()
	}
	if total.Load() != int64(len(customers)) {
		t.Fatalf("%d escalations for %d overdue alerts", total.Load(), len(customers))
	}
	want := e.versions(customers)
	for id, v := range want {
		got, err := e.admin().GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: id})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, h := range got.Alert.History {
			if h.Change == cwv1.AlertChange_ALERT_CHANGE_ESCALATED {
				n++
			}
		}
		if n != 1 || v != 2 || got.Alert.State != cwv1.AlertState_ALERT_STATE_ESCALATED {
			t.Fatalf("%s: %d ESCALATED entries, version %d, state %v", id, n, v, got.Alert.State)
		}
	}
	e.published()
	recs := e.topicRecords()
	if err := app.CheckExactlyOnce(recs, want); err != nil {
		t.Fatal(err)
	}
	esc := 0
	for _, r := range recs {
		if r.Update.Change == cwv1.AlertChange_ALERT_CHANGE_ESCALATED {
			esc++
		}
	}
	if esc != len(customers) {
		t.Fatalf("%d ESCALATED records on the topic, want %d", esc, len(customers))
	}
}
