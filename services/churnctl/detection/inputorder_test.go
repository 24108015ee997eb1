package detection

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
)

// TestInputOrderDoesNotMatter: the same events in any order, with
// duplicates, raise exactly the same alerts (the pipeline is deterministic;
// churnctl ingest sorts by event time before sending).
func TestInputOrderDoesNotMatter(t *testing.T) {
	bank, err := simulate.Generate(simulate.Config{Customers: 80, Months: 12, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := simfeed.FromBank(bank)
	want, err := backtest.Run(in, backtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Alerts) == 0 || want.Counts.Accepted != len(bank.Events) || want.Counts.Rejected != 0 {
		t.Fatalf("sorted run: %d alerts, counts %+v", len(want.Alerts), want.Counts)
	}
	// Shuffle within each day (a real export is rarely sorted) and repeat a
	// few records: the result must not move. One customer's events at one
	// instant keep their order: the pipeline keeps publish order for them,
	// and which comes first can matter (a transfer before or after the
	// balance it is compared with).
	shuffled := make([]backtest.Record[*cwv1.IncomingEvent], 0, len(in.Events))
	rng := rand.New(rand.NewPCG(1, 2))
	for lo := 0; lo < len(in.Events); {
		hi := lo
		var groups [][]backtest.Record[*cwv1.IncomingEvent]
		at := map[string]int{}
		for hi < len(in.Events) && in.Events[hi].Value.OccurredAt[:10] == in.Events[lo].Value.OccurredAt[:10] {
			e := in.Events[hi]
			k := e.Value.CustomerId + " " + e.Value.OccurredAt
			g, ok := at[k]
			if !ok {
				g = len(groups)
				at[k] = g
				groups = append(groups, nil)
			}
			groups[g] = append(groups[g], e)
			hi++
		}
		rng.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
		for _, g := range groups {
			shuffled = append(shuffled, g...)
		}
		lo = hi
	}
	shuffled = append(shuffled, shuffled[:50]...)
	got, err := backtest.Run(backtest.Input{Customers: in.Customers, Events: shuffled}, backtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Counts.Duplicates != 50 || got.Counts.Accepted != len(bank.Events) {
		t.Fatalf("counts = %+v", got.Counts)
	}
	if len(got.Alerts) != len(want.Alerts) {
		t.Fatalf("%d alerts shuffled, %d sorted", len(got.Alerts), len(want.Alerts))
	}
	for i := range want.Alerts {
		if !proto.Equal(got.Alerts[i], want.Alerts[i]) {
			t.Fatalf("alert %d differs:\n got  %v\n want %v", i, got.Alerts[i], want.Alerts[i])
		}
	}
}
