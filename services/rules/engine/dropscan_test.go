package engine

import (
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"
)

// dropScanReference is dropScan before it jumped between bucket days and
// used txnTotal: one pass for the windows at from+1, then every day.
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
		case !fired && low && int64(d-first) >= tt.DropMinHistoryDays && base*30*decimalOne >= minBase*nb:
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

// pruneReference is the bucket part of prune before it copied in bulk; it
// leaves txnTotal alone.
func (s *State) pruneReference() {
	today := dayOf(s.clock)
	if s.pruned && s.prunedDay == today {
		return
	}
	s.pruned, s.prunedDay = true, today
	balCut := today - keepBalanceDays
	if len(s.buckets) > 0 && s.buckets[0].day < balCut {
		if _, ok := s.balanceAt(balCut); ok {
			s.ensureBalance(balCut)
		}
	}
	cntCut, outCut := today-keepCountDays, today-keepOutflowDays
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
}

func txnTotalOf(s *State) int64 {
	var n int64
	for _, b := range s.buckets {
		n += int64(b.txns)
	}
	return n
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
// cutoffs, txnTotal is the sum of the buckets and dropScan agrees with the
// reference.
func TestTxnTotalAndDropScanMatchReference(t *testing.T) {
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
				if got, want := s.txnTotal, txnTotalOf(s); got != want {
					t.Fatalf("step %d: txnTotal %d, buckets hold %d", i, got, want)
				}
				if i%every == 0 {
					dropScanCalls(t, c.name, s, tt, &strict, &odd)
				}
			})
		})
	}
	t.Run("late", func(t *testing.T) {
		e := New(Config{Lateness: 60 * 24 * time.Hour})
		evs := synthCustomer(8, 500, 3)
		rng := rand.New(rand.NewPCG(8, 8))
		for i := range evs {
			if rng.IntN(6) == 0 {
				evs[i].Time = evs[i].Time.Add(-time.Duration(rng.IntN(55*24)) * time.Hour)
			}
		}
		s := &State{}
		for i, ev := range evs {
			e.Apply(s, ev, synthProfile, nil)
			if got, want := s.txnTotal, txnTotalOf(s); got != want {
				t.Fatalf("event %d: txnTotal %d, buckets hold %d", i, got, want)
			}
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
	span := 1 + rng.IntN(450)
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
	return tt
}

func TestDropScanMatchesReferenceOnRandomStates(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	for iter := 0; iter < 20000; iter++ {
		first := int32(19000 + rng.IntN(100))
		s := &State{firstSeen: dayStart(first) + rng.Int64N(nsPerDay)}
		s.buckets = randomBuckets(rng, first-int32(rng.IntN(3)))
		s.txnTotal = txnTotalOf(s)
		lastDay := first
		if len(s.buckets) > 0 {
			lastDay = s.buckets[len(s.buckets)-1].day
		}
		tt := randomDropThresholds(rng)
		from := lastDay + int32(rng.IntN(240)) - 20
		if rng.IntN(4) == 0 {
			from = first + int32(rng.IntN(max(0, int(lastDay-first))+1))
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
		got, want := clone(t, s), clone(t, s)
		got.prune()
		want.prune()            // the rest of prune
		*want = *clone(t, want) // …with txnTotal recomputed
		ref := clone(t, s)
		ref.pruneReference()
		if !reflect.DeepEqual(got.buckets, ref.buckets) || got.txnTotal != txnTotalOf(ref) || !reflect.DeepEqual(*got, *want) {
			t.Fatalf("%s: prune differs from the reference:\n%+v\n%+v", where, got.buckets, ref.buckets)
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
			if rng.IntN(25) == 0 {
				bs[i] = bucket{day: bs[i].day}
			}
		}
		clock := dayStart(first+int32(rng.IntN(800))) + rng.Int64N(nsPerDay)
		mk := func() *State {
			s := &State{init: true, clock: clock, buckets: append([]bucket(nil), bs...)}
			s.txnTotal = txnTotalOf(s)
			return s
		}
		got, ref := mk(), mk()
		got.prune()
		ref.pruneReference()
		ref.txnTotal = txnTotalOf(ref)
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("iteration %d: prune differs from the reference:\n%+v\n%+v", iter, got.buckets, ref.buckets)
		}
	}
}
