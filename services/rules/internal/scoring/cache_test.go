package scoring

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// history is batches of events over 40 customers and 300 days: everyone is
// active for the first 60 days, then only a quarter, so the others' dormancy
// deadlines fall due and are swept for customers not in the batch; salary
// days stop, outflows drain some accounts. Half-way, time jumps 120 days
// between two batches and other customers become the active ones, so that
// deadlines the earlier batch wrote are due in the next for customers it
// does not carry. Every batch opens with an event 8 days older than the previous
// batch's last: too late by the clock that batch left, not by the clock
// before it. Two partitions, so the partition runs go in parallel.
func history(batches, perBatch int) [][]kafka.Message {
	const customers = 40
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 300 * 24 * time.Hour / time.Duration(batches*perBatch)
	types := []cwv1.EventType{cwv1.EventType_EVENT_TYPE_CARD_PAYMENT, cwv1.EventType_EVENT_TYPE_DEPOSIT,
		cwv1.EventType_EVENT_TYPE_TRANSFER_OUT, cwv1.EventType_EVENT_TYPE_SALARY, cwv1.EventType_EVENT_TYPE_LOGIN}
	out := make([][]kafka.Message, batches)
	offsets := [2]int64{}
	bal := map[string]int64{}
	for b := range batches {
		for i := range perBatch {
			n := b*perBatch + i
			at := t0.Add(time.Duration(n) * step)
			if b >= batches/2 {
				at = at.Add(120 * 24 * time.Hour)
			}
			if i == 0 && b > 0 {
				at = at.Add(-8 * 24 * time.Hour)
			}
			active := customers
			if at.Sub(t0) > 60*24*time.Hour {
				active = customers / 4
			}
			k := (n * 7) % active
			if b >= batches/2 {
				k += customers / 2 // others from the jump on
			}
			c := fmt.Sprintf("C%03d", k)
			if b == batches/2-1 && i == 1 {
				// A customer seen once, just before the jump: its first
				// deadline exists only in this batch's write.
				c, k = "C999", 1
			}
			part := int32(k % 2)
			typ := types[n%len(types)]
			if bal[c] == 0 {
				bal[c] = 2_000_000
			}
			ev := &cwv1.AccountEvent{EventId: fmt.Sprintf("h-%d", n), CustomerId: c, AccountId: c + "-01",
				OccurredAt: timestamppb.New(at), Type: typ, IngestedAt: timestamppb.New(at)}
			if typ != cwv1.EventType_EVENT_TYPE_LOGIN {
				amt := int64(5_000 + n%20_000)
				if typ == cwv1.EventType_EVENT_TYPE_TRANSFER_OUT {
					ev.CounterpartyBank = "OTHERBANK"
					amt = min(amt*20, bal[c])
					bal[c] -= amt
				} else if typ != cwv1.EventType_EVENT_TYPE_CARD_PAYMENT {
					bal[c] += amt
				}
				b := bal[c]
				ev.AmountMinor, ev.Currency, ev.BalanceAfterMinor = amt, "EUR", &b
			}
			v, _ := proto.Marshal(ev)
			out[b] = append(out[b], kafka.Message{Partition: int(part), Offset: offsets[part], Key: []byte(c), Value: v})
			offsets[part]++
		}
	}
	return out
}

// outcome is what a batch produces, without the write stamp (which differs
// by design between scorers).
type outcome struct {
	Signals   [][]byte
	States    map[string][]byte
	Deadlines map[int32]map[string]int64
	Clocks    map[int32]int64
	Results   map[string]int
}

func outcomeOf(t *testing.T, out *Output) outcome {
	t.Helper()
	o := outcome{States: out.Write.States, Deadlines: out.Write.Deadlines, Clocks: out.Write.Clocks, Results: out.Results}
	for _, m := range out.Signals {
		// Signals carry the batch's processing time nowhere: the bytes
		// are deterministic.
		o.Signals = append(o.Signals, m.Value)
	}
	return o
}

// twoDatabases returns two fresh Redis clients: one for the reference run
// (always one node), one for the run under test (one node, or a Cluster
// with CHURNWATCH_TEST_REDIS=cluster).
func twoDatabases(t *testing.T) (ref, db redis.UniversalClient) {
	t.Helper()
	return testkit.RedisTarget{Node: testkit.Redis(t)}.Client(t), testkit.RedisUnderTest(t).Client(t)
}

func newScorer(cache int) *Scorer {
	return &Scorer{Engine: engine.New(engine.Config{}), Lateness: 7 * 24 * time.Hour, Topic: "events", Cache: NewStateCache(cache)}
}

// reference scores every batch one after the other, without a cache, each
// written before the next is scored.
func reference(t *testing.T, rdb redis.UniversalClient, batches [][]kafka.Message) []outcome {
	t.Helper()
	st, sc, th := store.New(rdb), newScorer(0), engine.DefaultThresholds()
	var outs []outcome
	for _, msgs := range batches {
		out, err := sc.Score(context.Background(), st, msgs, &th)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(context.Background(), out.Write); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, outcomeOf(t, out))
	}
	return outs
}

func sameOutcome(t *testing.T, batch int, got, want outcome) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		var diff []string
		for id, b := range want.States {
			if !bytes.Equal(got.States[id], b) {
				diff = append(diff, id)
			}
		}
		sort.Strings(diff)
		t.Fatalf("batch %d differs from one-by-one scoring without a cache: states of %v; signals %d vs %d; clocks %v vs %v; deadlines %v vs %v; results %v vs %v",
			batch, diff, len(got.Signals), len(want.Signals), got.Clocks, want.Clocks, got.Deadlines, want.Deadlines, got.Results, want.Results)
	}
}

// TestCachedScoringMatchesRedis: two instances with caches take turns on
// the same customers (as after rebalances); each must notice the states the
// other wrote (stale stamps) and produce exactly what one instance without a
// cache produces.
func TestCachedScoringMatchesRedis(t *testing.T) {
	ref, db := twoDatabases(t)
	batches := history(30, 120)
	want := reference(t, ref, batches)
	signals := 0
	for _, o := range want {
		signals += len(o.Signals)
	}
	if signals == 0 {
		t.Fatal("the history raises no signal: the comparison would prove little")
	}

	st, th := store.New(db), engine.DefaultThresholds()
	a, b := newScorer(1000), newScorer(1000)
	for i, msgs := range batches {
		sc := a
		if (i/4)%2 == 1 {
			sc = b // four batches each, in turn
		}
		out, err := sc.Score(context.Background(), st, msgs, &th)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(context.Background(), out.Write); err != nil {
			t.Fatal(err)
		}
		sc.Keep(out)
		sameOutcome(t, i, outcomeOf(t, out), want[i])
	}
	hits, stale, _ := a.Cache.Stats()
	if hits == 0 || stale == 0 {
		t.Fatalf("instance a: %d hits, %d stale: the test did not exercise the cache", hits, stale)
	}
}

// TestPendingLoaderMatchesLanded: a batch scored while the previous one is
// still landing (pendingLoader over its write, before and while the write
// goes in) produces what it produces after the write is in, with and
// without a cache, and with a cache too small for the batch's customers.
func TestPendingLoaderMatchesLanded(t *testing.T) {
	for _, cache := range []int{0, 1000, 5} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			ref, db := twoDatabases(t)
			batches := history(30, 120)
			want := reference(t, ref, batches)

			st, sc, th := store.New(db), newScorer(cache), engine.DefaultThresholds()
			var landing *store.Write // the previous batch's write
			landed := false
			for i, msgs := range batches {
				var l Loader = st
				if landing != nil {
					l = pendingLoader{l: st, w: landing}
				}
				out, err := sc.Score(context.Background(), l, msgs, &th)
				if err != nil {
					t.Fatal(err)
				}
				sc.Keep(out)
				sameOutcome(t, i, outcomeOf(t, out), want[i])
				// Even batches land only after the next one was scored on
				// top of them; odd ones land at once, so that pendingLoader
				// is also laid over a write already in.
				if landing != nil && !landed {
					if err := st.Apply(context.Background(), *landing); err != nil {
						t.Fatal(err)
					}
				}
				w := out.Write
				landing, landed = &w, i%2 == 1
				if landed {
					if err := st.Apply(context.Background(), w); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// TestFailedLandingResetsCache: after Reset, states come from Redis again,
// so a batch whose write never landed leaves no trace.
func TestFailedLandingResetsCache(t *testing.T) {
	ref, db := twoDatabases(t)
	batches := history(10, 120)
	want := reference(t, ref, batches)

	st, sc, th := store.New(db), newScorer(1000), engine.DefaultThresholds()
	for i := 0; i < len(batches); i++ {
		out, err := sc.Score(context.Background(), st, batches[i], &th)
		if err != nil {
			t.Fatal(err)
		}
		sc.Keep(out)
		if i == 4 {
			// Batch 4 is scored (cached states changed in place) but its
			// write fails; the consumer resets the cache and the batch is
			// redelivered.
			sc.Cache.Reset()
			if sc.Cache.Len() != 0 {
				t.Fatal("Reset left entries")
			}
			out, err = sc.Score(context.Background(), st, batches[i], &th)
			if err != nil {
				t.Fatal(err)
			}
			sc.Keep(out)
		}
		sameOutcome(t, i, outcomeOf(t, out), want[i])
		if err := st.Apply(context.Background(), out.Write); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStateCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := NewStateCache(3)
	for _, id := range []string{"a", "b", "c"} {
		c.put(&customer{id: id, state: &engine.State{}}, "s-"+id)
	}
	if _, ok := c.take("a", store.Customer{Stamp: "s-a"}); !ok { // a is now the most recent
		t.Fatal("a not cached")
	}
	c.put(&customer{id: "d", state: &engine.State{}}, "s-d")
	if c.Len() != 3 || c.held("b") || !c.held("a") || !c.held("c") || !c.held("d") {
		t.Fatalf("after evicting one of 4 in a cache of 3: len %d, a %v b %v c %v d %v", c.Len(), c.held("a"), c.held("b"), c.held("c"), c.held("d"))
	}
	if _, ok := c.take("c", store.Customer{Stamp: "other"}); ok || c.held("c") {
		t.Fatal("a stale entry was used or kept")
	}
	if hits, stale, misses := c.Stats(); hits != 1 || stale != 1 || misses != 0 {
		t.Fatalf("stats %d %d %d", hits, stale, misses)
	}
	c.put(&customer{id: "e", state: &engine.State{}}, "") // no stamp: nothing to check it against
	if c.held("e") {
		t.Fatal("a state without a stamp was cached")
	}
	if NewStateCache(0) != nil || NewStateCache(0).held("a") || NewStateCache(-1).Len() != 0 {
		t.Fatal("a disabled cache holds something")
	}
}
