package simulate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

type eventType uint8

const (
	evDeposit eventType = iota
	evTransferIn
	evSalary
	evWithdrawal
	evTransferOut
	evCardPayment
	evInterest
	evFee
	evLogin
	evAccountOpened
	evAccountClosed
	evProductCancelled
	evComplaint
)

var eventTypeNames = [...]string{
	TypeDeposit, TypeTransferIn, TypeSalary, TypeWithdrawal, TypeTransferOut,
	TypeCardPayment, TypeInterest, TypeFee, TypeLogin, TypeAccountOpened,
	TypeAccountClosed, TypeProductCancelled, TypeComplaint,
}

// account is one of a customer's accounts; index 0 is the current account,
// the others are savings.
type account struct {
	id      string
	balance int64 // minor units, never negative
	rateBps int64 // yearly interest in basis points
	open    bool
	seen    bool // has had a money event, so its balance is known outside
	openDay int  // day an account opens during the timeline, -1 if open from the start
}

// absence is a stretch of reduced activity (holiday, sabbatical).
type absence struct {
	from, to int // day indexes, inclusive
	factor   float64
}

// action is a planned one-off intent on a given day.
type action struct {
	day       int
	kind      intentKind
	amount    int64
	share     float64
	sentiment int16
}

// customer is the plan and the running state of one simulated customer.
type customer struct {
	idx                   int32
	id, eventPrefix       string
	name, manager, branch string
	tier                  tier
	arch                  archetype
	silent                bool // set with arch until planChurn makes arch archSilent
	rng                   *rand.Rand
	tp                    *TierParams
	accts                 []account
	incomeType            eventType // SALARY, TRANSFER_IN (pension) or DEPOSIT
	income                int64     // minor units a month
	incomeOn              []int     // day index of the income per month, -1 none
	incomeAmt             []int64   // amount per month (13th salary in December)
	rent, extSave         int64
	rentOn, extSaveOn     []int
	rentBank              bankRef
	level                 float64
	monthF                []float64
	cardMean, atmMean     int64
	tierOutflow           int64 // SPEC §4 outflow.large tier amount in minor units
	absences              []absence
	actions               []action
	next                  int // first action not yet due
	sweepDay              int // day to move surplus to savings, -1 none
	keepOnCurrent         int64
	newBank               bankRef
	channel               channel // MOBILE or ONLINE
	churnDay              int
	taperFrom, taperLen   int // gradual_decline, won-back, salary_moved
	afterFrom             int // sudden_drain, complaint, closure: activity afterFactor from here
	afterFactor           float64
	fadeLen               int // salary_moved after the churn date
	activeEnd             int // last day of customer-initiated activity
	incomeEnd             int // last day of income, rent and other regular flows
	returnDay             int // won-back return, -1 none
	returnIncome          bool
	seq                   int32
	day                   int32 // the day being simulated
	blockStart            int
	block                 [numDiscretionary][7]uint8
	ring                  [96]int64 // end-of-day visible total balances, last 96 days
	ringN, ringPos        int
	recentExt             []dayAmount
	intents               []intent
	closedAll             bool
}

type dayAmount struct {
	day    int
	amount int64
}

// Random helpers. Floating-point results are wrapped in explicit
// conversions so that no platform fuses a multiply-add differently.
func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + float64((hi-lo)*r.Float64()) }

func uniformInt(r *rand.Rand, lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + r.IntN(hi-lo+1)
}

func uniformInt64(r *rand.Rand, lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + r.Int64N(hi-lo+1)
}

func chance(r *rand.Rand, p float64) bool { return r.Float64() < p }

func scale(v int64, f float64) int64 { return int64(float64(v) * f) }

// planCustomer draws everything about customer i that is fixed before the
// first day: identity, tier, accounts, income, habits, noise and churn.
func (s *bank) planCustomer(i, width int) *customer {
	p := s.p
	r := customerRand(s.cfg.Seed, i, streamBehaviour)
	org := customerRand(s.cfg.Seed, i, streamOrg)
	nMonths := len(s.cal.monthFirst)
	c := &customer{idx: int32(i), rng: r, sweepDay: -1, returnDay: -1}
	c.id = fmt.Sprintf("C%0*d", width, i+1)
	c.eventPrefix = "e-" + c.id + "-"
	c.manager, c.branch = s.org.assign(org, p.UnassignedRate)
	c.name = displayName(org)

	c.tier = tier(pick(r, p.TierMix[:]))
	c.tp = &p.Tiers[c.tier]
	tp := c.tp
	c.tierOutflow = s.cents(tp.OutflowAmountCents)
	if chance(r, p.Churn.Rate) {
		c.arch = archetype(1 + pick(r, p.Churn.Mix[:]))
		// drawn, and then overriding, after the archetype so that every
		// other draw of the customer stays where it was
		if chance(customerRand(s.cfg.Seed, i, streamSilent), p.Churn.SilentShare) {
			c.silent = true
		}
	}
	c.activeEnd, c.incomeEnd = len(s.cal.days), len(s.cal.days)
	c.churnDay = -1
	c.newBank = otherBank(r.IntN(len(otherBanks)))
	c.channel = chMobile
	if chance(r, 0.3) {
		c.channel = chOnline
	}

	// Income and spending.
	c.income = s.cents(uniformInt64(r, tp.IncomeMinCents, tp.IncomeMaxCents))
	switch {
	case c.arch == archSalaryMoved || chance(r, p.SalaryRate):
		c.incomeType = evSalary
	case chance(r, p.PensionRate):
		c.incomeType = evTransferIn
	default:
		c.incomeType = evDeposit
	}
	s.planIncome(c, r, nMonths)
	spend := scale(c.income, uniform(r, p.SpendMin, p.SpendMax))
	if chance(r, p.RentRate) {
		c.rent = scale(c.income, uniform(r, p.RentShareMin, p.RentShareMax))
		c.rentBank = otherBank(r.IntN(3))
		c.rentOn = s.monthlyDays(r, nMonths, uniformInt(r, 1, 5))
	}
	if chance(r, p.ExternalSavingsRate) {
		c.extSave = scale(c.income, uniform(r, p.ExternalSavingsShareMin, p.ExternalSavingsShareMax))
		c.extSaveOn = s.monthlyDays(r, nMonths, uniformInt(r, 2, 10))
	}
	c.level = uniform(r, p.ActivityMin, p.ActivityMax)
	atmBudget := scale(spend, uniform(r, 0.08, 0.18))
	cardBudget := max(spend-c.rent-c.extSave-atmBudget, spend/4)
	c.cardMean = max(cardBudget/int64(max(1, tp.CardPerMonth*c.level)), s.unit)
	c.atmMean = max(atmBudget/int64(max(1, tp.ATMPerMonth*c.level)), 20*s.unit)
	c.keepOnCurrent = c.rent + scale(c.income, uniform(r, 0.5, 1.0))

	// Accounts: a current account, perhaps one or two savings accounts.
	buffer := scale(c.income, uniform(r, tp.SavingsMonthsMin, tp.SavingsMonthsMax))
	current := account{id: c.id + "-01", rateBps: 10, open: true, openDay: -1}
	current.balance = scale(c.income, uniform(r, 0.3, 1.2))
	c.accts = append(c.accts, current)
	if chance(r, tp.SecondAccountRate) {
		sav := account{id: c.id + "-02", rateBps: int64(uniformInt(r, 150, 300)), open: true, openDay: -1, balance: buffer}
		c.accts = append(c.accts, sav)
		if chance(r, tp.ThirdAccountRate) {
			dep := account{id: c.id + "-03", rateBps: int64(uniformInt(r, 200, 350)), open: true, openDay: -1}
			dep.balance = buffer * 2 / 5
			c.accts[1].balance -= dep.balance
			c.accts = append(c.accts, dep)
		}
	} else {
		c.accts[0].balance += buffer / 2
	}

	// Habits and noise.
	c.monthF = make([]float64, nMonths)
	for m := range c.monthF {
		if chance(r, p.Noise.BusyMonthRate) {
			c.monthF[m] = p.Noise.BusyMonthFactor
		} else {
			c.monthF[m] = uniform(r, p.Noise.MonthFactorMin, p.Noise.MonthFactorMax)
		}
	}
	quietFrom := s.planChurn(c, r)
	s.planNoise(c, r, quietFrom)
	slices.SortStableFunc(c.actions, func(a, b action) int { return a.day - b.day })
	return c
}

// monthlyDays returns, per month, the business day on or before day-of-month
// dom (-1 outside the timeline).
func (s *bank) monthlyDays(r *rand.Rand, nMonths, dom int) []int {
	out := make([]int, nMonths)
	for m := range out {
		d := s.cal.toBusinessDay(s.cal.dayOf(m, dom))
		if !s.cal.inRange(d) {
			d = -1
		}
		out[m] = d
	}
	return out
}

// planIncome schedules the monthly income: a salary on a fixed day ± a
// little (business days, sometimes a week late, a 13th salary for some), a
// pension early in the month, or cash deposits on any day.
func (s *bank) planIncome(c *customer, r *rand.Rand, nMonths int) {
	p := s.p
	c.incomeOn = make([]int, nMonths)
	c.incomeAmt = make([]int64, nMonths)
	payDay := uniformInt(r, 25, 28)
	if chance(r, 0.3) {
		payDay = uniformInt(r, 1, 3)
	}
	bonus := c.incomeType == evSalary && chance(r, p.BonusRate)
	// One late salary per 12-month slot, in a random month of the slot.
	late := make([]int, nMonths)
	if c.incomeType == evSalary {
		for slot := 0; slot < nMonths; slot += 12 {
			if chance(r, p.Noise.LateSalaryRate) {
				m := slot + r.IntN(min(12, nMonths-slot))
				late[m] = uniformInt(r, p.Noise.LateSalaryMinDays, p.Noise.LateSalaryMaxDays)
			}
		}
	}
	for m := range nMonths {
		var d int
		switch c.incomeType {
		case evSalary:
			jitter := uniformInt(r, -p.SalaryDayJitter, p.SalaryDayJitter)
			d = s.cal.toBusinessDay(s.cal.dayOf(m, payDay) + jitter)
			if late[m] > 0 {
				d = s.cal.toBusinessDay(d + late[m])
			}
		case evTransferIn:
			d = s.cal.toBusinessDay(s.cal.dayOf(m, payDay%5+1))
		default:
			d = s.cal.dayOf(m, uniformInt(r, 1, 28))
		}
		if !s.cal.inRange(d) {
			d = -1
		}
		c.incomeOn[m] = d
		c.incomeAmt[m] = c.income
		if bonus && m < len(s.cal.monthFirst) && s.monthOf(m) == time.December {
			c.incomeAmt[m] *= 2
		}
	}
}

func (s *bank) monthOf(m int) time.Month {
	return time.Month((int(s.cfg.Start.Month())-1+m)%12 + 1)
}

// planNoise adds the stable customers' noise: holidays, a long absence, a
// big purchase, an occasional external transfer, a mild complaint, a new
// savings account. Churners keep only what falls before quietFrom.
func (s *bank) planNoise(c *customer, r *rand.Rand, quietFrom int) {
	p := &s.p.Noise
	days := len(s.cal.days)
	nMonths := len(s.cal.monthFirst)
	// Churners keep only the noise that ends a month before their leading
	// indicators start, so that it cannot be mistaken for them.
	before := func(to int) bool { return to < quietFrom-30 }
	for slot := 0; slot < nMonths; slot += 12 {
		lo := max(0, s.cal.monthFirst[slot])
		hi := days - 1
		if slot+12 < nMonths {
			hi = s.cal.monthFirst[slot+12] - 1
		}
		inSlot := func() int { return uniformInt(r, lo, hi) }
		if chance(r, p.HolidayRate) {
			n := uniformInt(r, p.HolidayMinDays, p.HolidayMaxDays)
			from := inSlot()
			if chance(r, p.HolidaySummerShare) {
				for m := slot; m < min(slot+12, nMonths); m++ {
					if mon := s.monthOf(m); mon == time.July || mon == time.August {
						from = s.cal.monthFirst[m] + r.IntN(s.cal.monthLen[m])
						break
					}
				}
			}
			if before(from + n - 1) {
				c.absences = append(c.absences, absence{from, from + n - 1, uniform(r, p.HolidayActivityMin, p.HolidayActivityMax)})
			}
		}
		if chance(r, p.BigPurchaseRate) {
			if d := inSlot(); before(d) {
				c.actions = append(c.actions, action{day: d, kind: inBigPurchase, amount: scale(c.income, uniform(r, p.BigPurchaseIncomeMin, p.BigPurchaseIncomeMax))})
			}
		}
		if chance(r, p.OccasionalExternalRate) {
			if d := inSlot(); before(d) {
				c.actions = append(c.actions, action{day: d, kind: inOccasionalOut, amount: scale(c.income, uniform(r, p.OccasionalIncomeMin, p.OccasionalIncomeMax))})
			}
		}
		if chance(r, p.MildComplaintRate) {
			if d := inSlot(); before(d) {
				c.actions = append(c.actions, action{day: d, kind: inComplaint, sentiment: hundredths(uniform(r, p.MildSentimentMin, p.MildSentimentMax))})
			}
		}
	}
	if c.arch == archStable && chance(r, p.LongAbsenceRate) {
		n := uniformInt(r, p.LongAbsenceMinDays, p.LongAbsenceMaxDays)
		from := r.IntN(days)
		c.absences = append(c.absences, absence{from, from + n - 1, p.LongAbsenceActivity})
	}
	if c.arch == archStable && len(c.accts) > 1 && days > 90 && chance(r, s.p.NewAccountRate) {
		last := &c.accts[len(c.accts)-1]
		d := uniformInt(r, 30, days-30)
		c.accts[0].balance += last.balance
		last.balance, last.open, last.openDay = 0, false, d
		c.actions = append(c.actions, action{day: d, kind: inOpenAccount, share: uniform(r, 0.1, 0.3)})
	}
}

// hundredths rounds a sentiment to two decimals.
func hundredths(v float64) int16 {
	h := float64(v * 100)
	if h < 0 {
		return int16(h - 0.5)
	}
	return int16(h + 0.5)
}
