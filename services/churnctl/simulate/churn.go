package simulate

import (
	"math/rand/v2"
	"slices"
)

// planChurn fixes a churner's churn date and the shape of its leaving, and
// returns the first day of its leading indicators (the timeline's length for
// stable customers), before which ordinary noise may happen.
func (s *bank) planChurn(c *customer, r *rand.Rand) int {
	cp := &s.p.Churn
	days := len(s.cal.days)
	if c.arch == archStable {
		return days
	}
	lo := min(max(1, int(float64(days)*cp.EarliestFraction)), days-1)
	hi := max(lo, days-1-cp.MinDaysAfter)
	churn := uniformInt(r, lo, hi)
	if c.silent {
		// no taper, no outflow, no complaint, no closure: the customer is
		// simply not there after the churn date (its money stays)
		c.arch = archSilent
		c.churnDay, c.activeEnd, c.incomeEnd = churn, churn, churn
		c.afterFrom, c.afterFactor = churn+1, 0
		return churn
	}

	if c.arch == archChurnedWonBack {
		wlo := cp.WonBackTaperMaxDays + 30
		whi := days - 1 - cp.WonBackMinTailDays - cp.WonBackDormantMinDays
		if whi < wlo {
			c.arch = archGradualDecline // no room to come back in this timeline
		} else {
			churn = uniformInt(r, wlo, whi)
		}
	}
	if c.arch == archSalaryMoved {
		// The churn date is the last salary: one of the paydays in [lo, hi].
		var paydays []int
		for _, d := range c.incomeOn {
			if d >= lo && d <= hi {
				paydays = append(paydays, d)
			}
		}
		if len(paydays) == 0 {
			c.arch = archGradualDecline
		} else {
			churn = paydays[r.IntN(len(paydays))]
		}
	}
	c.churnDay = churn
	c.activeEnd = churn
	c.incomeEnd = churn - 1
	add := func(a action) {
		if a.day >= 0 && a.day < days {
			c.actions = append(c.actions, a)
		}
	}

	switch c.arch {
	case archGradualDecline, archChurnedWonBack:
		lo, hi := cp.GradualTaperMinDays, cp.GradualTaperMaxDays
		if c.arch == archChurnedWonBack {
			lo, hi = cp.WonBackTaperMinDays, cp.WonBackTaperMaxDays
		}
		c.taperLen = uniformInt(r, lo, hi)
		c.taperFrom = churn - c.taperLen
		// The salary stops somewhere in the taper: moved, or the job ended.
		c.incomeEnd = c.taperFrom + scaleInt(c.taperLen, uniform(r, 0.3, 1.0))
		add(action{day: churn, kind: inLastActivity})
		if c.arch == archChurnedWonBack {
			maxDormant := min(cp.WonBackDormantMaxDays, days-1-cp.WonBackMinTailDays-churn)
			c.returnDay = churn + uniformInt(r, cp.WonBackDormantMinDays, maxDormant)
			c.returnIncome = chance(r, cp.WonBackSalaryRate)
			add(action{day: c.returnDay, kind: inReturn, amount: scale(c.income, uniform(r, 1, 3))})
		}
		return c.taperFrom

	case archSuddenDrain:
		lead := uniformInt(r, cp.DrainLeadMinDays, cp.DrainLeadMaxDays)
		c.afterFrom, c.afterFactor = churn-lead, cp.DrainAfterActivity
		add(action{day: churn - lead, kind: inDrain, share: uniform(r, cp.DrainFirstShareMin, cp.DrainFirstShareMax)})
		if lead > 2 && chance(r, cp.DrainSecondRate) {
			add(action{day: churn - lead + uniformInt(r, 1, lead-1), kind: inDrain, share: uniform(r, cp.DrainSecondShareMin, cp.DrainSecondShareMax)})
		}
		add(action{day: churn, kind: inFinalSweep, amount: s.cents(uniformInt64(r, 0, cp.DrainResidualCents))})
		return c.afterFrom

	case archSalaryMoved:
		c.taperLen = uniformInt(r, cp.SalaryMovedTaperMinDays, cp.SalaryMovedTaperMaxDays)
		c.taperFrom = churn - c.taperLen
		c.fadeLen = uniformInt(r, cp.SalaryMovedFadeMinDays, cp.SalaryMovedFadeMaxDays)
		c.incomeEnd = churn
		c.activeEnd = min(churn+c.fadeLen, days-1)
		// The last salaries are forwarded to the new bank the next day.
		forwards := 0
		for m := len(c.incomeOn) - 1; m >= 0 && forwards < cp.SalaryMovedForwards; m-- {
			if d := c.incomeOn[m]; d >= 0 && d <= churn && d > c.taperFrom {
				add(action{day: d + 1, kind: inForward, amount: scale(c.incomeAmt[m], uniform(r, cp.SalaryForwardShareMin, cp.SalaryForwardShareMax))})
				forwards++
			}
		}
		return c.taperFrom

	case archComplaintThenLeave:
		lead := uniformInt(r, cp.ComplaintLeadMinDays, cp.ComplaintLeadMaxDays)
		c.afterFrom, c.afterFactor = churn-lead, cp.ComplaintAfterActivity
		n := uniformInt(r, 1, cp.ComplaintMax)
		when := []int{churn - lead}
		for range n - 1 {
			when = append(when, uniformInt(r, churn-lead+1, churn-3))
		}
		slices.Sort(when)
		strong := 0
		if !chance(r, cp.StrongFirstRate) {
			strong = r.IntN(n)
		}
		for i, d := range when {
			sent := uniform(r, cp.OtherSentimentMin, cp.OtherSentimentMax)
			if i == strong {
				sent = uniform(r, cp.StrongSentimentMin, cp.StrongSentimentMax)
			}
			add(action{day: d, kind: inComplaint, sentiment: hundredths(sent)})
		}
		add(action{day: churn, kind: inDrain, share: uniform(r, cp.ComplaintOutflowShareMin, cp.ComplaintOutflowShareMax)})
		return c.afterFrom

	case archAccountClosure:
		cancelLead := uniformInt(r, cp.ClosureCancelLeadMinDays, cp.ClosureCancelLeadMaxDays)
		moveLead := uniformInt(r, min(cp.ClosureMoveLeadMinDays, cancelLead-1), cancelLead-1)
		c.afterFrom, c.afterFactor = churn-cancelLead, cp.ClosureAfterActivity
		add(action{day: churn - cancelLead, kind: inProductCancel})
		add(action{day: churn - moveLead, kind: inMoveOut, share: uniform(r, cp.ClosureMoveShareMin, cp.ClosureMoveShareMax)})
		add(action{day: churn, kind: inCloseAll})
		return c.afterFrom
	}
	return days
}

func scaleInt(v int, f float64) int { return int(float64(v) * f) }

// churnFactor is the churner's multiplier on customer-initiated activity
// for day d: 1 before its leading indicators, 0 once it has left.
func (c *customer) churnFactor(d int, p *ChurnParams) float64 {
	if c.arch == archStable {
		return 1
	}
	if c.returnDay >= 0 && d >= c.returnDay {
		return min(1, float64(d-c.returnDay+1)/float64(p.WonBackRampDays))
	}
	if d > c.activeEnd {
		return 0
	}
	switch c.arch {
	case archGradualDecline, archChurnedWonBack:
		if d < c.taperFrom {
			return 1
		}
		y := float64(c.churnDay-d) / float64(c.taperLen)
		f := 1.0
		for range p.TaperExponent {
			f *= y
		}
		return f
	case archSalaryMoved:
		if d < c.taperFrom {
			return 1
		}
		if d <= c.churnDay {
			y := float64(c.churnDay-d) / float64(c.taperLen)
			return p.SalaryMovedFloor + float64((1-p.SalaryMovedFloor)*y*y)
		}
		return float64(p.SalaryMovedFloor * float64(c.activeEnd-d+1) / float64(c.fadeLen+1))
	default:
		if d < c.afterFrom {
			return 1
		}
		return c.afterFactor
	}
}

// incomeAt reports whether regular flows (income, rent, savings) run on d.
func (c *customer) incomeAt(d int) bool {
	if d <= c.incomeEnd {
		return true
	}
	return c.returnDay >= 0 && d >= c.returnDay && c.returnIncome
}
