package scoring

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

type emptyLoader struct{}

func (emptyLoader) Load(context.Context, store.Query) (store.Loaded, error) {
	return store.Loaded{Customers: map[string]store.Customer{}, Clocks: map[int32]int64{}, Due: map[int32][]store.Due{}}, nil
}

func (emptyLoader) LoadCustomers(context.Context, []string, func(string) bool) (map[string]store.Customer, error) {
	return map[string]store.Customer{}, nil
}

// FuzzScoreRecord: any bytes on the events topic are either scored or sent
// to the DLQ with a reason; never a panic, never silently dropped.
func FuzzScoreRecord(f *testing.F) {
	for _, m := range batchOf(5, 2, 0, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
		f.Add(m.Value)
	}
	f.Add([]byte{0xff, 0x00})
	sc := &Scorer{Engine: engine.New(engine.Config{}), Lateness: 7 * 24 * time.Hour, Topic: "events"}
	th := engine.DefaultThresholds()
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := sc.Score(context.Background(), emptyLoader{}, []kafka.Message{{Value: b}}, &th)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, v := range out.Results {
			n += v
		}
		if n != 1 {
			t.Fatalf("record counted %d times: %v", n, out.Results)
		}
		if out.Results[ResultInvalid] == 1 && (len(out.DLQ) != 1 || string(out.DLQ[0].Value) != string(b)) {
			t.Fatalf("invalid record not on the DLQ as received")
		}
	})
}
