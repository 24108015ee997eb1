package scoring

import (
	"context"
	"reflect"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// scoreAll scores and writes batches one after the other; land decides
// what of each write reaches Redis before the batch is scored again
// (nil: all of it, once).
func scoreAll(t *testing.T, rdb redis.UniversalClient, batches [][]kafka.Message, land func(store.Write) []store.Write) kpi.Deltas {
	t.Helper()
	ctx := context.Background()
	st, sc, th := store.New(rdb), newScorer(0), engine.DefaultThresholds()
	for _, msgs := range batches {
		out, err := sc.Score(ctx, st, msgs, &th)
		if err != nil {
			t.Fatal(err)
		}
		writes := []store.Write{out.Write}
		if land != nil {
			writes = land(out.Write)
		}
		for i, w := range writes {
			if err := st.Apply(ctx, w); err != nil {
				t.Fatal(err)
			}
			if i < len(writes)-1 {
				// Cut off: the batch is redelivered and scored again
				// from what landed.
				if out, err = sc.Score(ctx, st, msgs, &th); err != nil {
					t.Fatal(err)
				}
				writes[i+1] = out.Write
			}
		}
	}
	d, err := st.KPIDeltas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fresh(t *testing.T) redis.UniversalClient {
	t.Helper()
	return testkit.RedisUnderTest(t).Client(t)
}

// TestKPIFactsCountOnce checks that the KPI counts of a history do not
// depend on redelivery, batch boundaries or where a write was cut off:
// each record's facts are counted once.
func TestKPIFactsCountOnce(t *testing.T) {
	batches := history(6, 300)
	want := scoreAll(t, fresh(t), batches, nil)
	var churned, stages, balances int
	for _, fields := range want {
		for f := range fields {
			_, _, m, err := kpi.ParseField(f)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case m == "churned":
				churned++
			case m[:3] == "st.":
				stages++
			case m[:4] == "bal.":
				balances++
			}
		}
	}
	if churned == 0 || stages == 0 || balances == 0 {
		t.Fatalf("the history must churn customers and move balances (churned %d, stage %d, balance %d fields): %v", churned, stages, balances, want)
	}

	t.Run("redelivered", func(t *testing.T) {
		twice := append(append([][]kafka.Message{}, batches...), batches...)
		if got := scoreAll(t, fresh(t), twice, nil); !reflect.DeepEqual(got, want) {
			t.Fatalf("every batch delivered twice:\n got %v\nwant %v", got, want)
		}
	})
	t.Run("other batch boundaries", func(t *testing.T) {
		var all []kafka.Message
		for _, b := range batches {
			all = append(all, b...)
		}
		var other [][]kafka.Message
		for i, size := 0, 1; i < len(all); i, size = i+size, size*3%500+7 {
			other = append(other, all[i:min(i+size, len(all))])
		}
		if got := scoreAll(t, fresh(t), other, nil); !reflect.DeepEqual(got, want) {
			t.Fatalf("%d batches instead of %d:\n got %v\nwant %v", len(other), len(batches), got, want)
		}
	})
	t.Run("cut off after the counts", func(t *testing.T) {
		// What a Redis Cluster crash between the KPI transaction and the
		// states leaves: counts and watermark landed, states did not.
		got := scoreAll(t, fresh(t), batches, func(w store.Write) []store.Write {
			return []store.Write{{KPI: w.KPI}, {}}
		})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("counts landed before a crash:\n got %v\nwant %v", got, want)
		}
	})
	t.Run("write retried", func(t *testing.T) {
		// Apply again with the same write, as after an error whose reply
		// was lost: the counts are not added twice.
		ctx := context.Background()
		st, sc, th := store.New(fresh(t)), newScorer(0), engine.DefaultThresholds()
		for _, msgs := range batches {
			out, err := sc.Score(ctx, st, msgs, &th)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := st.Apply(ctx, out.Write); err != nil {
					t.Fatal(err)
				}
			}
		}
		got, err := st.KPIDeltas(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("every write applied twice:\n got %v\nwant %v", got, want)
		}
	})
	t.Run("cut off before the counts", func(t *testing.T) {
		// Nothing landed: the batch is scored again from scratch.
		got := scoreAll(t, fresh(t), batches, func(w store.Write) []store.Write {
			return []store.Write{{}, {}}
		})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("nothing landed before a crash:\n got %v\nwant %v", got, want)
		}
	})
}
