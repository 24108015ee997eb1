package engine

import "time"

// HistoryDays is how many days of daily activity and end-of-day balance a
// State can report (Daily): the console charts half a year. The buckets the
// rules already keep cover it (activity.drop keeps 220 days of counts); only
// balances are kept longer than outflow.drain alone would need.
const HistoryDays = 180

// Day is one UTC day of a customer's history.
type Day struct {
	// Date is the day's start (UTC midnight).
	Date time.Time
	// Transactions is the number of customer-initiated transactions.
	Transactions int
	// Balance is the end-of-day total of the accounts in the customer's
	// primary currency (Currency), in minor units, when known (HasBalance):
	// from the first event that carried a balance on.
	Balance    int64
	HasBalance bool
}

// Currency is the customer's primary currency: the one balances are summed
// in ("" before the first money event).
func (s *State) Currency() string { return s.currency }

// Daily returns the n days (at most HistoryDays) ending with the UTC day of
// through, oldest first. Days after the customer's clock have no
// transactions and carry the last known balance forward.
func (s *State) Daily(through time.Time, n int) []Day {
	n = min(max(n, 0), HistoryDays)
	if n == 0 {
		return nil
	}
	last := dayOf(through.UnixNano())
	first := last - int32(n) + 1
	out := make([]Day, n)
	// The balance carried into the first day, then one walk over the
	// buckets. prune clears balances older than keepBalanceDays (and puts
	// the last older total on the cutoff day), so a state written before
	// balances were kept this long reports them from its old cutoff on.
	bal, hasBal := s.balanceAt(first - 1)
	k := searchDay(s.buckets, first)
	for i := range out {
		d := first + int32(i)
		out[i].Date = toTime(dayStart(d))
		if k < len(s.buckets) && s.buckets[k].day == d {
			b := &s.buckets[k]
			out[i].Transactions = int(b.txns)
			if b.hasBal {
				bal, hasBal = b.bal, true
			}
			k++
		}
		out[i].Balance, out[i].HasBalance = bal, hasBal
	}
	return out
}
