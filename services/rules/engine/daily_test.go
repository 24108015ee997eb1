package engine

import (
	"bytes"
	"encoding/hex"
	"os"
	"testing"
	"time"
)

// expectedDays computes, independently of the engine, each UTC day's
// customer-initiated transactions and end-of-day total balance (the sum of
// each account's last balanceAfter up to the day's end) from the events.
func expectedDays(evs []Event) (txns map[int32]int, bal map[int32]int64, firstBal int32) {
	txns, bal, firstBal = map[int32]int{}, map[int32]int64{}, -1
	last := map[string]int64{}
	total := func() (sum int64) {
		for _, b := range last {
			sum += b
		}
		return sum
	}
	var lastDay int32 = -1 // the latest day bal holds
	for _, ev := range evs {
		d := dayOf(ev.Time.UnixNano())
		if ev.Type.CustomerInitiated() {
			txns[d]++
		}
		if firstBal >= 0 {
			for x := lastDay + 1; x < d; x++ {
				bal[x] = total() // quiet days carry the total
			}
		}
		if ev.HasBalance {
			last[ev.AccountID] = ev.BalanceAfter
			if firstBal < 0 {
				firstBal = d
			}
		}
		if firstBal >= 0 {
			bal[d], lastDay = total(), d
		}
	}
	return txns, bal, firstBal
}

// TestDailySeriesMatchesTheEvents: the 180-day series of a busy two-account
// customer equals what the events say, day by day, also after a codec round
// trip and on days after the clock (balance carried, no transactions).
func TestDailySeriesMatchesTheEvents(t *testing.T) {
	evs := synthCustomer(21, 400, 2)
	s := &State{}
	replay(New(Config{}), s, evs, nil)
	var back State
	if err := back.UnmarshalBinary(marshal(t, s)); err != nil {
		t.Fatal(err)
	}
	txns, bal, firstBal := expectedDays(evs)
	through := s.Clock().Add(3 * 24 * time.Hour)
	for name, st := range map[string]*State{"live": s, "decoded": &back} {
		days := st.Daily(through, 365)
		if len(days) != HistoryDays {
			t.Fatalf("%s: %d days, want %d (capped)", name, len(days), HistoryDays)
		}
		clockDay := dayOf(s.clock)
		if got := dayOf(days[len(days)-1].Date.UnixNano()); got != clockDay+3 {
			t.Fatalf("%s: last day %d, want %d", name, got, clockDay+3)
		}
		active := 0
		for _, d := range days {
			day := dayOf(d.Date.UnixNano())
			if d.Transactions != txns[day] {
				t.Fatalf("%s %s: %d transactions, want %d", name, d.Date.Format(time.DateOnly), d.Transactions, txns[day])
			}
			want, ok := bal[min(day, clockDay)], day >= firstBal
			if d.HasBalance != ok || d.Balance != want {
				t.Fatalf("%s %s: balance %d (%v), want %d (%v)", name, d.Date.Format(time.DateOnly), d.Balance, d.HasBalance, want, ok)
			}
			if d.Transactions > 0 {
				active++
			}
		}
		if active < 60 {
			t.Fatalf("%s: only %d active days in the series: the test checks too little", name, active)
		}
		// The oldest day charted lies beyond outflow.drain's 107 days.
		if first := days[0]; !first.HasBalance || clockDay+3-dayOf(first.Date.UnixNano()) < 150 {
			t.Fatalf("%s: first day %v has no balance", name, first)
		}
	}
	if got := s.Daily(through, 0); got != nil {
		t.Fatalf("Daily(0) = %v", got)
	}
}

// TestDailyOfAStateWrittenBeforeTheLongerHistory: a state blob encoded by
// the build before balances were kept 180 days (testdata; they were pruned
// after 107) decodes, re-encodes identically, and charts transactions for
// all 180 days and balances from its old cutoff on; new events extend it.
func TestDailyOfAStateWrittenBeforeTheLongerHistory(t *testing.T) {
	raw, err := os.ReadFile("testdata/state_before_daily_history.hex")
	if err != nil {
		t.Fatal(err)
	}
	blob, err := hex.DecodeString(string(bytes.TrimSpace(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := s.UnmarshalBinary(blob); err != nil {
		t.Fatalf("old state does not decode: %v", err)
	}
	if again := marshal(t, &s); !bytes.Equal(again, blob) {
		t.Fatal("old state does not re-encode to the same bytes")
	}
	evs := synthCustomer(31, 300, 2) // what the blob was built from
	txns, bal, _ := expectedDays(evs)
	clockDay := dayOf(s.clock)
	oldCut := clockDay - (drainBaselineDays + drainWindowDays + 10)
	days := s.Daily(s.Clock(), HistoryDays)
	for _, d := range days {
		day := dayOf(d.Date.UnixNano())
		if d.Transactions != txns[day] {
			t.Fatalf("%s: %d transactions, want %d", d.Date.Format(time.DateOnly), d.Transactions, txns[day])
		}
		switch {
		case day < oldCut && d.HasBalance:
			t.Fatalf("%s: balance %d before the old cutoff, which the old build did not keep", d.Date.Format(time.DateOnly), d.Balance)
		case day >= oldCut && (!d.HasBalance || d.Balance != bal[day]):
			t.Fatalf("%s: balance %d (%v), want %d", d.Date.Format(time.DateOnly), d.Balance, d.HasBalance, bal[day])
		}
	}
	// Scoring goes on from the old state.
	next := Event{ID: "after-upgrade", CustomerID: s.CustomerID(), AccountID: "A1", Time: s.Clock().Add(24 * time.Hour),
		Type: EventCardPayment, Amount: 1234, Currency: "EUR", BalanceAfter: 42, HasBalance: true}
	New(Config{}).Apply(&s, next, synthProfile, nil)
	last := s.Daily(next.Time, 1)[0]
	if last.Transactions != 1 || !last.HasBalance {
		t.Fatalf("day after the upgrade: %+v", last)
	}
}
