package engine

import (
	"math"
	"sort"
	"time"
)

// Time inside State is int64 Unix nanoseconds of event time; days are whole
// UTC days since the Unix epoch.
const (
	nsPerDay  = int64(24 * time.Hour)
	signalTTL = 30 * nsPerDay // a signal contributes this long unless its condition still holds
)

// Retention, in days before the customer's clock day. Late events are at most
// the lateness (7 days) older than the clock, so every window they or a day
// boundary can look at stays inside these.
const (
	keepCountDays = dropWindowDays + dropBaselineDays + maxDropConfirmDays + 10 // activity.drop windows + its longest wait + lateness
	// outflow.drain's baseline, and the daily series GetCustomerRisk charts
	// (HistoryDays), each plus the lateness.
	keepBalanceDays = max(drainBaselineDays+drainWindowDays, HistoryDays) + 10
	keepOutflowDays = drainWindowDays + 10 // outflow.drain window + lateness
	keepSeenDays    = 8                    // lateness + 1 day
	keepObsDays     = 8                    // per-account balance observations
	keepComplaints  = complaintWindowDay + 10

	maxSeen     = 4096 // dedupe entries; a customer with more events in 8 days loses exactly-once on the oldest
	maxAccounts = 64
)

func dayOf(ns int64) int32 {
	d := ns / nsPerDay
	if ns%nsPerDay < 0 {
		d--
	}
	return int32(d)
}

func dayStart(d int32) int64 { return int64(d) * nsPerDay }

func toTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// bucket holds one day of the customer's activity. Days without anything
// are absent. The end-of-day total balance is carried forward: a day without
// hasBal has the total of the latest earlier day with one.
type bucket struct {
	day    int32
	txns   int32 // customer-initiated transactions
	extOut int64 // external outflows, primary currency minor units
	bal    int64 // end-of-day total balance of all primary-currency accounts
	hasBal bool
}

func (b *bucket) empty() bool { return b.txns == 0 && b.extOut == 0 && !b.hasBal }

type balanceObs struct {
	at  int64
	bal int64
}

// account is one account's balance history: the last observation of each
// recent day (so late events find their neighbours) plus the last one before.
type account struct {
	id       string
	currency string
	obs      []balanceObs // sorted by at
}

type seenID struct {
	day  int32
	hash uint64
}

type complaint struct {
	at int64
	id string
}

// liveSignal is a signal still contributing to the score. A signal whose
// condition still holds (dormancy while dormant, salary still missing,
// activity still low) lives until the condition ends and then at least
// signalTTL after it fired.
type liveSignal struct {
	sig     Signal
	rule    rule
	at      int64
	holding bool
	heldTo  int64 // when the condition ended, if !holding
}

func (l *liveSignal) liveAt(t int64) bool {
	if l.at > t {
		return false
	}
	if l.holding {
		return true
	}
	return max(l.at+signalTTL, l.heldTo) > t
}

// State is everything the engine keeps about one customer. It is bounded:
// daily buckets for the SPEC windows, a few balance observations per account,
// salary days, recent complaints, dedupe hashes for the lateness window and at
// most one live signal per rule. The rules service stores it as one blob
// (MarshalBinary) per customer.
type State struct {
	init       bool
	customerID string
	currency   string // primary currency: drain and balances are summed in it
	clock      int64  // latest event time or Advance time seen
	firstSeen  int64

	hasActivity    bool
	lastActivity   int64
	lastActivityID string
	declFired      bool // dormancy episode flags, reset by new activity
	churnFired     bool
	stage          Stage

	dropDay   int32 // last day boundary evaluated for activity.drop
	dropFired bool  // in a drop episode: waits for recovery before firing again

	drainFired bool

	hasSalary     bool
	lastSalary    int64
	lastSalaryID  string
	salaryFired   bool    // salary.stopped fired for lastSalary
	salaryDays    []int32 // distinct days with a SALARY credit, newest maxSalaryCredits
	complaints    []complaint
	buckets       []bucket // sorted by day
	hasBalHistory bool
	balSince      int32 // first day with a known total balance
	accounts      []account
	seen          []seenID
	live          []liveSignal // at most one per rule, sorted by rule
	next          int64        // next absence deadline, 0 = none
	pruned        bool
	prunedDay     int32 // day of the last prune

	// Derived from buckets (derive) and kept in step with every write to
	// them, so that dropScan and prune need not walk them all; not encoded.
	txnTotal int64 // sum of txns
	outFrom  int32 // first day with extOut != 0, MaxInt32 if none
	balFrom  int32 // first day with hasBal, MaxInt32 if none
	empties  int32 // buckets holding nothing (a write fills them right away)
}

// derive recomputes the fields derived from the buckets.
func (s *State) derive() {
	total, outFrom, balFrom, empties := int64(0), int32(math.MaxInt32), int32(math.MaxInt32), int32(0)
	for i := range s.buckets {
		b := &s.buckets[i]
		total += int64(b.txns)
		if b.extOut != 0 {
			outFrom = min(outFrom, b.day)
		}
		if b.hasBal {
			balFrom = min(balFrom, b.day)
		}
		if b.empty() {
			empties++
		}
	}
	s.txnTotal, s.outFrom, s.balFrom, s.empties = total, outFrom, balFrom, empties
}

// LastActivity returns the time of the latest customer-initiated activity,
// or the zero time if there was none.
func (s *State) LastActivity() time.Time {
	if !s.hasActivity {
		return time.Time{}
	}
	return toTime(s.lastActivity)
}

// CustomerID returns the customer the state belongs to.
func (s *State) CustomerID() string { return s.customerID }

// Clock returns the latest event or Advance time the state has seen.
func (s *State) Clock() time.Time {
	if !s.init {
		return time.Time{}
	}
	return toTime(s.clock)
}

// NextDeadline returns the earliest time at which Advance could fire an
// absence rule (dormancy, activity.drop, salary.stopped) for this customer,
// computed with the thresholds of the last Apply or Advance. After a
// threshold change, call Advance at the partition clock to recompute it.
func (s *State) NextDeadline() (time.Time, bool) {
	if s.next == 0 {
		return time.Time{}, false
	}
	return toTime(s.next), true
}

// Stage returns the customer's current stage.
func (s *State) Stage() Stage { return s.stage }

// Balance returns the customer's latest end-of-day total balance, in minor
// units of its primary currency (accounts in other currencies are not in
// it), and false while no balance was ever observed. The retention KPIs sum
// it by tier.
func (s *State) Balance() (minor int64, currency string, ok bool) {
	minor, ok = s.balanceAt(math.MaxInt32)
	return minor, s.currency, ok
}

// Risk returns the customer's stage, score, severity and the signals live at
// now, oldest first.
func (s *State) Risk(now time.Time) (stage Stage, score int, sev Severity, live []Signal) {
	t := now.UnixNano()
	for i := range s.live {
		if s.live[i].liveAt(t) {
			live = append(live, cloneSignal(s.live[i].sig))
		}
	}
	sort.SliceStable(live, func(i, j int) bool { return live[i].Time.Before(live[j].Time) })
	score = s.score(t, -1)
	return s.stage, score, SeverityFor(score), live
}

func cloneSignal(sig Signal) Signal {
	sig.EventIDs = append([]string(nil), sig.EventIDs...)
	return sig
}

// anchor is the start of the current dormancy episode: the last activity, or
// the first event seen for a customer who never acted.
func (s *State) anchor() int64 {
	if s.hasActivity {
		return s.lastActivity
	}
	return s.firstSeen
}

// seenBefore reports whether the event id hash is in the dedupe window.
func (s *State) seenBefore(h uint64) bool {
	for i := range s.seen {
		if s.seen[i].hash == h {
			return true
		}
	}
	return false
}

// bucketIndex returns the index of day's bucket, creating it (empty) when
// asked.
func (s *State) bucketIndex(day int32, create bool) int {
	if n := len(s.buckets); n > 0 && s.buckets[n-1].day == day {
		return n - 1 // today's, usually
	}
	i := searchDay(s.buckets, day)
	if i < len(s.buckets) && s.buckets[i].day == day {
		return i
	}
	if !create {
		return -1
	}
	s.buckets = append(s.buckets, bucket{})
	copy(s.buckets[i+1:], s.buckets[i:])
	s.buckets[i] = bucket{day: day}
	s.empties++
	return i
}

// addTxn counts a customer-initiated transaction on day.
func (s *State) addTxn(day int32) {
	b := &s.buckets[s.bucketIndex(day, true)]
	if b.empty() {
		s.empties--
	}
	b.txns++
	s.txnTotal++
}

// addOutflow adds an external outflow on day.
func (s *State) addOutflow(day int32, amount int64) {
	b := &s.buckets[s.bucketIndex(day, true)]
	wasEmpty := b.empty()
	b.extOut += amount
	switch {
	case wasEmpty && !b.empty():
		s.empties--
	case !wasEmpty && b.empty():
		s.empties++
	}
	switch {
	case b.extOut != 0:
		s.outFrom = min(s.outFrom, day)
	case day == s.outFrom: // a negative amount cancelled it
		s.outFrom = firstOut(s.buckets, 0)
	}
}

// firstOut is the day of the first bucket from i on with an outflow.
func firstOut(bs []bucket, i int) int32 {
	for ; i < len(bs); i++ {
		if bs[i].extOut != 0 {
			return bs[i].day
		}
	}
	return math.MaxInt32
}

// firstBal is the day of the first bucket from i on with a balance.
func firstBal(bs []bucket, i int) int32 {
	for ; i < len(bs); i++ {
		if bs[i].hasBal {
			return bs[i].day
		}
	}
	return math.MaxInt32
}

// balanceAt returns the end-of-day total of day (carried forward).
func (s *State) balanceAt(day int32) (int64, bool) {
	i := sort.Search(len(s.buckets), func(i int) bool { return s.buckets[i].day > day })
	for i--; i >= 0; i-- {
		if s.buckets[i].hasBal {
			return s.buckets[i].bal, true
		}
	}
	return 0, false
}

// ensureBalance makes day carry an explicit end-of-day total equal to its
// carried value, so a later change can start or stop exactly there.
func (s *State) ensureBalance(day int32) {
	carried, _ := s.balanceAt(day)
	s.setBalance(s.bucketIndex(day, true), carried)
}

// setBalance gives bucket i an explicit total unless it has one.
func (s *State) setBalance(i int, bal int64) {
	b := &s.buckets[i]
	if b.hasBal {
		return
	}
	if b.empty() {
		s.empties--
	}
	b.hasBal, b.bal = true, bal
	s.balFrom = min(s.balFrom, b.day)
}

// addBalance adds delta to the end-of-day totals of days [from, to), or of
// every day from `from` on when open.
func (s *State) addBalance(from, to int32, delta int64, open bool) {
	if delta == 0 && s.hasBalHistory && from >= s.balSince {
		return // the carried totals already say it
	}
	if !open {
		s.ensureBalance(to)
	}
	s.ensureBalance(from)
	if !s.hasBalHistory || from < s.balSince {
		s.hasBalHistory, s.balSince = true, from
	}
	if delta == 0 {
		return
	}
	for i := s.bucketIndex(from, false); i < len(s.buckets); i++ {
		b := &s.buckets[i]
		if !open && b.day >= to {
			break
		}
		if b.hasBal {
			b.bal += delta
		}
	}
}

func (s *State) findAccount(id string) int {
	for i := range s.accounts {
		if s.accounts[i].id == id {
			return i
		}
	}
	return -1
}

// accountIndex returns the account's index, adding it when new.
func (s *State) accountIndex(id, currency string) int {
	for i := range s.accounts {
		if s.accounts[i].id == id {
			if s.accounts[i].currency == "" {
				s.accounts[i].currency = currency
			}
			return i
		}
	}
	if len(s.accounts) >= maxAccounts {
		// Forget the account observed longest ago; its last balance stays in
		// the totals already recorded.
		oldest := 0
		for i := range s.accounts {
			if lastObs(&s.accounts[i]) < lastObs(&s.accounts[oldest]) {
				oldest = i
			}
		}
		s.accounts = append(s.accounts[:oldest], s.accounts[oldest+1:]...)
	}
	s.accounts = append(s.accounts, account{id: id, currency: currency})
	return len(s.accounts) - 1
}

func lastObs(a *account) int64 {
	if len(a.obs) == 0 {
		return -1 << 63
	}
	return a.obs[len(a.obs)-1].at
}

// balanceBefore returns the account's last known balance strictly before at.
func (a *account) balanceBefore(at int64) (int64, bool) {
	i := sort.Search(len(a.obs), func(i int) bool { return a.obs[i].at >= at })
	if i == 0 {
		return 0, false
	}
	return a.obs[i-1].bal, true
}

// observeBalance records that account i held bal after an event at time at,
// and moves the customer's end-of-day totals by the change it makes, from
// at's day until the account's next observation (events may arrive out of
// order within the lateness window).
func (s *State) observeBalance(i int, at, bal int64) {
	a := &s.accounts[i]
	// first observation strictly after at (ties: the new one counts as later)
	n := sort.Search(len(a.obs), func(k int) bool { return a.obs[k].at > at })
	prev := int64(0)
	if n > 0 {
		prev = a.obs[n-1].bal
	}
	if a.currency == "" || a.currency == s.currency {
		from := dayOf(at)
		if n == len(a.obs) {
			s.addBalance(from, 0, bal-prev, true)
		} else if to := dayOf(a.obs[n].at); to > from {
			s.addBalance(from, to, bal-prev, false)
		}
	}
	day := dayOf(at)
	switch {
	case n > 0 && dayOf(a.obs[n-1].at) == day:
		a.obs[n-1] = balanceObs{at, bal} // keep only the last observation of a day
	case n < len(a.obs) && dayOf(a.obs[n].at) == day:
		// a later observation of the same day decides the day; nothing to keep
	default:
		a.obs = append(a.obs, balanceObs{})
		copy(a.obs[n+1:], a.obs[n:])
		a.obs[n] = balanceObs{at, bal}
	}
}

// prune drops what no window can reach any more from the clock's day. It
// depends only on that day, so it runs once per day: whatever is added later
// the same day is too recent to prune.
func (s *State) prune() {
	today := dayOf(s.clock)
	if s.pruned && s.prunedDay == today {
		return
	}
	s.pruned, s.prunedDay = true, today

	// Balances: carry the last total older than the cutoff onto the cutoff
	// day (ensureBalance(balCut) when balanceAt(balCut) finds one, with one
	// search).
	balCut := today - keepBalanceDays
	if bs := s.buckets; len(bs) > 0 && bs[0].day < balCut {
		i := searchDay(bs, balCut+1)
		j := i - 1
		for j >= 0 && !bs[j].hasBal {
			j--
		}
		if j >= 0 && bs[j].day != balCut {
			at := i - 1
			if bs[at].day != balCut {
				s.buckets = append(bs, bucket{})
				copy(s.buckets[i+1:], s.buckets[i:])
				s.buckets[i] = bucket{day: balCut}
				s.empties++
				at = i
			}
			s.setBalance(at, bs[j].bal)
		}
	}
	// Buckets before cntCut go, the rest lose outflows before outCut and
	// balances before balCut, and those left holding nothing go. outFrom and
	// balFrom say where the outflows and balances to clear start, so only
	// bucket runs move and only buckets in [lo, hi) can go empty (any, when
	// some already were).
	cntCut, outCut := today-keepCountDays, today-keepOutflowDays
	bs := s.buckets
	k := 0
	for k < len(bs) && bs[k].day < cntCut {
		s.txnTotal -= int64(bs[k].txns)
		k++
	}
	lo, hi := len(bs), k
	clearOut, clearBal := s.outFrom < outCut, s.balFrom < balCut
	if clearOut {
		i, j := max(k, searchDay(bs, s.outFrom)), searchDay(bs, outCut)
		for x := i; x < j; x++ {
			bs[x].extOut = 0
		}
		lo, hi = min(lo, i), max(hi, j)
	}
	if clearBal {
		i, j := max(k, searchDay(bs, s.balFrom)), searchDay(bs, balCut)
		for x := i; x < j; x++ {
			bs[x].hasBal, bs[x].bal = false, 0
		}
		lo, hi = min(lo, i), max(hi, j)
	}
	if s.empties > 0 {
		lo, hi = k, len(bs)
	}
	// bs[run:i] is kept but not yet moved down to bs[n:].
	n, run := 0, k
	drop := func(i int) {
		if n != run {
			copy(bs[n:], bs[run:i])
		}
		n += i - run
		run = i + 1
	}
	for i := lo; i < hi; i++ {
		if bs[i].empty() {
			drop(i)
		}
	}
	drop(len(bs)) // moves the last run
	clear(bs[n:])
	s.buckets = bs[:n]
	if len(s.buckets) == 0 {
		s.buckets = nil
	}
	s.empties = 0
	if clearOut {
		s.outFrom = firstOut(s.buckets, searchDay(s.buckets, outCut))
	}
	if clearBal {
		s.balFrom = firstBal(s.buckets, searchDay(s.buckets, balCut))
	}

	// Accounts: the latest observation before the cutoff plus each later one.
	obsCut := dayStart(today - keepObsDays)
	for i := range s.accounts {
		a := &s.accounts[i]
		k := sort.Search(len(a.obs), func(j int) bool { return a.obs[j].at >= obsCut })
		if k > 1 {
			a.obs = append(a.obs[:0], a.obs[k-1:]...)
		}
	}

	seenCut := today - keepSeenDays
	ks := 0
	for i, e := range s.seen {
		if e.day >= seenCut {
			if ks != i {
				s.seen[ks] = e
			}
			ks++
		}
	}
	s.seen = s.seen[:ks]
	if len(s.seen) == 0 {
		s.seen = nil
	}

	compCut := dayStart(today - keepComplaints)
	kc := s.complaints[:0]
	for _, c := range s.complaints {
		if c.at >= compCut {
			kc = append(kc, c)
		}
	}
	s.complaints = kc
	if len(s.complaints) == 0 {
		s.complaints = nil
	}

	kl := 0
	for i := range s.live {
		if l := &s.live[i]; l.holding || max(l.at+signalTTL, l.heldTo) > dayStart(today) {
			if kl != i {
				s.live[kl] = *l
			}
			kl++
		}
	}
	clear(s.live[kl:])
	s.live = s.live[:kl]
	if len(s.live) == 0 {
		s.live = nil
	}
}
