package simfeed

import (
	"strconv"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
)

// The back-test tells silent churners from detectable ones by the label's
// text, not by the simulator's constant: the two must stay the same string.
func TestSilentArchetypeIsTheBacktestLabel(t *testing.T) {
	if simulate.ArchetypeSilent != backtest.ArchetypeSilent {
		t.Fatalf("simulate.ArchetypeSilent = %q, backtest.ArchetypeSilent = %q: the back-test would count silent churners as detectable",
			simulate.ArchetypeSilent, backtest.ArchetypeSilent)
	}
}

// TestFromBank: records are numbered as the lines of the files `churnctl
// simulate` writes, every field reaches the wire record, churn dates are
// parsed, and the back-test counts exactly the simulator's silent churners
// as not detectable.
func TestFromBank(t *testing.T) {
	bank, err := simulate.Generate(simulate.Config{Customers: 300, Months: 6, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	in, labels := FromBank(bank)
	if len(in.Customers) != len(bank.Customers) || len(in.Events) != len(bank.Events) || len(labels) != len(bank.Labels) {
		t.Fatalf("%d customers, %d events, %d labels from a bank of %d, %d, %d",
			len(in.Customers), len(in.Events), len(labels), len(bank.Customers), len(bank.Events), len(bank.Labels))
	}
	for i, r := range in.Customers {
		c := bank.Customers[i]
		if v := r.Value; r.Line != i+1 || v.GetCustomerId() != c.CustomerID || v.GetTier() != c.Tier || v.GetManagerId() != c.ManagerID ||
			v.GetBranchId() != c.BranchID || v.GetDisplayName() != c.DisplayName {
			t.Fatalf("customer %d: line %d %v, want line %d %+v", i, r.Line, v, i+1, c)
		}
	}
	sentiments := 0
	for i, r := range in.Events {
		e, v := bank.Events[i], r.Value
		if r.Line != i+1 || v.GetEventId() != e.EventID || v.GetCustomerId() != e.CustomerID || v.GetAccountId() != e.AccountID ||
			v.GetOccurredAt() != e.OccurredAt || v.GetType() != e.Type || v.GetAmount() != e.Amount || v.GetCurrency() != e.Currency ||
			v.GetCounterpartyBank() != e.CounterpartyBank || v.GetBalanceAfter() != e.BalanceAfter || v.GetChannel() != e.Channel {
			t.Fatalf("event %d: line %d %v, want line %d %+v", i, r.Line, v, i+1, e)
		}
		if e.Sentiment == nil {
			if v.GetSentiment() != "" {
				t.Fatalf("event %s: sentiment %q without one in the bank", e.EventID, v.GetSentiment())
			}
			continue
		}
		sentiments++
		if got, err := strconv.ParseFloat(v.GetSentiment(), 64); err != nil || got != *e.Sentiment {
			t.Fatalf("event %s: sentiment %q, want %v", e.EventID, v.GetSentiment(), *e.Sentiment)
		}
	}
	if sentiments == 0 {
		t.Fatal("no event with a sentiment: the conversion went untested")
	}
	silent := 0
	for i, l := range labels {
		b := bank.Labels[i]
		if l.CustomerID != b.CustomerID || l.Archetype != b.Archetype || l.Churned != b.Churned {
			t.Fatalf("label %d = %+v, want %+v", i, l, b)
		}
		if b.Churned && l.ChurnDate.Format(time.DateOnly) != b.ChurnDate || !b.Churned && !l.ChurnDate.IsZero() {
			t.Fatalf("label %s: churn date %v, want %q", b.CustomerID, l.ChurnDate, b.ChurnDate)
		}
		if b.Churned && b.Archetype == simulate.ArchetypeSilent {
			silent++
		}
	}
	d := backtest.Score(nil, labels, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC))
	if silent == 0 || d.Churners-d.DetectableChurners != silent {
		t.Fatalf("%d churners, %d detectable: want %d silent (and at least one)", d.Churners, d.DetectableChurners, silent)
	}
}
