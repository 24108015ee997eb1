package store

import (
	"reflect"
	"testing"

	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// TestPerCurrencySetsStoreAndDiff: a set with amounts of its own for a
// currency survives encode/decode, and its change against the defaults is
// listed by key (the two key lists differ in length).
func TestPerCurrencySetsStoreAndDiff(t *testing.T) {
	th := engine.DefaultThresholds()
	for k, v := range map[string]string{"outflow.large.amount.MASS.CZK": "40000", "activity.drop.p": "0.02"} {
		if err := th.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := encodeSet(ThresholdSet{Values: th})
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeSet(raw)
	if err != nil {
		t.Fatal(err)
	}
	if back.Values != th {
		t.Fatal("per-currency set changed through the store encoding")
	}
	def := engine.DefaultThresholds()
	got := Diff(Settings(&def), Settings(&th))
	var keys []string
	for _, c := range got {
		keys = append(keys, c.Key+":"+c.Old+"→"+c.New)
	}
	want := []string{
		"activity.drop.p.BASIC:0.01→0.02", "activity.drop.p.HIGH_NET_WORTH:0.01→0.02",
		"activity.drop.p.MASS:0.01→0.02", "activity.drop.p.POTENTIAL:0.01→0.02",
		"outflow.large.amount.MASS.CZK:→40000",
	}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("diff %v\nwant %v", keys, want)
	}
	if back := Diff(Settings(&th), Settings(&def)); len(back) != 5 || back[4].Key != "outflow.large.amount.MASS.CZK" || back[4].New != "" {
		t.Fatalf("reverse diff %v", back)
	}
}
