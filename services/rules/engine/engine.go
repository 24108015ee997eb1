package engine

import (
	"math"
	"time"
)

// Config configures an Engine.
type Config struct {
	// HomeBank is the counterparty bank code of the bank itself; transfers
	// to it (or with no counterparty) are internal. Default "HOME".
	HomeBank string
	// Lateness is how much older than the customer's clock an event may be
	// and still be applied; it is also the dedupe window. Default 7 days,
	// the SPEC's allowed lateness.
	Lateness time.Duration
}

// Engine applies events and the passing of event time to customer states.
// It holds only configuration, so one Engine may serve many goroutines as
// long as each State is used by one at a time.
type Engine struct {
	homeBank string
	lateness int64
}

// New returns an Engine with defaults filled in.
func New(cfg Config) *Engine {
	if cfg.HomeBank == "" {
		cfg.HomeBank = "HOME"
	}
	if cfg.Lateness <= 0 {
		cfg.Lateness = 7 * 24 * time.Hour
	}
	return &Engine{homeBank: cfg.HomeBank, lateness: int64(cfg.Lateness)}
}

var defaultThresholds = DefaultThresholds()

// Check tells whether Apply would apply ev: ErrDuplicate for an event id
// already applied within the lateness window, ErrTooLate for an event older
// than the customer's clock minus the lateness (which the engine cannot
// apply exactly once, so it ignores it). The service routes both to its
// counters or the DLQ.
func (e *Engine) Check(s *State, ev Event) error {
	return e.check(s, ev, hashID(ev.ID))
}

// check is Check with the event id's hash, which Apply keeps.
func (e *Engine) check(s *State, ev Event, h uint64) error {
	if !s.init {
		return nil
	}
	if ev.ID != "" && s.seenBefore(h) {
		return ErrDuplicate
	}
	if ev.Time.UnixNano() < s.clock-e.lateness {
		return ErrTooLate
	}
	return nil
}

// Apply first advances the customer to ev.Time, firing absence rules whose
// deadlines passed (stamped with their deadlines), then applies ev. It
// returns the signals fired, in event-time order of their triggers. A
// duplicate or too-late event (see Check) returns nil and leaves s unchanged.
func (e *Engine) Apply(s *State, ev Event, p Profile, th *Thresholds) []Signal {
	out, _ := e.ApplyChecked(s, ev, p, th)
	return out
}

// ApplyChecked is Apply that also says why an event was not applied
// (Check's error), so that a caller counting duplicates checks only once.
func (e *Engine) ApplyChecked(s *State, ev Event, p Profile, th *Thresholds) ([]Signal, error) {
	h := hashID(ev.ID)
	if err := e.check(s, ev, h); err != nil {
		return nil, err
	}
	t := ev.Time.UnixNano()
	if !s.init {
		s.init = true
		s.customerID = ev.CustomerID
		s.clock, s.firstSeen = t, t
		s.dropDay = dayOf(t)
		s.derive()
	}
	r := e.run(s, p, th)
	out := r.advanceTo(t, nil)
	if ev.ID != "" {
		if len(s.seen) >= maxSeen {
			s.seen = append(s.seen[:0], s.seen[1:]...) // exactly-once is lost for the oldest
		}
		s.seen = append(s.seen, seenID{day: dayOf(t), hash: h})
	}
	if t < s.firstSeen {
		s.firstSeen = t
	}
	if s.currency == "" && ev.Currency != "" && ev.Type.Money() {
		s.currency = ev.Currency
	}
	out = r.applyEvent(ev, t, out)
	s.prune()
	r.computeNext()
	return out, nil
}

// Advance tells the customer that its partition clock reached now: every
// absence rule whose deadline is at or before now fires, stamped with its
// deadline. Advance(t1) then Advance(t2) has the same effect as Advance(t2).
// Calling it with the current clock only recomputes NextDeadline (useful
// after a threshold change).
func (e *Engine) Advance(s *State, now time.Time, p Profile, th *Thresholds) []Signal {
	if !s.init {
		return nil
	}
	r := e.run(s, p, th)
	out := r.advanceTo(now.UnixNano(), nil)
	s.prune()
	r.computeNext()
	return out
}

// run is one Apply or Advance call: the state with the thresholds that apply.
type run struct {
	e    *Engine
	s    *State
	th   *Thresholds
	tt   *TierThresholds
	tier Tier
	p    Profile
}

func (e *Engine) run(s *State, p Profile, th *Thresholds) *run {
	if th == nil {
		th = &defaultThresholds
	}
	tt, tier := th.forTier(p)
	return &run{e: e, s: s, th: th, tt: tt, tier: tier, p: p}
}

func (r *run) declDeadline() int64 { return r.s.anchor() + r.tt.DecliningDays*nsPerDay }
func (r *run) churnDeadline() int64 {
	return r.s.anchor() + r.tt.ChurnedDays*nsPerDay
}

// salaryDeadline is last salary + N days, when the customer was salaried:
// at least min_credits distinct salary days within lookback_days up to and
// including the last one.
func (r *run) salaryDeadline() (int64, bool) {
	s := r.s
	if !s.hasSalary || s.salaryFired || r.salaryCredits() < int(r.tt.SalaryMinCredits) {
		return 0, false
	}
	return s.lastSalary + r.tt.SalaryDays*nsPerDay, true
}

func (r *run) salaryCredits() int {
	last := dayOf(r.s.lastSalary)
	n := 0
	for _, d := range r.s.salaryDays {
		if d >= last-int32(r.tt.SalaryLookbackDays) && d <= last {
			n++
		}
	}
	return n
}

// advanceTo moves the customer's clock to now, firing every absence rule
// and activity.drop transition due on the way, in time order.
func (r *run) advanceTo(now int64, out []Signal) []Signal {
	s := r.s
	if now <= s.clock {
		return out
	}
	for {
		best, which := int64(math.MaxInt64), rule(-1)
		consider := func(at int64, rl rule) {
			if at <= now && (at < best || at == best && rl < which) {
				best, which = at, rl
			}
		}
		if !s.declFired {
			consider(r.declDeadline(), ruleDeclining)
		}
		if !s.churnFired {
			consider(r.churnDeadline(), ruleChurned)
		}
		drop, dropOK := s.dropScan(r.tt, s.dropDay, dayOf(now), s.dropFired, false)
		dropAt, pending := r.confirmDrop(&drop, &dropOK, dayOf(now))
		if dropOK {
			consider(dayStart(dropAt), ruleDrop)
		}
		if at, ok := r.salaryDeadline(); ok {
			consider(at, ruleSalary)
		}
		switch which {
		case ruleDeclining:
			s.declFired = true
			if s.stage != StageChurned {
				s.stage = StageDeclining
			}
			out = append(out, r.dormancySignal(ruleDeclining, best, r.tt.DecliningDays))
		case ruleChurned:
			s.declFired, s.churnFired = true, true
			s.stage = StageChurned
			out = append(out, r.dormancySignal(ruleChurned, best, r.tt.ChurnedDays))
		case ruleDrop:
			s.dropDay = dropAt
			s.dropFired = drop.fire
			if drop.fire {
				out = append(out, r.dropSignal(drop, dropAt))
			} else {
				s.endHolding(ruleDrop, best)
			}
		case ruleSalary:
			s.salaryFired = true
			out = append(out, r.salarySignal(best))
		default:
			if pending >= 0 {
				// a drop waiting for confirm_days: evaluate again from
				// its first day, with whatever events come meanwhile
				s.dropDay = max(s.dropDay, pending-1)
			} else {
				s.dropDay = max(s.dropDay, dayOf(now))
			}
			s.clock = now
			return out
		}
	}
}

// confirmDrop applies activity.drop.confirm_days to the transition dropScan
// found up to day today. A firing first seen on day x fires on x + wait if
// the drop still holds on every day up to it (the returned day); if it ends
// before, that day is a quiet recovery (*drop becomes it: no signal, the
// rule stays armed); if x + wait is after today, there is no transition yet
// and pending is x, from which the next call evaluates again. pending is -1
// otherwise.
func (r *run) confirmDrop(drop *dropEval, ok *bool, today int32) (at, pending int32) {
	wait := int32(r.tt.DropConfirmDays)
	if !*ok || !drop.fire || wait <= 0 {
		return drop.day, -1
	}
	x := drop.day
	if rec, recovered := r.s.dropScan(r.tt, x, min(x+wait, today), true, false); recovered {
		*drop = rec
		return rec.day, -1
	}
	if x+wait > today {
		*ok = false
		return 0, x
	}
	return x + wait, -1
}

// nextDropFiring is the day activity.drop would next fire if no event came:
// the first firing, or with confirm_days the first one still holding after
// the wait (passing through those that end within it). After a few of those
// it gives up and returns the day the current wait ends, which is early but
// never late: Advance then finds nothing to fire and computes it again.
func (r *run) nextDropFiring() (int32, bool) {
	s, wait := r.s, int32(r.tt.DropConfirmDays)
	from, fired := s.dropDay, s.dropFired
	for range 8 {
		ev, ok := s.dropScan(r.tt, from, math.MaxInt32, fired, true)
		if !ok || wait <= 0 {
			return ev.day, ok
		}
		rec, recovered := s.dropScan(r.tt, ev.day, ev.day+wait, true, false)
		if !recovered {
			return ev.day + wait, true
		}
		from, fired = rec.day, false
	}
	ev, ok := s.dropScan(r.tt, from, math.MaxInt32, fired, true)
	return ev.day + wait, ok
}

// computeNext stores the earliest future absence deadline.
func (r *run) computeNext() {
	s := r.s
	next := int64(0)
	consider := func(at int64) {
		if next == 0 || at < next {
			next = at
		}
	}
	if !s.declFired {
		consider(r.declDeadline())
	}
	if !s.churnFired {
		consider(r.churnDeadline())
	}
	if at, ok := r.salaryDeadline(); ok {
		consider(at)
	}
	if day, ok := r.nextDropFiring(); ok {
		consider(dayStart(day))
	}
	s.next = next
}

func (r *run) applyEvent(ev Event, t int64, out []Signal) []Signal {
	s := r.s
	if ev.Type.CustomerInitiated() {
		s.addTxn(dayOf(t))
		out = r.activity(ev, t, out)
	}
	// Balances: only balanceAfter moves them; a closed account holds nothing.
	acc, observe := -1, ev.AccountID != "" && (ev.HasBalance || ev.Type == EventAccountClosed)
	if observe {
		acc = s.accountIndex(ev.AccountID, ev.Currency)
	} else if ev.AccountID != "" {
		acc = s.findAccount(ev.AccountID)
	}
	if ev.Type == EventTransferOut && r.external(ev) {
		var a *account
		if acc >= 0 {
			a = &s.accounts[acc]
		}
		out = r.largeOutflow(ev, t, a, out) // before the balance moves
	}
	if observe {
		bal := ev.BalanceAfter
		if !ev.HasBalance {
			bal = 0
		}
		s.observeBalance(acc, t, bal)
	}
	switch ev.Type {
	case EventSalary:
		r.salary(ev, t)
	case EventTransferOut:
		if r.external(ev) && (ev.Currency == "" || ev.Currency == s.currency) {
			out = r.drain(ev, t, out)
		}
	case EventAccountClosed, EventProductCancelled:
		out = append(out, r.closureSignal(ev, t))
	case EventComplaint:
		out = r.complaint(ev, t, out)
	}
	return out
}

func (r *run) external(ev Event) bool {
	return ev.CounterpartyBank != "" && ev.CounterpartyBank != r.e.homeBank
}

// activity handles customer-initiated activity: a new latest activity ends
// the dormancy episode, returns a declining customer to ACTIVE and a churned
// one to WON_BACK (with a winback signal).
func (r *run) activity(ev Event, t int64, out []Signal) []Signal {
	s := r.s
	if s.hasActivity && t <= s.lastActivity {
		return out // late: the episode already starts after it
	}
	dormantSince := s.anchor()
	s.hasActivity, s.lastActivity, s.lastActivityID = true, t, ev.ID
	s.declFired, s.churnFired = false, false
	s.endHolding(ruleDeclining, t)
	s.endHolding(ruleChurned, t)
	switch s.stage {
	case StageDeclining:
		s.stage = StageActive
	case StageChurned:
		s.stage = StageWonBack
		out = append(out, r.winbackSignal(ev, t, dormantSince))
	}
	return out
}

func (r *run) salary(ev Event, t int64) {
	s := r.s
	d := dayOf(t)
	i := 0
	for i < len(s.salaryDays) && s.salaryDays[i] < d {
		i++
	}
	if i == len(s.salaryDays) || s.salaryDays[i] != d {
		s.salaryDays = append(s.salaryDays, 0)
		copy(s.salaryDays[i+1:], s.salaryDays[i:])
		s.salaryDays[i] = d
		if over := len(s.salaryDays) - maxSalaryCredits; over > 0 {
			s.salaryDays = append(s.salaryDays[:0], s.salaryDays[over:]...)
		}
	}
	if !s.hasSalary || t > s.lastSalary {
		s.hasSalary, s.lastSalary, s.lastSalaryID, s.salaryFired = true, t, ev.ID, false
		s.endHolding(ruleSalary, t)
	}
}

func (r *run) drain(ev Event, t int64, out []Signal) []Signal {
	s := r.s
	d := dayOf(t)
	if s.drainFired && !s.drainCheck(r.tt, d).hit {
		s.drainFired = false // recovered: the next breach is a new episode
	}
	s.addOutflow(d, ev.Amount)
	if c := s.drainCheck(r.tt, d); c.hit && !s.drainFired {
		s.drainFired = true
		out = append(out, r.drainSignal(ev, t, c))
	}
	return out
}

func (r *run) complaint(ev Event, t int64, out []Signal) []Signal {
	s := r.s
	i := len(s.complaints)
	for i > 0 && s.complaints[i-1].at > t {
		i--
	}
	s.complaints = append(s.complaints, complaint{})
	copy(s.complaints[i+1:], s.complaints[i:])
	s.complaints[i] = complaint{at: t, id: ev.ID}
	if len(s.complaints) > maxComplaintCount {
		s.complaints = append(s.complaints[:0], s.complaints[1:]...)
	}

	var ids []string
	n := 0
	for k := len(s.complaints) - 1; k >= 0; k-- {
		c := s.complaints[k]
		if c.at > t || c.at <= t-complaintWindowDay*nsPerDay {
			continue
		}
		n++
		if len(ids) < MaxSignalEvents {
			ids = append(ids, c.id)
		}
	}
	for a, b := 0, len(ids)-1; a < b; a, b = a+1, b-1 {
		ids[a], ids[b] = ids[b], ids[a]
	}
	sentiment := int64(0)
	if ev.HasSentiment {
		sentiment = int64(math.Round(ev.Sentiment * decimalOne))
	}
	negative := ev.HasSentiment && sentiment <= int64(r.tt.ComplaintSentimentFloor)
	if n >= int(r.tt.ComplaintCount) || negative {
		out = append(out, r.complaintSignal(ev, t, n, ids, negative, sentiment))
	}
	return out
}

// hashID is 64-bit FNV-1a of an event id, for the dedupe window.
func hashID(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}
