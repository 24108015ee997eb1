package simulate

import "slices"

type intentKind uint8

const (
	inCard intentKind = iota
	inATM
	inDeposit
	inLogin
	inMiscOut
	inMiscIn
	inIncome
	inSweep
	inRent
	inExtSave
	inFee
	inInterest
	inBigPurchase
	inOccasionalOut
	inComplaint
	inOpenAccount
	inLastActivity
	inReturn
	inDrain
	inFinalSweep
	inForward
	inProductCancel
	inMoveOut
	inCloseAll
)

// The discretionary kinds are counted per week; their order matches the
// first intent kinds.
const numDiscretionary = 6

// intent is something the customer (or the bank) does at a second of a day;
// it becomes zero or more events when applied in time order.
type intent struct {
	sec       int32
	kind      intentKind
	amount    int64
	share     float64
	sentiment int16
}

// Per-month rates of the discretionary kinds come from TierParams; these
// shape them over the week (Sunday first, each row sums to 7), over the
// year (January first) and over the day (hours 0…23, relative weights).
var (
	weekdayWeight = [numDiscretionary][7]float64{
		inCard:    {0.85, 0.85, 0.85, 0.9, 0.95, 1.15, 1.45},
		inATM:     {0.9, 0.9, 0.9, 0.9, 0.9, 1.3, 1.2},
		inDeposit: {0, 1.4, 1.4, 1.4, 1.4, 1.4, 0},
		inLogin:   {1.1, 1.1, 0.96, 0.96, 0.96, 0.96, 0.96},
		inMiscOut: {0.5, 1.2, 1.2, 1.2, 1.2, 1.2, 0.5},
		inMiscIn:  {0.5, 1.2, 1.2, 1.2, 1.2, 1.2, 0.5},
	}
	seasonCount  = [12]float64{0.95, 0.95, 1, 1, 1, 1, 0.95, 0.95, 1, 1, 1.05, 1.2}
	seasonAmount = [12]int64{950, 950, 1000, 1000, 1000, 1000, 1050, 1050, 1000, 1000, 1050, 1150} // per mille
	hourWeights  = [numDiscretionary][24]int{
		inCard:    {0, 0, 0, 0, 0, 0, 1, 2, 4, 5, 6, 7, 10, 9, 6, 6, 7, 9, 10, 8, 6, 4, 2, 1},
		inATM:     {0, 0, 0, 0, 0, 0, 0, 2, 4, 5, 5, 6, 8, 7, 5, 5, 6, 8, 8, 6, 4, 3, 1, 0},
		inDeposit: {0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 6, 6, 4, 4, 6, 6, 4, 0, 0, 0, 0, 0, 0, 0},
		inLogin:   {1, 0, 0, 0, 0, 0, 2, 6, 8, 5, 4, 4, 7, 6, 4, 4, 4, 5, 7, 9, 10, 9, 6, 3},
		inMiscOut: {0, 0, 0, 0, 0, 0, 0, 2, 4, 5, 5, 5, 6, 5, 5, 5, 5, 5, 6, 6, 5, 3, 1, 0},
		inMiscIn:  {0, 0, 0, 0, 0, 0, 0, 2, 4, 5, 5, 5, 6, 5, 5, 5, 5, 5, 6, 6, 5, 3, 1, 0},
	}
	hourTotals = func() (t [numDiscretionary]int) {
		for k, row := range hourWeights {
			for _, w := range row {
				t[k] += w
			}
		}
		return t
	}()
)

func (c *customer) perMonth(k intentKind) float64 {
	switch k {
	case inCard:
		return c.tp.CardPerMonth
	case inATM:
		return c.tp.ATMPerMonth
	case inDeposit:
		return c.tp.DepositPerMonth
	case inLogin:
		return c.tp.LoginPerMonth
	case inMiscOut:
		return c.tp.MiscOutPerMonth
	case inMiscIn:
		return c.tp.MiscInPerMonth
	}
	return 0
}

// planWeek fixes how many discretionary events of each kind fall on each
// of the 7 days from d. Counts are the expectation rounded at random, not
// Poisson draws: real spending is regular, and Poisson noise alone would
// make low-activity customers look like they are leaving.
func (c *customer) planWeek(s *bank, d int) {
	r := c.rng
	c.blockStart = d
	n := min(7, len(s.cal.days)-d)
	weekNoise := uniform(r, 1-s.p.WeeklyNoise, 1+s.p.WeeklyNoise)
	for k := range intentKind(numDiscretionary) {
		var w [7]int64
		var total int64
		base := float64(c.perMonth(k)*c.level) / 30.44
		for j := range n {
			day := d + j
			f := c.activityAt(s, day, k)
			if f == 0 {
				continue
			}
			cd := &s.cal.days[day]
			v := base * weekNoise * c.monthF[cd.month] * seasonCount[cd.calMon-1] * weekdayWeight[k][cd.weekday] * f
			w[j] = int64(v * 1e6)
			total += w[j]
		}
		cnt := total / 1e6
		if total%1e6 > 0 && r.Int64N(1e6) < total%1e6 {
			cnt++
		}
		c.block[k] = [7]uint8{}
		for range min(cnt, 255) {
			u := r.Int64N(total)
			for j := range n {
				if u < w[j] {
					if c.block[k][j] < 255 {
						c.block[k][j]++
					}
					break
				}
				u -= w[j]
			}
		}
	}
}

// activityAt is the factor on discretionary kind k for day d: churn,
// absences and, for logins, a trickle while dormant.
func (c *customer) activityAt(s *bank, d int, k intentKind) float64 {
	f := c.churnFactor(d, &s.p.Churn)
	if k == inLogin {
		if c.closedAll || (c.arch == archAccountClosure && d >= c.churnDay) {
			return 0
		}
		f = max(f, s.p.Churn.DormantLoginActivity)
	}
	for _, a := range c.absences {
		if d >= a.from && d <= a.to {
			f *= a.factor
		}
	}
	return f
}

func (c *customer) at(hourKind intentKind) int32 {
	r := c.rng
	u := r.IntN(hourTotals[hourKind])
	for h, w := range hourWeights[hourKind] {
		if u < w {
			return int32(h*3600 + r.IntN(3600))
		}
		u -= w
	}
	return int32(12 * 3600)
}

// between returns a random second in hours [from, to).
func (c *customer) between(from, to int) int32 {
	return int32(from*3600 + c.rng.IntN((to-from)*3600))
}

// step simulates day d of the customer and appends its events to out.
func (c *customer) step(s *bank, d int, out []rawEvent) []rawEvent {
	if c.closedAll {
		return out
	}
	c.day = int32(d)
	if (d-c.blockStart)%7 == 0 {
		c.planWeek(s, d)
	}
	cd := &s.cal.days[d]
	r := c.rng
	c.intents = c.intents[:0]
	add := func(in intent) { c.intents = append(c.intents, in) }

	for k := range intentKind(numDiscretionary) {
		for range c.block[k][d-c.blockStart] {
			add(intent{sec: c.at(k), kind: k})
		}
	}
	if c.incomeAt(d) {
		if m := dueIn(c.incomeOn, cd.month, d); m >= 0 {
			sec := c.between(5, 9)
			if c.incomeType == evDeposit {
				sec = c.between(10, 16)
			}
			add(intent{sec: sec, kind: inIncome, amount: c.incomeAmt[m]})
			if len(c.accts) > 1 && chance(r, 0.8) {
				c.sweepDay = d + 1 + r.IntN(3)
			}
		}
		if dueIn(c.rentOn, cd.month, d) >= 0 {
			add(intent{sec: c.between(7, 21), kind: inRent, amount: c.rent})
		}
		if dueIn(c.extSaveOn, cd.month, d) >= 0 {
			add(intent{sec: c.between(7, 21), kind: inExtSave, amount: c.extSave})
		}
		if c.sweepDay == d {
			add(intent{sec: c.between(7, 22), kind: inSweep})
		}
	}
	if cd.dom == 1 {
		add(intent{sec: c.between(2, 3), kind: inFee})
	}
	if cd.dom == s.cal.monthLen[cd.month] {
		add(intent{sec: int32(23*3600 + 30*60 + r.IntN(1800)), kind: inInterest})
	}
	for c.next < len(c.actions) && c.actions[c.next].day == d {
		a := c.actions[c.next]
		c.next++
		sec := c.between(9, 18)
		if a.kind == inCloseAll {
			sec = c.between(10, 16)
		}
		add(intent{sec: sec, kind: a.kind, amount: a.amount, share: a.share, sentiment: a.sentiment})
	}

	slices.SortStableFunc(c.intents, func(a, b intent) int { return int(a.sec - b.sec) })
	for _, in := range c.intents {
		if c.closedAll {
			break
		}
		out = c.apply(s, d, in, out)
	}
	c.endOfDay()
	return out
}

// dueIn returns the month whose scheduled day is d, looking at month m and
// its neighbours (a payday can move across a month boundary), or -1.
func dueIn(schedule []int, m, d int) int {
	for mm := max(0, m-1); mm <= m+1 && mm < len(schedule); mm++ {
		if schedule[mm] == d {
			return mm
		}
	}
	return -1
}

func (c *customer) endOfDay() {
	c.ring[c.ringPos] = c.visibleTotal()
	c.ringPos = (c.ringPos + 1) % len(c.ring)
	c.ringN = min(c.ringN+1, len(c.ring))
}

// averageBalance is the average end-of-day total balance over the 90 days
// before today and the 6 days before it, the window outflow.drain compares
// a week's outflows with; ok is false while no such day has passed.
func (c *customer) averageBalance() (avg int64, ok bool) {
	n := c.ringN - 6
	if n <= 0 {
		return 0, false
	}
	var sum int64
	for i := range n {
		// The oldest entries sit at ringPos onwards once the ring is full.
		j := (c.ringPos - c.ringN + i + 2*len(c.ring)) % len(c.ring)
		sum += c.ring[j]
	}
	return sum / int64(n), true
}

// visibleTotal is the balance a rules engine can know: that of the
// accounts which have had an event (and so a balanceAfter) so far.
func (c *customer) visibleTotal() int64 {
	var t int64
	for i := range c.accts {
		if c.accts[i].seen {
			t += c.accts[i].balance
		}
	}
	return t
}

func (c *customer) total() int64 {
	var t int64
	for i := range c.accts {
		t += c.accts[i].balance
	}
	return t
}

// emit appends an event on account a; money events carry the balance after.
func (c *customer) emit(out []rawEvent, sec int32, a int, typ eventType, amount int64, bank bankRef, channel channel) []rawEvent {
	c.seq++
	e := rawEvent{day: c.day, sec: sec, cust: c.idx, seq: c.seq, acct: int8(a), typ: typ, channel: channel}
	if amount > 0 {
		e.money, e.amount, e.balance, e.bank = true, amount, c.accts[a].balance, bank
		c.accts[a].seen = true
	}
	return append(out, e)
}

// credit and debit move money and emit the event.
func (c *customer) credit(out []rawEvent, sec int32, a int, typ eventType, amount int64, bank bankRef, channel channel) []rawEvent {
	if amount <= 0 || !c.accts[a].open {
		return out
	}
	c.accts[a].balance += amount
	return c.emit(out, sec, a, typ, amount, bank, channel)
}

func (c *customer) debit(out []rawEvent, sec int32, a int, typ eventType, amount int64, bank bankRef, channel channel) []rawEvent {
	if amount <= 0 || amount > c.accts[a].balance || !c.accts[a].open {
		return out
	}
	c.accts[a].balance -= amount
	return c.emit(out, sec, a, typ, amount, bank, channel)
}

// internal moves money between two own accounts.
func (c *customer) internal(s *bank, out []rawEvent, sec int32, from, to int, amount int64) []rawEvent {
	if amount <= 0 || amount > c.accts[from].balance || !c.accts[from].open || !c.accts[to].open {
		return out
	}
	out = c.debit(out, sec, from, evTransferOut, amount, homeBank, c.channel)
	return c.credit(out, sec, to, evTransferIn, amount, homeBank, c.channel)
}

// richestSavings returns the open savings account with the largest balance,
// or -1.
func (c *customer) richestSavings() int {
	best := -1
	for i := 1; i < len(c.accts); i++ {
		if c.accts[i].open && (best < 0 || c.accts[i].balance > c.accts[best].balance) {
			best = i
		}
	}
	return best
}

// topUp brings the current account to at least need, from savings.
func (c *customer) topUp(s *bank, out []rawEvent, sec int32, need int64) []rawEvent {
	short := need - c.accts[0].balance
	if short <= 0 {
		return out
	}
	src := c.richestSavings()
	if src < 0 {
		return out
	}
	amount := roundUp(short+c.income/4, 50*s.unit)
	amount = min(amount, c.accts[src].balance)
	return c.internal(s, out, sec, src, 0, amount)
}

func roundUp(v, step int64) int64 {
	if step <= 1 {
		return v
	}
	return (v + step - 1) / step * step
}

func roundDown(v, step int64) int64 {
	if step <= 1 {
		return v
	}
	return v / step * step
}

// spend pays amount from the current account, topping it up from savings
// when short; a payment that cannot be covered is declined (no event).
func (c *customer) spend(s *bank, out []rawEvent, sec int32, typ eventType, amount int64, bank bankRef, channel channel) []rawEvent {
	if amount <= 0 || !c.accts[0].open {
		return out
	}
	if amount > c.accts[0].balance {
		out = c.topUp(s, out, sec, amount)
	}
	return c.debit(out, sec, 0, typ, amount, bank, channel)
}

// externalLimit is the largest ordinary external outflow the customer makes
// from the current account on day d (see NoiseParams.ExternalShareCap).
func (c *customer) externalLimit(s *bank, d int) int64 {
	share := s.p.Noise.ExternalShareCap
	var recent int64
	kept := c.recentExt[:0]
	for _, x := range c.recentExt {
		if x.day > d-7 {
			kept = append(kept, x)
			recent += x.amount
		}
	}
	c.recentExt = kept
	if d < s.p.Noise.QuietStartDays {
		return 0
	}
	avg, ok := c.averageBalance()
	if !ok {
		return 0
	}
	limit := min(scale(c.accts[0].balance, share), scale(c.visibleTotal(), share), scale(avg, share)-recent)
	return min(limit, scale(c.tierOutflow, s.p.Noise.ExternalTierCap))
}

// ordinaryExternal pays an ordinary transfer to another bank within the
// external limit, topping the current account up first when that helps. With
// capped set it pays what the limit allows (if that is at least a quarter),
// otherwise it skips a transfer over the limit.
func (c *customer) ordinaryExternal(s *bank, out []rawEvent, d int, sec int32, amount int64, bank bankRef, capped bool) []rawEvent {
	if amount <= 0 || !c.accts[0].open {
		return out
	}
	if amount > c.externalLimit(s, d) {
		out = c.topUp(s, out, sec, int64(float64(amount)/s.p.Noise.ExternalShareCap)+1)
	}
	limit := c.externalLimit(s, d)
	if amount > limit {
		if !capped || limit < amount/4 {
			return out
		}
		amount = roundDown(limit, 10*s.unit)
	}
	if amount <= 0 {
		return out
	}
	c.recentExt = append(c.recentExt, dayAmount{d, amount})
	return c.debit(out, sec, 0, evTransferOut, amount, bank, c.channel)
}

// skewed returns a right-skewed positive amount around mean (integer
// arithmetic only): mostly 0.25…3.25 × mean, now and then up to 5× more.
func (c *customer) skewed(mean int64) int64 {
	r := c.rng
	f := 250 + int64(r.IntN(1000))*int64(r.IntN(1000))*3/1000
	if r.IntN(100) < 3 {
		f *= int64(2 + r.IntN(4))
	}
	return mean * f / 1000
}

// apply turns one intent into events.
func (c *customer) apply(s *bank, d int, in intent, out []rawEvent) []rawEvent {
	r := c.rng
	cd := &s.cal.days[d]
	switch in.kind {
	case inCard:
		amount := c.skewed(c.cardMean) * seasonAmount[cd.calMon-1] / 1000
		channel := chNone
		if r.IntN(100) < 30 {
			channel = chOnline
		}
		return c.spend(s, out, in.sec, evCardPayment, max(amount, s.unit/2, 1), noBank, channel)
	case inATM:
		amount := max(roundDown(c.skewed(c.atmMean), 10*s.unit), 20*s.unit)
		return c.spend(s, out, in.sec, evWithdrawal, min(amount, 1000*s.unit), noBank, chATM)
	case inDeposit:
		amount := max(roundDown(c.skewed(c.income/10), 10*s.unit), 10*s.unit)
		channel := chBranch
		if r.IntN(2) == 0 {
			channel = chATM
		}
		return c.credit(out, in.sec, 0, evDeposit, amount, noBank, channel)
	case inLogin:
		if !c.accts[0].open {
			return out
		}
		channel := c.channel
		if r.IntN(5) == 0 {
			channel = chOnline
		}
		return c.emit(out, in.sec, 0, evLogin, 0, noBank, channel)
	case inMiscOut:
		amount := max(c.skewed(c.income/20), 5*s.unit)
		return c.ordinaryExternal(s, out, d, in.sec, amount, otherBank(r.IntN(len(otherBanks))), false)
	case inMiscIn:
		amount := max(c.skewed(c.income/25), 5*s.unit)
		return c.credit(out, in.sec, 0, evTransferIn, amount, otherBank(r.IntN(len(otherBanks))), c.channel)
	case inIncome:
		switch c.incomeType {
		case evSalary:
			return c.credit(out, in.sec, 0, evSalary, in.amount, noBank, chNone)
		case evTransferIn:
			return c.credit(out, in.sec, 0, evTransferIn, in.amount, otherBank(2), chNone)
		default:
			return c.credit(out, in.sec, 0, evDeposit, roundDown(in.amount, 10*s.unit), noBank, chBranch)
		}
	case inSweep:
		to := c.richestSavings()
		if to < 0 {
			return out
		}
		surplus := roundDown(c.accts[0].balance-c.keepOnCurrent, 50*s.unit)
		if surplus < 100*s.unit {
			return out
		}
		return c.internal(s, out, in.sec, 0, to, surplus)
	case inRent:
		return c.ordinaryExternal(s, out, d, in.sec, in.amount, c.rentBank, false)
	case inExtSave:
		return c.ordinaryExternal(s, out, d, in.sec, in.amount, otherBank(1), false)
	case inOccasionalOut:
		return c.ordinaryExternal(s, out, d, in.sec, in.amount, otherBank(r.IntN(3)), true)
	case inFee:
		if fee := s.cents(c.tp.MonthlyFeeCents); c.accts[0].open && fee > 0 && fee <= c.accts[0].balance {
			return c.debit(out, in.sec, 0, evFee, fee, noBank, chNone)
		}
		return out
	case inInterest:
		for a := range c.accts {
			acc := &c.accts[a]
			if !acc.open {
				continue
			}
			interest := acc.balance * acc.rateBps / 120_000
			out = c.credit(out, in.sec, a, evInterest, interest, noBank, chNone)
		}
		return out
	case inBigPurchase:
		amount := min(in.amount, c.total()*4/5)
		if amount < 3*c.cardMean {
			return out
		}
		return c.spend(s, out, in.sec, evCardPayment, amount, noBank, chNone)
	case inComplaint:
		out = c.emit(out, in.sec, 0, evComplaint, 0, noBank, [...]channel{chPhone, chBranch, chOnline}[r.IntN(3)])
		out[len(out)-1].sentiment, out[len(out)-1].hasSent = in.sentiment, true
		return out
	case inOpenAccount:
		a := len(c.accts) - 1
		c.accts[a].open = true
		out = c.emit(out, in.sec, a, evAccountOpened, 0, noBank, c.channel)
		return c.internal(s, out, in.sec, 0, a, roundDown(scale(c.accts[0].balance, in.share), 10*s.unit))
	case inLastActivity:
		return c.spend(s, out, in.sec, evCardPayment, max(c.skewed(c.cardMean), s.unit), noBank, chNone)
	case inReturn:
		return c.credit(out, in.sec, 0, evTransferIn, in.amount, c.newBank, c.channel)
	case inDrain, inFinalSweep:
		// Every account sends its share (or all but a residual) to the
		// new bank.
		for a := range c.accts {
			acc := &c.accts[a]
			if !acc.open {
				continue
			}
			amount := scale(acc.balance, in.share)
			if in.kind == inFinalSweep {
				amount = acc.balance - in.amount
			}
			if amount >= 10*s.unit {
				out = c.debit(out, in.sec, a, evTransferOut, amount, c.newBank, c.channel)
			}
		}
		return out
	case inForward:
		return c.debit(out, in.sec, 0, evTransferOut, min(in.amount, c.accts[0].balance), c.newBank, c.channel)
	case inProductCancel:
		return c.emit(out, in.sec, 0, evProductCancelled, 0, noBank, [...]channel{chBranch, chOnline, chPhone}[r.IntN(3)])
	case inMoveOut:
		a := c.richestSavings()
		if a < 0 || c.accts[0].balance > c.accts[a].balance {
			a = 0
		}
		return c.debit(out, in.sec, a, evTransferOut, scale(c.accts[a].balance, in.share), c.newBank, c.channel)
	case inCloseAll:
		channel := [...]channel{chBranch, chOnline}[r.IntN(2)]
		for a := len(c.accts) - 1; a >= 0; a-- {
			acc := &c.accts[a]
			if !acc.open {
				continue
			}
			out = c.debit(out, in.sec, a, evTransferOut, acc.balance, c.newBank, channel)
			out = c.emit(out, in.sec, a, evAccountClosed, 0, noBank, channel)
			acc.open = false
		}
		c.closedAll = true
		return out
	}
	return out
}
