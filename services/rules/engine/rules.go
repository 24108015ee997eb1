package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strconv"

	"github.com/churnwatch/churnwatch/services/platform/money"
)

// rule is the internal index of a rule id; the order breaks ties between
// signals due at the same instant and fixes the order of the score product.
type rule int8

const (
	ruleDeclining rule = iota
	ruleChurned
	ruleDrop
	ruleLarge
	ruleDrain
	ruleSalary
	ruleClosure
	ruleComplaints
	ruleWinback
	numRules
)

var ruleIDs = [numRules]string{
	RuleDormancyDeclining, RuleDormancyChurned, RuleActivityDrop, RuleOutflowLarge,
	RuleOutflowDrain, RuleSalaryStopped, RuleClosure, RuleComplaints, RuleWinback,
}

// ruleWeights: see the package documentation.
var ruleWeights = [numRules]int64{45, 70, 30, 45, 55, 40, 50, 30, 0}

// Rules returns every rule id in a fixed order.
func Rules() []string { return append([]string(nil), ruleIDs[:]...) }

// Weight returns a rule's score weight (0–100), or -1 for an unknown id.
func Weight(ruleID string) int {
	for i, id := range ruleIDs {
		if id == ruleID {
			return int(ruleWeights[i])
		}
	}
	return -1
}

// holds reports whether a rule's signal stays live while its condition holds.
func (rl rule) holds() bool {
	return rl == ruleDeclining || rl == ruleChurned || rl == ruleDrop || rl == ruleSalary
}

// score combines the signals live at t, plus extra if ≥ 0, as
// 100 × (1 − Π(1 − wᵢ/100)) in integer arithmetic over rules in fixed order;
// dormancy.churned supersedes dormancy.declining.
func (s *State) score(t int64, extra rule) int {
	var present [numRules]bool
	for i := range s.live {
		if s.live[i].liveAt(t) {
			present[s.live[i].rule] = true
		}
	}
	if extra >= 0 {
		present[extra] = true
	}
	if present[ruleChurned] {
		present[ruleDeclining] = false
	}
	rem := int64(10000)
	for rl, ok := range present {
		if ok {
			rem = rem * (100 - ruleWeights[rl]) / 100
		}
	}
	return int((10000 - rem + 50) / 100)
}

func (s *State) endHolding(rl rule, at int64) {
	for i := range s.live {
		if l := &s.live[i]; l.rule == rl && l.holding {
			l.holding, l.heldTo = false, at
		}
	}
}

// fire completes sig (id, customer, stage, score) and keeps it live.
func (r *run) fire(rl rule, at int64, trigger string, sig Signal) Signal {
	s := r.s
	sig.ID = signalID(s.customerID, ruleIDs[rl], at, trigger)
	sig.CustomerID = s.customerID
	sig.Rule = ruleIDs[rl]
	sig.Time = toTime(at)
	sig.ThresholdVersion = r.th.Version
	sig.Tier = r.tier
	sig.UnknownCustomer = !r.p.Known
	sig.Stage = s.stage
	sig.Score = s.score(at, rl)
	sig.Severity = SeverityFor(sig.Score)
	if len(sig.EventIDs) > MaxSignalEvents {
		sig.EventIDs = sig.EventIDs[len(sig.EventIDs)-MaxSignalEvents:]
	}

	l := liveSignal{sig: cloneSignal(sig), rule: rl, at: at, holding: rl.holds()}
	i := 0
	for i < len(s.live) && s.live[i].rule < rl {
		i++
	}
	switch {
	case i < len(s.live) && s.live[i].rule == rl:
		if s.live[i].at <= at { // a late trigger never displaces a newer signal
			s.live[i] = l
		}
	default:
		s.live = append(s.live, liveSignal{})
		copy(s.live[i+1:], s.live[i:])
		s.live[i] = l
	}
	return sig
}

// signalID is hex of the first 16 bytes of SHA-256 over customer, rule,
// trigger time and trigger event id.
func signalID(customer, ruleID string, at int64, trigger string) string {
	var buf [384]byte
	b := append(buf[:0], customer...)
	b = append(b, 0)
	b = append(b, ruleID...)
	b = append(b, 0)
	b = strconv.AppendInt(b, at, 10)
	b = append(b, 0)
	b = append(b, trigger...)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func ids(id string) []string {
	if id == "" {
		return nil
	}
	return []string{id}
}

func days(n int64) string { return strconv.FormatInt(n, 10) }

func (r *run) dormancySignal(rl rule, at, n int64) Signal {
	s := r.s
	detail := fmt.Sprintf("No customer-initiated activity for %d days.", n)
	if !s.hasActivity {
		detail = fmt.Sprintf("No customer-initiated activity in the %d days since the customer's first event.", n)
	}
	if rl == ruleChurned {
		detail = detail[:len(detail)-1] + "; the customer is considered churned."
	}
	trigger := ""
	if s.hasActivity {
		trigger = s.lastActivityID
	}
	return r.fire(rl, at, trigger, Signal{
		Observed: days((at - s.anchor()) / nsPerDay), Threshold: days(n), Unit: "days",
		EventIDs: ids(trigger), Detail: detail,
	})
}

func (r *run) salarySignal(at int64) Signal {
	s := r.s
	return r.fire(ruleSalary, at, s.lastSalaryID, Signal{
		Observed: days((at - s.lastSalary) / nsPerDay), Threshold: days(r.tt.SalaryDays), Unit: "days",
		EventIDs: ids(s.lastSalaryID),
		Detail: fmt.Sprintf("No salary credit for %d days after %d salary credits in the %d days up to the last one.",
			r.tt.SalaryDays, r.salaryCredits(), r.tt.SalaryLookbackDays),
	})
}

func (r *run) winbackSignal(ev Event, t, dormantSince int64) Signal {
	n := (t - dormantSince) / nsPerDay
	return r.fire(ruleWinback, t, ev.ID, Signal{
		Observed: days(n), Threshold: days(r.tt.ChurnedDays), Unit: "days", EventIDs: ids(ev.ID),
		Detail: fmt.Sprintf("The churned customer is active again after %d days without customer-initiated activity.", n),
	})
}

func (r *run) closureSignal(ev Event, t int64) Signal {
	detail := "The customer closed an account."
	if ev.Type == EventProductCancelled {
		detail = "The customer cancelled a product."
	}
	return r.fire(ruleClosure, t, ev.ID, Signal{
		Observed: "1", Threshold: "1", Unit: "closures", EventIDs: ids(ev.ID), Detail: detail,
	})
}

func (r *run) complaintSignal(ev Event, t int64, n int, ids []string, negative bool, sentiment int64) Signal {
	sig := Signal{EventIDs: ids}
	switch {
	case n >= int(r.tt.ComplaintCount):
		sig.Observed, sig.Threshold, sig.Unit = strconv.Itoa(n), strconv.FormatInt(r.tt.ComplaintCount, 10), "complaints"
		sig.Detail = fmt.Sprintf("%d complaints within 30 days (threshold %d).", n, r.tt.ComplaintCount)
		if negative {
			sig.Detail = fmt.Sprintf("%d complaints within 30 days (threshold %d), the latest with strongly negative sentiment.", n, r.tt.ComplaintCount)
		}
	default:
		sig.Observed, sig.Threshold, sig.Unit = formatDecimal(sentiment, 2), r.tt.ComplaintSentimentFloor.String(), "sentiment"
		sig.Detail = "A complaint with strongly negative sentiment."
		sig.EventIDs = []string{ev.ID}
	}
	return r.fire(ruleComplaints, t, ev.ID, sig)
}

// exponent of a currency's minor unit; unknown codes are treated as 2 (the
// ingester rejects them before they get here).
func exponent(currency string) int {
	exp, err := money.Exponent(currency)
	if err != nil {
		return 2
	}
	return exp
}

// minorOf converts a major-unit Decimal to minor units of a currency with
// exponent exp, rounding up so that "≥ threshold" never fires below it.
func minorOf(d Decimal, exp int) int64 {
	v := int64(d)
	for range exp {
		v *= 10
	}
	return ceilDiv(v, decimalOne)
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) == (b < 0) {
		q++
	}
	return q
}

// mulGE reports a*b ≥ c*d for non-negative operands without overflow.
func mulGE(a, b, c, d int64) bool {
	h1, l1 := bits.Mul64(uint64(a), uint64(b))
	h2, l2 := bits.Mul64(uint64(c), uint64(d))
	return h1 > h2 || h1 == h2 && l1 >= l2
}

// mulDiv returns floor(a*b/c) (ceil when up) for non-negative a, b and
// positive c, saturating at MaxInt64.
func mulDiv(a, b, c int64, up bool) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return 1<<63 - 1
	}
	q, rem := bits.Div64(hi, lo, uint64(c))
	if up && rem != 0 {
		q++
	}
	if q > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(q)
}

// largeOutflow: one external outflow ≥ the tier amount, or ≥ share of the
// balance before it with amount ≥ min_amount. acc may be nil.
func (r *run) largeOutflow(ev Event, t int64, acc *account, out []Signal) []Signal {
	cur := ev.Currency
	if cur == "" {
		cur = r.s.currency
	}
	exp := exponent(cur)
	largeAmount, minAmount, own := r.th.amounts(r.tier, cur)
	tier := minorOf(largeAmount, exp)
	sig := Signal{Unit: cur, EventIDs: ids(ev.ID)}
	switch {
	case ev.Amount >= tier:
		sig.Observed, sig.Threshold = money.FormatScaled(ev.Amount, exp), money.FormatScaled(tier, exp)
		sig.Detail = fmt.Sprintf("A transfer out to another bank reached the large-outflow amount of the %s tier.", r.tier)
		switch def := r.th.defaultCurrency(); {
		case cur == def:
		case own:
			sig.Detail = fmt.Sprintf("A transfer out to another bank reached the %s large-outflow amount of the %s tier.", cur, r.tier)
		default:
			sig.Detail = fmt.Sprintf("A transfer out to another bank reached the large-outflow amount of the %s tier (no %s amount is set: the %s amount's number applies).", r.tier, cur, def)
		}
	default:
		var before int64
		var known bool
		switch {
		case ev.HasBalance:
			before, known = ev.BalanceAfter+ev.Amount, true
		case acc != nil:
			before, known = acc.balanceBefore(t)
		}
		if !known || before <= 0 || ev.Amount < minorOf(minAmount, exp) ||
			!mulGE(ev.Amount, decimalOne, int64(r.tt.LargeShare), before) {
			return out
		}
		ratio := mulDiv(ev.Amount, decimalOne, before, false)
		sig.Observed, sig.Threshold, sig.Unit = formatDecimal(ratio, 2), r.tt.LargeShare.String(), "ratio"
		sig.Detail = fmt.Sprintf("A transfer out to another bank took %s%% of the account balance before it (threshold %s%%).",
			formatDecimal(ratio*100, 0), formatDecimal(int64(r.tt.LargeShare)*100, 0))
	}
	return append(out, r.fire(ruleLarge, t, ev.ID, sig))
}

// drainCheck is outflow.drain evaluated for day d: external outflows of days
// [d-6, d] against the average end-of-day total balance of the 90 days
// before them, counting only days with a known balance.
type drainCheck struct {
	hit            bool
	outflow, total int64 // outflow sum; sum of end-of-day totals
	days           int64 // baseline days averaged
}

func (s *State) drainCheck(tt *TierThresholds, d int32) drainCheck {
	var c drainCheck
	from, to := d-drainWindowDays+1, d
	i := sort.Search(len(s.buckets), func(i int) bool { return s.buckets[i].day >= from })
	for ; i < len(s.buckets) && s.buckets[i].day <= to; i++ {
		c.outflow += s.buckets[i].extOut
	}
	if !s.hasBalHistory || c.outflow <= 0 {
		return c
	}
	end := from - 1
	start := max(end-drainBaselineDays+1, s.balSince)
	c.days = int64(end - start + 1)
	if c.days < tt.DrainMinHistoryDays {
		return c
	}
	bal, _ := s.balanceAt(start)
	k := 0
	for k < len(s.buckets) && s.buckets[k].day <= start {
		k++
	}
	for day := start; day <= end; day++ {
		for k < len(s.buckets) && s.buckets[k].day == day {
			if s.buckets[k].hasBal {
				bal = s.buckets[k].bal
			}
			k++
		}
		c.total += bal
	}
	if c.total <= 0 {
		return c
	}
	c.hit = mulGE(c.outflow, c.days*decimalOne, int64(tt.DrainShare), c.total)
	return c
}

func (r *run) drainSignal(ev Event, t int64, c drainCheck) Signal {
	exp := exponent(r.s.currency)
	threshold := mulDiv(int64(r.tt.DrainShare), c.total, c.days*decimalOne, true)
	share := mulDiv(c.outflow, c.days*decimalOne*100, c.total, false)
	return r.fire(ruleDrain, t, ev.ID, Signal{
		Observed: money.FormatScaled(c.outflow, exp), Threshold: money.FormatScaled(threshold, exp),
		Unit: r.s.currency, EventIDs: ids(ev.ID),
		Detail: fmt.Sprintf("Transfers out to other banks over the last 7 days reached %s%% of the average end-of-day balance of the %d days before them (threshold %s%%).",
			formatDecimal(share, 0), c.days, formatDecimal(int64(r.tt.DrainShare)*100, 0)),
	})
}

// dropEval is an activity.drop transition at a day boundary: fire, or
// recovery (the episode ends and the rule re-arms).
type dropEval struct {
	day          int32
	fire         bool
	recent, base int64 // transactions in the last 30 days; in the baseline
	baseDays     int64 // baseline days within the customer's history (≤ 180)
}

const dropScanMax = 2*(dropWindowDays+dropBaselineDays) + 16

func (s *State) lastTxnDay() (int32, bool) {
	for i := len(s.buckets) - 1; i >= 0; i-- {
		if s.buckets[i].txns > 0 {
			return s.buckets[i].day, true
		}
	}
	return 0, false
}

// dropScan walks the day boundaries after from up to limit with the episode
// state fired and returns the first transition (with onlyFire, the first
// firing, passing through recoveries). At the boundary opening day
// d the last 30 days are [d-30, d-1] and the baseline the 180 days before,
// clipped to the customer's history; avg30 = base × 30 / baseDays. It fires
// when history ≥ min_history_days, avg30 ≥ min_baseline and recent ≤ ratio ×
// avg30; it recovers when recent > ratio × avg30.
//
// It runs after every event, so it never walks the whole history: the
// windows at from+1 come from the last 30 days, the few buckets before the
// baseline and txnTotal; then it jumps from one day where a bucket with
// transactions enters or leaves a window to the next. Between two such days
// the sums are fixed and only baseDays (growing to 180) and the history test
// move, each making the tests flip at most once, so a stretch of days costs
// one test or a binary search. Where bounds show that no transition can
// come before some later day (skipTo), it goes straight there.
func (s *State) dropScan(tt *TierThresholds, from, limit int32, fired, onlyFire bool) (dropEval, bool) {
	last, ok := s.lastTxnDay()
	if !ok {
		return dropEval{}, false
	}
	// Past last+210 both windows are empty: nothing can change.
	if h := last + dropWindowDays + dropBaselineDays + 1; limit > h {
		limit = h
	}
	if limit <= from {
		return dropEval{}, false
	}
	lo := from + 1 - dropWindowDays - dropBaselineDays
	if limit-lo > dropScanMax {
		limit = lo + dropScanMax
	}
	// Every day read below is in [lo, limit). At d = from+1 the baseline is
	// bs[out:mid] and the last 30 days bs[mid:in].
	bs := s.buckets
	d := from + 1
	out := searchDay(bs, lo)
	in, post := len(bs), int64(0)
	for in > out && bs[in-1].day >= d {
		in--
		post += int64(bs[in].txns)
	}
	mid, recent := in, int64(0)
	for mid > out && bs[mid-1].day >= d-dropWindowDays {
		mid--
		recent += int64(bs[mid].txns)
	}
	var base int64
	if out < mid-out {
		base = s.txnTotal - recent - post
		for _, b := range bs[:out] {
			base -= int64(b.txns)
		}
	} else {
		for _, b := range bs[out:mid] {
			base += int64(b.txns)
		}
	}

	sc := dropScanner{
		first:   int64(dayOf(s.firstSeen)),
		quiet:   int64(last) + crossMid,
		ratio:   int64(tt.DropRatio),
		minBase: int64(tt.DropMinBaseline),
		p:       tt.DropP,
	}
	sc.histFrom = sc.first + max(min(tt.DropMinHistoryDays, 1<<40), -1<<40)
	// base ≥ min_baseline only gets harder as baseDays grows unless
	// min_baseline is negative or so large that minBase × 180 overflows.
	sc.monotone = sc.minBase >= 0 && sc.minBase <= math.MaxInt64/dropBaselineDays
	// skipTo's bounds need a ratio whose products cannot overflow.
	sc.skip = sc.ratio >= 0 && sc.ratio <= 1<<16
	w := dropWindows{bs: bs, in: in, mid: mid, out: out, recent: recent, base: base}
	w.skipEmpty()
	day, end := int64(d), int64(limit)
	for {
		next := min(w.next(), end+1)
		if ev, ok := sc.stretch(day, next-1, w.recent, w.base, &fired, onlyFire); ok {
			return ev, true
		}
		if next > end {
			return dropEval{}, false
		}
		if sc.skip {
			next = max(next, sc.skipTo(&w, day, end, fired))
			if next > end {
				return dropEval{}, false
			}
		}
		w.advance(next)
		day = next
	}
}

// dropWindows are the sums of dropScan's windows and three cursors: the
// next bucket to enter the last 30 days (at its day+1), to move on into the
// baseline (day+31) and to leave it (day+211). Cursors pass buckets without
// transactions, which change no sum.
type dropWindows struct {
	bs           []bucket
	in, mid, out int
	recent, base int64
}

const (
	crossIn  = 1
	crossMid = dropWindowDays + 1
	crossOut = dropWindowDays + dropBaselineDays + 1
)

// crossing is the day bucket i crosses a window edge off days after it.
func (w *dropWindows) crossing(i int, off int64) int64 {
	if i < len(w.bs) {
		return int64(w.bs[i].day) + off
	}
	return math.MaxInt64
}

// next is the first day a cursor crosses.
func (w *dropWindows) next() int64 {
	return min(w.crossing(w.in, crossIn), w.crossing(w.mid, crossMid), w.crossing(w.out, crossOut))
}

// advance applies every crossing up to day.
func (w *dropWindows) advance(day int64) {
	bs, in, mid, out, recent, base := w.bs, w.in, w.mid, w.out, w.recent, w.base
	for ; in < len(bs) && int64(bs[in].day)+crossIn <= day; in++ {
		recent += int64(bs[in].txns)
	}
	for ; mid < len(bs) && int64(bs[mid].day)+crossMid <= day; mid++ {
		recent -= int64(bs[mid].txns)
		base += int64(bs[mid].txns)
	}
	for ; out < len(bs) && int64(bs[out].day)+crossOut <= day; out++ {
		base -= int64(bs[out].txns)
	}
	w.in, w.mid, w.out, w.recent, w.base = in, mid, out, recent, base
	w.skipEmpty()
}

func (w *dropWindows) skipEmpty() {
	bs := w.bs
	for w.in < len(bs) && bs[w.in].txns == 0 {
		w.in++
	}
	for w.mid < len(bs) && bs[w.mid].txns == 0 {
		w.mid++
	}
	for w.out < len(bs) && bs[w.out].txns == 0 {
		w.out++
	}
}

// dropScanner holds what dropScan's tests need besides the window sums.
type dropScanner struct {
	first          int64 // day of the first event
	quiet          int64 // first day with no transaction in the last 30 days
	histFrom       int64 // first day with min_history_days of history
	ratio, minBase int64
	p              Decimal // activity.drop.p
	monotone       bool    // see dropScan
	skip           bool    // skipTo may be used
}

// skipTo returns a day before which no transition can happen after day
// (MaxInt64 if none can), w holding the sums of day; none can before
// baseDays ≥ 1, nor a firing before the history is long enough. From day
// to a day y, recent gains the txns entering (I ≥ 0) and loses those moving
// on (M ≥ 0), base gains M and loses those leaving (O ≥ 0), and baseDays
// only grows, nb ≤ nb_y ≤ nbHi. With ratio ≥ 0:
//   - firing needs low at y: (recent-M)·nb·10⁴ ≤ (recent+I-M)·nb_y·10⁴ ≤
//     ratio·30·(base+M-O) ≤ ratio·30·(base+M), so M reaches need (the first
//     step holds while M < need ≤ recent), and with 0 ≤ minBase (monotone)
//     avg30 ≥ min_baseline: (base+M)·30·10⁴ ≥ base_y·30·10⁴ ≥ minBase·nb_y
//     ≥ minBase·nb;
//   - recovering needs not low at y: ratio·30·(base-O) ≤ ratio·30·base_y <
//     recent_y·nb_y·10⁴ ≤ (recent+I)·nbHi·10⁴, so I·nbHi·10⁴ + O·ratio·30 >
//     slack.
//
// M, I and O only grow with y, so nothing happens before the first crossing
// that reaches the bound.
func (sc *dropScanner) skipTo(w *dropWindows, day, end int64, fired bool) int64 {
	bs := w.bs
	if !fired {
		// nor before the history and the baseline are long enough
		from := max(day, sc.first+dropWindowDays+1, sc.histFrom)
		nb := sc.baseDays(from)
		var need int64
		if gap := w.recent*nb*decimalOne - sc.ratio*30*w.base; gap > 0 {
			den := nb*decimalOne + sc.ratio*30
			need = (gap + den - 1) / den
		}
		if gap := sc.minBase*nb - w.base*30*decimalOne; sc.monotone && gap > 0 {
			need = max(need, (gap+30*decimalOne-1)/(30*decimalOne))
		}
		if need == 0 {
			return from
		}
		var m int64
		for j := w.mid; j < len(bs); j++ {
			if m += int64(bs[j].txns); m >= need {
				return max(from, int64(bs[j].day)+crossMid)
			}
		}
		return math.MaxInt64
	}
	from := max(day, sc.first+dropWindowDays+1)
	nb := max(1, sc.baseDays(end))
	slack := sc.ratio*30*w.base - w.recent*nb*decimalOne
	if slack < 0 {
		return from
	}
	// From quiet on recent is 0, and 0 ≤ ratio·30·base is low.
	last := min(end, sc.quiet-1)
	var sum int64
	wIn, wOut := nb*decimalOne, sc.ratio*30
	for i, o := w.in, w.out; ; {
		ci, co := w.crossing(i, crossIn), w.crossing(o, crossOut)
		c := min(ci, co)
		if c > last {
			return math.MaxInt64
		}
		if ci == c {
			sum += int64(bs[i].txns) * wIn
			i++
		}
		if co == c {
			sum += int64(bs[o].txns) * wOut
			o++
		}
		if sum > slack {
			return max(from, c)
		}
	}
}

// baseDays is the baseline length at the boundary opening day.
func (sc *dropScanner) baseDays(day int64) int64 {
	return min(dropBaselineDays, day-dropWindowDays-sc.first)
}

// low: recent ≤ ratio × avg30. recent ≥ 0 and recent × 180 × 10⁴ cannot
// overflow (at most 30 int32 days), so once false it stays false as
// baseDays grows.
func (sc *dropScanner) low(recent, base, nb int64) bool {
	return recent*nb*decimalOne <= sc.ratio*base*30
}

// stretch evaluates the boundaries [from, to], over which recent and base do
// not change, and returns the first transition, updating *fired for the
// recoveries that onlyFire passes through.
func (sc *dropScanner) stretch(from, to, recent, base int64, fired *bool, onlyFire bool) (dropEval, bool) {
	a := max(from, sc.first+dropWindowDays+1) // baseDays ≥ 1
	for a <= to {
		if !*fired {
			x := max(a, sc.histFrom)
			if x > to {
				break
			}
			nb := sc.baseDays(x)
			if sc.low(recent, base, nb) && base*30*decimalOne >= sc.minBase*nb && dropUnlikely(recent, base, nb, sc.p) {
				return dropEval{day: int32(x), fire: true, recent: recent, base: base, baseDays: nb}, true
			}
			if sc.monotone {
				// every test only gets harder later in the stretch: as
				// baseDays grows, avg30 and so the Poisson rate fall
				break
			}
			a = x + 1
			continue
		}
		if sc.low(recent, base, sc.baseDays(to)) {
			break // low at the end, so low all along
		}
		// the first day of the stretch that is not low
		lo, hi := a, to
		for lo < hi {
			m := lo + (hi-lo)/2
			if sc.low(recent, base, sc.baseDays(m)) {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if !onlyFire {
			return dropEval{day: int32(lo), recent: recent, base: base, baseDays: sc.baseDays(lo)}, true
		}
		*fired = false
		a = lo + 1
	}
	return dropEval{}, false
}

// formatProbability renders a small probability readably: 0.0031, 2.1e-07.
func formatProbability(p float64) string {
	if p >= 0.001 {
		return strconv.FormatFloat(p, 'f', 4, 64)
	}
	return strconv.FormatFloat(p, 'e', 1, 64)
}

// searchDay returns the index of the first bucket not before day.
func searchDay(bs []bucket, day int32) int {
	i, j := 0, len(bs)
	for i < j {
		h := int(uint(i+j) >> 1)
		if bs[h].day < day {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

func (r *run) dropSignal(ev dropEval, day int32) Signal {
	at := dayStart(day)
	ratio := int64(0)
	if ev.base > 0 {
		ratio = mulDiv(ev.recent*ev.baseDays, decimalOne, ev.base*30, false)
	}
	avg := mulDiv(ev.base*30, decimalOne, ev.baseDays, false)
	trigger := ""
	if r.s.hasActivity {
		trigger = r.s.lastActivityID
	}
	// The default detail is unchanged since before confirm_days; with a
	// wait it names the day the fall was first seen and the days since.
	window := "the last 30 days"
	if day > ev.day {
		window = "the 30 days to " + toTime(dayStart(ev.day)-1).Format("2 Jan 2006")
	}
	detail := fmt.Sprintf("%d customer-initiated transactions in %s against an average of %s per 30 days over the previous %d days (as few has probability %s at the customer's own rate)",
		ev.recent, window, formatDecimal(avg/1000*1000, 0), ev.baseDays, formatProbability(poissonLowerTail(ev.recent, float64(ev.base)*30/float64(ev.baseDays))))
	if wait := day - ev.day; wait > 0 {
		detail += fmt.Sprintf(", and activity has stayed at most %s%% of that average on each of the %d days since (confirm_days %d): not a short break",
			formatDecimal(int64(r.tt.DropRatio)*100, 0), wait, wait)
	}
	sig := Signal{
		Observed: formatDecimal(ratio, 2), Threshold: r.tt.DropRatio.String(), Unit: "ratio",
		EventIDs: ids(trigger), Detail: detail + ".",
	}
	return r.fire(ruleDrop, at, "", sig)
}
