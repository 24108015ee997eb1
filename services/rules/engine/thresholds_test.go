package engine

import (
	"errors"
	"sort"
	"strings"
	"testing"
)

func TestDefaultThresholdsMatchSpec(t *testing.T) {
	th := DefaultThresholds()
	if th.Version != 1 {
		t.Errorf("version %d, want 1", th.Version)
	}
	if err := th.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"dormancy.declining.days.MASS":           "90",
		"dormancy.churned.days.BASIC":            "180",
		"activity.drop.ratio.MASS":               "0.50",
		"activity.drop.min_baseline.MASS":        "4",
		"activity.drop.min_history_days.MASS":    "90",
		"outflow.large.amount.HIGH_NET_WORTH":    "100000",
		"outflow.large.amount.HNW":               "100000",
		"outflow.large.amount.POTENTIAL":         "20000",
		"outflow.large.amount.MASS":              "10000",
		"outflow.large.amount.BASIC":             "5000",
		"outflow.large.share":                    "0.50",
		"outflow.large.min_amount":               "1000",
		"outflow.drain.share.POTENTIAL":          "0.60",
		"salary.stopped.days":                    "45",
		"salary.stopped.min_credits":             "3",
		"salary.stopped.lookback_days":           "120",
		"complaints.count":                       "2",
		"complaints.sentiment_floor.MASS":        "-0.60",
		"outflow.drain.min_history_days.BASIC":   "30",
		"dormancy.declining.days.high_net_worth": "90",
	}
	for k, w := range want {
		if got, err := th.Get(k); err != nil || got != w {
			t.Errorf("Get(%s) = %q, %v; want %q", k, got, err, w)
		}
	}
}

func TestThresholdsSetGet(t *testing.T) {
	th := DefaultThresholds()
	for _, kv := range [][3]string{
		{"outflow.large.amount.MASS", "5000", "5000"},
		{"outflow.large.amount.BASIC", "2500.50", "2500.5"},
		{"dormancy.declining.days", "60", "60"},
		{"activity.drop.ratio", "0.4", "0.40"},
		{"activity.drop.ratio.HNW", "0.333", "0.333"},
		{"complaints.sentiment_floor", "-0.75", "-0.75"},
		{"outflow.drain.share", "1.5", "1.50"},
	} {
		if err := th.Set(kv[0], kv[1]); err != nil {
			t.Fatalf("Set(%s=%s): %v", kv[0], kv[1], err)
		}
		if got, err := th.Get(kv[0]); err != nil || got != kv[2] {
			t.Errorf("Get(%s) = %q, %v; want %q", kv[0], got, err, kv[2])
		}
	}
	if th.Tiers[TierMass].LargeAmount != 5000*decimalOne || th.Tiers[TierPotential].LargeAmount != 20000*decimalOne {
		t.Error("a tier key changed other tiers")
	}
	for tier := range th.Tiers {
		if th.Tiers[tier].DecliningDays != 60 {
			t.Errorf("a key without tier did not set tier %d", tier)
		}
	}
	if _, err := th.Get("activity.drop.ratio"); err == nil {
		t.Error("Get without tier must fail when tiers differ")
	}
	if th.Version != 1 {
		t.Error("Set must not change the version")
	}
	if err := th.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestThresholdsSetErrors(t *testing.T) {
	for _, c := range []struct {
		key, value string
		err        error
	}{
		{"outflow.huge.amount", "1", ErrUnknownKey},
		{"outflow.large", "1", ErrUnknownKey},
		{"outflow.large.amount.GOLD", "1", ErrUnknownTier},
		{"outflow.large.amount", "ten", ErrBadValue},
		{"outflow.large.amount", "1e5", ErrBadValue},
		{"outflow.large.amount", "1.00001", ErrBadValue},
		{"dormancy.declining.days", "1.5", ErrBadValue},
		{"dormancy.declining.days", "0", ErrOutOfRange},
		{"dormancy.churned.days", "3651", ErrOutOfRange},
		{"activity.drop.ratio", "0", ErrOutOfRange},
		{"activity.drop.ratio", "1.01", ErrOutOfRange},
		{"activity.drop.min_history_days", "30", ErrOutOfRange},
		{"activity.drop.confirm_days", "31", ErrOutOfRange},
		{"activity.drop.confirm_days", "-1", ErrOutOfRange},
		{"outflow.large.amount", "-1", ErrOutOfRange},
		{"outflow.large.amount", "100000000001", ErrOutOfRange},
		{"outflow.drain.min_history_days", "91", ErrOutOfRange},
		{"salary.stopped.min_credits", "17", ErrOutOfRange},
		{"complaints.count", "0", ErrOutOfRange},
		{"complaints.sentiment_floor", "-1.1", ErrOutOfRange},
	} {
		th := DefaultThresholds()
		before := th
		err := th.Set(c.key, c.value)
		if !errors.Is(err, c.err) {
			t.Errorf("Set(%s=%s) = %v, want %v", c.key, c.value, err, c.err)
		}
		if th != before {
			t.Errorf("Set(%s=%s) failed but changed the thresholds", c.key, c.value)
		}
		if err != nil && !strings.Contains(err.Error(), strings.SplitN(c.key, ".", 3)[0]) {
			t.Errorf("error %q does not name the key", err)
		}
	}
}

func TestThresholdsValidate(t *testing.T) {
	th := DefaultThresholds()
	if err := th.Set("dormancy.declining.days.BASIC", "180"); err != nil {
		t.Fatal(err)
	}
	err := th.Validate()
	if !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), "BASIC") {
		t.Fatalf("churned days equal to declining days: %v", err)
	}
	if err := th.Set("dormancy.churned.days.BASIC", "181"); err != nil {
		t.Fatal(err)
	}
	if err := th.Validate(); err != nil {
		t.Fatalf("churned 181 > declining 180: %v", err)
	}
	th.Tiers[TierHNW].DropRatio = 0 // bypassing Set
	if err := th.Validate(); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("zero ratio: %v", err)
	}
}

func TestThresholdsKeys(t *testing.T) {
	th := DefaultThresholds()
	keys := th.Keys()
	if len(keys) != len(thresholdFields)*int(numTiers)+1 || !sort.StringsAreSorted(keys) {
		t.Fatalf("%d keys, sorted %v", len(keys), sort.StringsAreSorted(keys))
	}
	seen := map[string]bool{}
	other := DefaultThresholds()
	for _, k := range keys {
		if seen[k] {
			t.Fatalf("duplicate key %s", k)
		}
		seen[k] = true
		v, err := th.Get(k)
		if err != nil {
			t.Fatalf("Get(%s): %v", k, err)
		}
		// every key round-trips through its text form
		if err := other.Set(k, v); err != nil {
			t.Fatalf("Set(%s=%s): %v", k, v, err)
		}
	}
	if other != th {
		t.Fatal("Get/Set round trip changed a value")
	}
	if !seen["outflow.large.amount.HIGH_NET_WORTH"] || !seen["dormancy.declining.days.MASS"] {
		t.Fatalf("keys: %v", keys[:8])
	}
}

func FuzzThresholdsSet(f *testing.F) {
	for _, kv := range [][2]string{{"outflow.large.amount.MASS", "5000"}, {"activity.drop.ratio", "0.5"},
		{"complaints.sentiment_floor.HNW", "-0.6"}, {"dormancy.churned.days", "1e3"}, {"x", ""}} {
		f.Add(kv[0], kv[1])
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		th := DefaultThresholds()
		if th.Set(key, value) != nil {
			return
		}
		got, err := th.Get(key)
		if err != nil {
			t.Fatalf("Set(%q=%q) ok but Get: %v", key, value, err)
		}
		again := DefaultThresholds()
		if err := again.Set(key, got); err != nil || again != th {
			t.Fatalf("Set(%q=%q) → Get %q does not set the same value: %v", key, value, got, err)
		}
	})
}

func TestThresholdsPerCurrency(t *testing.T) {
	th := DefaultThresholds()
	for _, kv := range [][2]string{
		{"outflow.large.amount.CZK", "250000"},
		{"outflow.large.amount.HNW.CZK", "2500000"},
		{"outflow.large.min_amount.MASS.CZK", "25000"},
		{"outflow.large.amount.MASS.EUR", "12000"}, // the default currency: the plain key
	} {
		if err := th.Set(kv[0], kv[1]); err != nil {
			t.Fatalf("Set(%s=%s): %v", kv[0], kv[1], err)
		}
	}
	if err := th.Validate(); err != nil {
		t.Fatal(err)
	}
	for k, w := range map[string]string{
		"outflow.large.amount.MASS.CZK":           "250000",
		"outflow.large.amount.HIGH_NET_WORTH.CZK": "2500000",
		"outflow.large.amount.MASS":               "12000",
		"outflow.large.amount.MASS.EUR":           "12000",
		"outflow.large.min_amount.MASS.CZK":       "25000",
		"currency.default":                        "EUR",
	} {
		if got, err := th.Get(k); err != nil || got != w {
			t.Errorf("Get(%s) = %q, %v; want %q", k, got, err, w)
		}
	}
	if _, err := th.Get("outflow.large.min_amount.BASIC.CZK"); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "the EUR amount applies") {
		t.Errorf("unset CZK amount: %v", err)
	}
	if large, minAmount, own := th.amounts(TierBasic, "CZK"); large != 250000*decimalOne || minAmount != 1000*decimalOne || !own {
		t.Errorf("BASIC CZK: %v %v %v", large, minAmount, own)
	}
	if _, _, own := th.amounts(TierBasic, "USD"); own {
		t.Error("USD has no amounts of its own")
	}
	// every key, currency ones included, round-trips through Keys/Get/Set
	keys := th.Keys()
	other := DefaultThresholds()
	for _, k := range keys {
		v, err := th.Get(k)
		if err != nil {
			t.Fatalf("Get(%s): %v", k, err)
		}
		if err := other.Set(k, v); err != nil {
			t.Fatalf("Set(%s=%s): %v", k, v, err)
		}
	}
	if other != th {
		t.Fatal("per-currency keys do not round-trip")
	}
	for _, bad := range []string{"outflow.large.amount.MASS.XXX", "outflow.large.share.CZK", "dormancy.declining.days.MASS.CZK", "outflow.large.amount.NOPE.CZK"} {
		if err := th.Set(bad, "1"); err == nil {
			t.Errorf("Set(%s) accepted", bad)
		}
	}
	if err := th.Set("currency.default", "KRONER"); !errors.Is(err, ErrBadValue) {
		t.Errorf("bad default currency: %v", err)
	}
	// a currency with own amounts cannot become the default
	if err := th.Set("currency.default", "CZK"); err != nil {
		t.Fatal(err)
	}
	if err := th.Validate(); err == nil || !strings.Contains(err.Error(), "without the currency suffix") {
		t.Errorf("Validate: %v", err)
	}
}
