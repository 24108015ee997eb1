package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"
)

// dropScanReference is dropScan before it jumped between bucket days and
// used txnTotal: one pass for the windows at from+1, then every day; with
// the Poisson test of activity.drop.p (whose own oracle is in poisson_test).
func (s *State) dropScanReference(tt *TierThresholds, from, limit int32, fired, onlyFire bool) (dropEval, bool) {
	last, ok := s.lastTxnDay()
	if !ok {
		return dropEval{}, false
	}
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
	bs := s.buckets
	out := sort.Search(len(bs), func(i int) bool { return bs[i].day >= lo })
	first := dayOf(s.firstSeen)
	var recent, base int64
	d := from + 1
	mid := out
	for ; mid < len(bs) && bs[mid].day < d-dropWindowDays; mid++ {
		base += int64(bs[mid].txns)
	}
	in := mid
	for ; in < len(bs) && bs[in].day < d; in++ {
		recent += int64(bs[in].txns)
	}
	ratio, minBase := int64(tt.DropRatio), int64(tt.DropMinBaseline)
	for ; d <= limit; d++ {
		if d > from+1 {
			cin := txnsOnReference(bs, &in, d-1)
			cmid := txnsOnReference(bs, &mid, d-1-dropWindowDays)
			cout := txnsOnReference(bs, &out, d-1-dropWindowDays-dropBaselineDays)
			recent += int64(cin - cmid)
			base += int64(cmid - cout)
		}
		nb := min(dropBaselineDays, int64(d-dropWindowDays-first))
		if nb < 1 {
			continue
		}
		low := recent*nb*decimalOne <= ratio*base*30
		switch {
		case !fired && low && int64(d-first) >= tt.DropMinHistoryDays && base*30*decimalOne >= minBase*nb &&
			poissonLowerTail(recent, float64(base)*30/float64(nb)) <= float64(tt.DropP)/decimalOne:
			return dropEval{day: d, fire: true, recent: recent, base: base, baseDays: nb}, true
		case fired && !low:
			if onlyFire {
				fired = false
				continue
			}
			return dropEval{day: d, recent: recent, base: base, baseDays: nb}, true
		}
	}
	return dropEval{}, false
}

func txnsOnReference(bs []bucket, k *int, day int32) int32 {
	i := *k
	for i < len(bs) && bs[i].day < day {
		i++
	}
	*k = i
	if i < len(bs) && bs[i].day == day {
		return bs[i].txns
	}
	return 0
}

// pruneReference is prune before it used the derived fields and moved
// buckets a run at a time; it leaves the derived fields stale.
func (s *State) pruneReference() {
	today := dayOf(s.clock)
	if s.pruned && s.prunedDay == today {
		return
	}
	s.pruned, s.prunedDay = true, today

	// Balances: carry the last total older than the cutoff onto the cutoff day.
	balCut := today - keepBalanceDays
	if len(s.buckets) > 0 && s.buckets[0].day < balCut {
		if _, ok := s.balanceAt(balCut); ok {
			s.ensureBalance(balCut)
		}
	}
	cntCut, outCut := today-keepCountDays, today-keepOutflowDays
	// Compacted in place; a bucket is copied only once one before it went.
	n := 0
	for i := range s.buckets {
		b := &s.buckets[i]
		if b.day < cntCut {
			b.txns = 0
		}
		if b.day < outCut {
			b.extOut = 0
		}
		if b.day < balCut {
			b.hasBal, b.bal = false, 0
		}
		if b.txns != 0 || b.extOut != 0 || b.hasBal {
			if n != i {
				s.buckets[n] = *b
			}
			n++
		}
	}
	clear(s.buckets[n:])
	s.buckets = s.buckets[:n]
	if len(s.buckets) == 0 {
		s.buckets = nil
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
	ks := s.seen[:0]
	for _, e := range s.seen {
		if e.day >= seenCut {
			ks = append(ks, e)
		}
	}
	s.seen = ks
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

	kl := s.live[:0]
	for _, l := range s.live {
		if l.holding || max(l.at+signalTTL, l.heldTo) > dayStart(today) {
			kl = append(kl, l)
		}
	}
	clear(s.live[len(kl):])
	s.live = kl
	if len(s.live) == 0 {
		s.live = nil
	}
}

// checkDerived fails unless the fields derived from the buckets equal a
// recomputation.
func checkDerived(t *testing.T, where string, s *State) {
	t.Helper()
	d := *s
	d.derive()
	if d.txnTotal != s.txnTotal || d.outFrom != s.outFrom || d.balFrom != s.balFrom || d.empties != s.empties {
		t.Fatalf("%s: derived txnTotal %d, outFrom %d, balFrom %d, empties %d; recomputed %d, %d, %d, %d", where,
			s.txnTotal, s.outFrom, s.balFrom, s.empties, d.txnTotal, d.outFrom, d.balFrom, d.empties)
	}
}

// dropScanCalls compares dropScan with the reference for the calls Apply
// and Advance make and a few more around them.
func dropScanCalls(t *testing.T, where string, s *State, tts ...*TierThresholds) {
	t.Helper()
	for _, tt := range tts {
		for _, fired := range []bool{false, true} {
			for _, onlyFire := range []bool{false, true} {
				for _, lim := range []int32{s.dropDay, s.dropDay + 1, s.dropDay + 5, s.dropDay + 40, math.MaxInt32} {
					for _, from := range []int32{s.dropDay, s.dropDay - 3} {
						got, gotOK := s.dropScan(tt, from, lim, fired, onlyFire)
						want, wantOK := s.dropScanReference(tt, from, lim, fired, onlyFire)
						if got != want || gotOK != wantOK {
							t.Fatalf("%s: dropScan(from %d, limit %d, fired %v, onlyFire %v) = %+v %v, reference %+v %v",
								where, from, lim, fired, onlyFire, got, gotOK, want, wantOK)
						}
					}
				}
			}
		}
	}
}

// Along every corpus, and with a long lateness that writes below the prune
// cutoffs, the derived fields match the buckets and dropScan agrees with
// the reference.
func TestDerivedAndDropScanMatchReference(t *testing.T) {
	strict := DefaultThresholds().Tiers[TierMass]
	strict.DropRatio, strict.DropMinBaseline, strict.DropMinHistoryDays = 9000, 1*decimalOne, 40
	odd := strict
	odd.DropMinBaseline, odd.DropMinHistoryDays = -5, -3
	for _, c := range corpora(t) {
		t.Run(c.name, func(t *testing.T) {
			e := New(c.cfg)
			tt, _ := c.th.forTier(c.profile)
			every := max(1, len(c.steps)/300)
			c.run(e, &State{}, func(i int, _ step, s *State) {
				checkDerived(t, fmt.Sprintf("step %d", i), s)
				if i%every == 0 {
					dropScanCalls(t, c.name, s, tt, &strict, &odd)
				}
			})
		})
	}
	t.Run("late", func(t *testing.T) {
		e := New(Config{Lateness: 250 * 24 * time.Hour})
		evs := synthCustomer(8, 500, 3)
		rng := rand.New(rand.NewPCG(8, 8))
		for i := range evs {
			if rng.IntN(6) == 0 {
				evs[i].Time = evs[i].Time.Add(-time.Duration(rng.IntN(240*24)) * time.Hour)
			}
		}
		s := &State{}
		for i, ev := range evs {
			e.Apply(s, ev, synthProfile, nil)
			checkDerived(t, fmt.Sprintf("event %d", i), s)
			if back := clone(t, s); !reflect.DeepEqual(*s, *back) {
				t.Fatalf("event %d: round trip differs", i)
			}
		}
	})
}

// randomBuckets is a history of days with transactions, balances and
// outflows: dense, sparse or in bursts, with some balance-only days.
func randomBuckets(rng *rand.Rand, first int32) []bucket {
	var bs []bucket
	density := []float64{0.02, 0.1, 0.5, 0.9, 1}[rng.IntN(5)]
	span := 1 + rng.IntN([]int{450, 60}[rng.IntN(2)])
	day := first + int32(rng.IntN(5))
	for k := 0; k < span; k++ {
		if rng.Float64() < density {
			b := bucket{day: day}
			switch r := rng.IntN(10); {
			case r == 0: // balance only
			case r < 8:
				b.txns = int32(1 + rng.IntN(6))
			default:
				b.txns = int32(1 + rng.IntN(200))
			}
			if rng.IntN(3) == 0 || b.txns == 0 {
				b.hasBal, b.bal = true, int64(rng.IntN(100000))
			}
			if rng.IntN(4) == 0 {
				b.extOut = int64(rng.IntN(5000))
			}
			bs = append(bs, b)
		}
		day++
		if rng.IntN(40) == 0 {
			day += int32(rng.IntN(120)) // a quiet spell
		}
	}
	return bs
}

func randomDropThresholds(rng *rand.Rand) TierThresholds {
	tt := DefaultThresholds().Tiers[TierMass]
	tt.DropRatio = Decimal([]int64{1, 2500, 5000, 9000, 10000, int64(rng.IntN(20000))}[rng.IntN(6)])
	tt.DropMinBaseline = Decimal([]int64{0, decimalOne / 2, 4 * decimalOne, 50 * decimalOne, 1000 * decimalOne,
		-7, math.MaxInt64 / 100, int64(rng.IntN(20 * decimalOne))}[rng.IntN(8)])
	tt.DropMinHistoryDays = []int64{31, 90, 180, 365, 0, -40, 1 << 50, int64(rng.IntN(400))}[rng.IntN(8)]
	tt.DropP = Decimal([]int64{1, 100, 100, 1000, 5000, decimalOne, int64(rng.IntN(decimalOne))}[rng.IntN(7)])
	return tt
}

func TestDropScanMatchesReferenceOnRandomStates(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	for iter := 0; iter < 50000; iter++ {
		first := int32(19000 + rng.IntN(100))
		s := &State{firstSeen: dayStart(first) + rng.Int64N(nsPerDay)}
		s.buckets = randomBuckets(rng, first-int32(rng.IntN(3)))
		s.derive()
		lastDay := first
		if len(s.buckets) > 0 {
			lastDay = s.buckets[len(s.buckets)-1].day
		}
		tt := randomDropThresholds(rng)
		from := lastDay + int32(rng.IntN(240)) - 20
		switch rng.IntN(4) {
		case 0:
			from = first + int32(rng.IntN(max(0, int(lastDay-first))+1))
		case 1:
			from = lastDay + int32(rng.IntN(40)) - 5 // the last 30 days emptying
		}
		limit := from + int32(rng.IntN(300)) - 3
		if rng.IntN(3) == 0 {
			limit = math.MaxInt32
		}
		fired, onlyFire := rng.IntN(2) == 0, rng.IntN(2) == 0
		got, gotOK := s.dropScan(&tt, from, limit, fired, onlyFire)
		want, wantOK := s.dropScanReference(&tt, from, limit, fired, onlyFire)
		if got != want || gotOK != wantOK {
			t.Fatalf("iteration %d (first %d, from %d, limit %d, fired %v, onlyFire %v, thresholds %+v, buckets %+v):\ngot %+v %v\nwant %+v %v",
				iter, first, from, limit, fired, onlyFire, tt, s.buckets, got, gotOK, want, wantOK)
		}
	}
}

func TestPruneMatchesReference(t *testing.T) {
	check := func(where string, s *State) {
		t.Helper()
		got, ref := clone(t, s), clone(t, s)
		got.prune()
		ref.pruneReference()
		ref.derive()
		if !reflect.DeepEqual(*got, *ref) {
			t.Fatalf("%s: prune differs from the reference:\n%+v\n%+v", where, got, ref)
		}
	}
	for _, c := range corpora(t) {
		e := New(c.cfg)
		every := max(1, len(c.steps)/200)
		c.run(e, &State{}, func(i int, _ step, s *State) {
			if i%every != 0 {
				return
			}
			for _, ahead := range []int64{1, 2, 17, 100, 300} {
				a := clone(t, s)
				a.clock += ahead * nsPerDay
				check(c.name, a)
			}
		})
	}
	// Random buckets, with days that went empty and clocks anywhere.
	rng := rand.New(rand.NewPCG(7, 7))
	for iter := 0; iter < 5000; iter++ {
		first := int32(19000 + rng.IntN(100))
		bs := randomBuckets(rng, first)
		for i := range bs {
			switch rng.IntN(25) {
			case 0:
				bs[i] = bucket{day: bs[i].day}
			case 1:
				bs[i] = bucket{day: bs[i].day, extOut: 1 + int64(rng.IntN(100))}
			}
		}
		clock := dayStart(first+int32(rng.IntN(800))) + rng.Int64N(nsPerDay)
		mk := func() *State {
			s := &State{init: true, clock: clock, buckets: append([]bucket(nil), bs...)}
			s.derive()
			return s
		}
		got, ref := mk(), mk()
		got.prune()
		ref.pruneReference()
		ref.derive()
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("iteration %d: prune differs from the reference:\n%+v\n%+v", iter, got.buckets, ref.buckets)
		}
	}
}

// Every write to the buckets, in any order and with amounts that cancel or
// leave a bucket empty, keeps the derived fields exact, and prune keeps
// matching the reference.
func TestDerivedFieldsFollowEveryWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for iter := 0; iter < 300; iter++ {
		s := &State{init: true, clock: dayStart(20000) + rng.Int64N(nsPerDay)}
		s.derive()
		for step := 0; step < 200; step++ {
			day := dayOf(s.clock) - int32(rng.IntN(250))
			switch rng.IntN(6) {
			case 0:
				s.addTxn(day)
			case 1:
				s.addOutflow(day, int64(rng.IntN(3)-1)*int64(1+rng.IntN(3)))
			case 2:
				s.ensureBalance(day)
			case 3:
				s.addBalance(day, day+1+int32(rng.IntN(10)), int64(rng.IntN(200)-100), rng.IntN(2) == 0)
			case 4:
				s.clock += int64(rng.IntN(3)) * nsPerDay
				ref := *s
				ref.buckets = append([]bucket(nil), s.buckets...)
				s.prune()
				ref.pruneReference()
				ref.derive()
				if !reflect.DeepEqual(*s, ref) {
					t.Fatalf("iteration %d step %d: prune differs from the reference:\n%+v\n%+v", iter, step, s.buckets, ref.buckets)
				}
			case 5:
				s.clock += nsPerDay
			}
			checkDerived(t, fmt.Sprintf("iteration %d step %d", iter, step), s)
		}
	}
}
