package lifecycle

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// newService is one alert service instance's lifecycle on the redis-server
// at addr, with the built-in playbook.
func newService(tb testing.TB, addr string) *Service {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	blocking := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	st := store.New(rdb, blocking, store.Options{})
	tb.Cleanup(func() { st.Close(); rdb.Close() })
	s, err := New(st, &alerting.Engine{Playbook: alerting.DefaultPlaybook()}, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)), noop.NewMeterProvider().Meter("test"))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// During a rebalance two instances may both handle the same signal
// records. Merges are idempotent by signal id and the WATCH on the open
// alert makes the second writer redo its step on fresh state, so each
// signal gives one version and one outbox entry however the two race.
func TestSameSignalsOnTwoInstancesMergeOnce(t *testing.T) {
	r := testkit.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	var apps []*Service
	for range 2 {
		apps = append(apps, newService(t, r.Addr))
	}
	const customers, rounds = 20, 15
	ctx := context.Background()
	for round := range rounds {
		var msgs []kafka.Message
		for c := range customers {
			for k := range 2 {
				cust := fmt.Sprintf("CS%02d", c)
				s := &cwv1.RiskSignal{SignalId: fmt.Sprintf("s%d-%d-%d", round, c, k), CustomerId: cust, RuleId: "activity.drop", Score: int32(30 + round + k),
					EventTime: timestamppb.Now(), Explanation: &cwv1.Explanation{RuleId: "activity.drop", Observed: "1", Threshold: "1"}}
				v, _ := proto.Marshal(s)
				msgs = append(msgs, kafka.Message{Key: []byte(cust), Value: v})
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, a := range append(apps, apps...) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := a.HandleSignals(ctx, msgs); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	st := apps[0].store
	perAlert := map[string][]int64{}
	entries, err := rdb.XRange(ctx, store.OutboxStream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range entries {
		u := &cwv1.AlertUpdate{}
		if err := proto.Unmarshal([]byte(x.Values["u"].(string)), u); err != nil {
			t.Fatal(err)
		}
		perAlert[u.Alert.AlertId] = append(perAlert[u.Alert.AlertId], u.Alert.Version)
	}
	if len(entries) != customers*rounds*2 || len(perAlert) != customers {
		t.Fatalf("%d outbox entries over %d alerts, want %d over %d", len(entries), len(perAlert), customers*rounds*2, customers)
	}
	for id, vs := range perAlert {
		for i, v := range vs {
			if v != int64(i+1) {
				t.Fatalf("%s: outbox versions %v", id, vs)
			}
		}
		a, err := st.GetAlert(ctx, id, true)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(a.GetHistory()); n != rounds*2 {
			t.Fatalf("%s: %d history entries, want %d", id, n, rounds*2)
		}
	}
}
