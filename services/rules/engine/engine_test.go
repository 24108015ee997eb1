package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// synthCustomer is a seeded, realistic-looking customer history: daily
// card payments and transfers on two accounts with balances, a monthly
// salary, interest and fees, rare complaints and closures, and dormant gaps
// long enough for every absence rule.
func synthCustomer(seed uint64, days, perDay int) []Event {
	rng := rand.New(rand.NewPCG(seed, 7))
	bal := map[string]int64{"A1": 500000, "A2": 2000000}
	var evs []Event
	n := 0
	add := func(day int, typ EventType, acct string, amount int64, bank string) {
		n++
		ev := Event{
			ID: fmt.Sprintf("ev-%d-%d", seed, n), CustomerID: "C-synth", AccountID: acct,
			Time: t0.Add(time.Duration(day)*24*time.Hour + time.Duration(rng.IntN(86400))*time.Second),
			Type: typ, Amount: amount, CounterpartyBank: bank,
		}
		if typ.Money() {
			ev.Currency = "EUR"
			switch typ {
			case EventDeposit, EventTransferIn, EventSalary, EventInterest:
				bal[acct] += amount
			default:
				bal[acct] -= amount
			}
			if rng.IntN(10) > 0 {
				ev.BalanceAfter, ev.HasBalance = bal[acct], true
			}
		}
		if typ == EventComplaint {
			ev.Sentiment, ev.HasSentiment = rng.Float64()*2-1, true
		}
		evs = append(evs, ev)
	}
	quiet := func(d int) bool { return d%365 >= 200 && d%365 < 200+30+int(seed%200) }
	for d := 0; d < days; d++ {
		if d%30 == 25 && d < days*2/3 {
			add(d, EventSalary, "A1", 300000, "")
		}
		if d%30 == 0 {
			add(d, EventInterest, "A2", int64(1+rng.IntN(500)), "")
			add(d, EventFee, "A1", 250, "")
		}
		if quiet(d) {
			if rng.IntN(20) == 0 {
				add(d, EventLogin, "", 0, "")
			}
			continue
		}
		k := rng.IntN(perDay*2 + 1)
		if d%90 > 60 {
			k /= 4 // quieter months, for activity.drop
		}
		for i := 0; i < k; i++ {
			acct := []string{"A1", "A2"}[rng.IntN(2)]
			switch r := rng.IntN(100); {
			case r < 50:
				add(d, EventCardPayment, acct, int64(100+rng.IntN(20000)), "")
			case r < 60:
				add(d, EventDeposit, acct, int64(1000+rng.IntN(100000)), "")
			case r < 70:
				add(d, EventTransferIn, acct, int64(1000+rng.IntN(100000)), "OTHERBANK")
			case r < 80:
				add(d, EventWithdrawal, acct, int64(1000+rng.IntN(20000)), "")
			case r < 92:
				add(d, EventTransferOut, acct, int64(1000+rng.IntN(50000)), "HOME")
			default:
				add(d, EventTransferOut, acct, int64(1000+rng.IntN(300000)), "OTHERBANK")
			}
		}
		switch rng.IntN(200) {
		case 0:
			add(d, EventComplaint, "", 0, "")
		case 1:
			add(d, EventProductCancelled, "", 0, "")
		case 2:
			add(d, EventTransferOut, "A2", bal["A2"]*3/4, "OTHERBANK")
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	return evs
}

var synthProfile = Profile{Tier: TierPotential, Known: true}

func replay(e *Engine, s *State, evs []Event, th *Thresholds) []Signal {
	var out []Signal
	for _, ev := range evs {
		out = append(out, e.Apply(s, ev, synthProfile, th)...)
	}
	return out
}

func marshal(t testing.TB, s *State) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clone(t testing.TB, s *State) *State {
	t.Helper()
	var c State
	if err := c.UnmarshalBinary(marshal(t, s)); err != nil {
		t.Fatal(err)
	}
	return &c
}

// corpora are the event streams the property tests run on: every YAML case
// and a few synthetic two-year customers.
type corpus struct {
	name    string
	cfg     Config
	profile Profile
	th      Thresholds
	steps   []step
}

func corpora(t testing.TB) []corpus {
	var out []corpus
	for _, c := range loadCases(t) {
		out = append(out, corpus{c.rc.Name, c.cfg, c.profile, c.th, c.steps})
	}
	for seed := uint64(1); seed <= 3; seed++ {
		var steps []step
		for _, ev := range synthCustomer(seed, 730, 3) {
			steps = append(steps, step{at: ev.Time, ev: ev})
		}
		out = append(out, corpus{fmt.Sprintf("synthetic-%d", seed), Config{}, synthProfile, DefaultThresholds(), steps})
		// the same with activity.drop waiting for what follows a fall
		th := DefaultThresholds()
		if err := th.Set("activity.drop.confirm_days", strconv.Itoa(int(4*seed+3))); err != nil {
			t.Fatal(err)
		}
		out = append(out, corpus{fmt.Sprintf("synthetic-%d-confirm-%dd", seed, 4*seed+3), Config{}, synthProfile, th, steps})
	}
	return out
}

func (c *corpus) run(e *Engine, s *State, each func(i int, st step, s *State)) []Signal {
	var out []Signal
	for i, st := range c.steps {
		if st.advance {
			out = append(out, e.Advance(s, st.at, c.profile, &c.th)...)
		} else {
			out = append(out, e.Apply(s, st.ev, c.profile, &c.th)...)
		}
		if each != nil {
			each(i, st, s)
		}
	}
	return out
}

func TestDuplicateEventsChangeNothing(t *testing.T) {
	for _, c := range corpora(t) {
		t.Run(c.name, func(t *testing.T) {
			e := New(c.cfg)
			once := c.run(e, &State{}, nil)
			twice := &State{}
			var got []Signal
			for _, st := range c.steps {
				if st.advance {
					got = append(got, e.Advance(twice, st.at, c.profile, &c.th)...)
					continue
				}
				first := e.Check(twice, st.ev)
				got = append(got, e.Apply(twice, st.ev, c.profile, &c.th)...)
				before := marshal(t, twice)
				if err := e.Check(twice, st.ev); first == nil && !errors.Is(err, ErrDuplicate) || first != nil && err != first {
					t.Fatalf("Check(%s) = %v after %v, want ErrDuplicate", st.ev.ID, err, first)
				}
				if sigs := e.Apply(twice, st.ev, c.profile, &c.th); sigs != nil {
					t.Fatalf("duplicate %s fired %v", st.ev.ID, sigs)
				}
				if sigs, err := e.ApplyChecked(twice, st.ev, c.profile, &c.th); sigs != nil || first == nil && !errors.Is(err, ErrDuplicate) || first != nil && err != first {
					t.Fatalf("ApplyChecked(%s) again = %v, %v after %v, want nothing and ErrDuplicate", st.ev.ID, sigs, err, first)
				}
				if !bytes.Equal(before, marshal(t, twice)) {
					t.Fatalf("duplicate %s changed the state", st.ev.ID)
				}
			}
			if !reflect.DeepEqual(once, got) {
				t.Fatalf("signals differ with duplicates:\nonce:\n%s\ntwice:\n%s", describe(once), describe(got))
			}
			// Replaying the whole stream again changes nothing either.
			end := marshal(t, twice)
			for _, st := range c.steps {
				if !st.advance && e.Apply(twice, st.ev, c.profile, &c.th) != nil {
					t.Fatalf("replayed %s fired", st.ev.ID)
				}
			}
			if !bytes.Equal(end, marshal(t, twice)) {
				t.Fatal("replaying the stream changed the state")
			}
		})
	}
}

func TestAdvanceInterleavingsAreEquivalent(t *testing.T) {
	for _, c := range corpora(t) {
		t.Run(c.name, func(t *testing.T) {
			e := New(c.cfg)
			plain := &State{}
			want := c.run(e, plain, nil)

			rng := rand.New(rand.NewPCG(uint64(len(c.steps)), 1))
			s := &State{}
			var got []Signal
			prev := time.Time{}
			for _, st := range c.steps {
				// clock ticks between the previous step and this one, never past it
				if !prev.IsZero() && st.at.After(prev) {
					for k := rng.IntN(4); k > 0; k-- {
						at := prev.Add(time.Duration(rng.Int64N(int64(st.at.Sub(prev)) + 1)))
						got = append(got, e.Advance(s, at, c.profile, &c.th)...)
						got = append(got, e.Advance(s, at, c.profile, &c.th)...) // repeated tick
						prev = at
					}
				}
				if st.advance {
					got = append(got, e.Advance(s, st.at, c.profile, &c.th)...)
				} else {
					got = append(got, e.Apply(s, st.ev, c.profile, &c.th)...)
				}
				if st.at.After(prev) {
					prev = st.at
				}
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("signals differ with interleaved Advance:\nplain:\n%s\ninterleaved:\n%s", describe(want), describe(got))
			}
			if !bytes.Equal(marshal(t, plain), marshal(t, s)) {
				t.Fatal("states differ with interleaved Advance")
			}
		})
	}
}

func TestAdvanceSplitEqualsOneAdvance(t *testing.T) {
	e := New(Config{})
	evs := synthCustomer(9, 200, 3)
	base := &State{}
	replay(e, base, evs, nil)
	end := evs[len(evs)-1].Time.Add(400 * 24 * time.Hour)

	one := clone(t, base)
	want := e.Advance(one, end, synthProfile, nil)
	if len(want) < 2 {
		t.Fatalf("want several absence signals over 400 quiet days, got:\n%s", describe(want))
	}
	for split := 1; split < 400; split += 37 {
		s := clone(t, base)
		mid := evs[len(evs)-1].Time.Add(time.Duration(split) * 24 * time.Hour)
		got := e.Advance(s, mid, synthProfile, nil)
		got = append(got, e.Advance(s, end, synthProfile, nil)...)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("split at +%dd:\nwant:\n%s\ngot:\n%s", split, describe(want), describe(got))
		}
		if !bytes.Equal(marshal(t, one), marshal(t, s)) {
			t.Fatalf("split at +%dd: states differ", split)
		}
	}
}

func TestNextDeadlineIsExact(t *testing.T) {
	for _, c := range corpora(t) {
		t.Run(c.name, func(t *testing.T) {
			e := New(c.cfg)
			checked := 0
			c.run(e, &State{}, func(i int, _ step, s *State) {
				next, ok := s.NextDeadline()
				if !ok {
					return
				}
				if !next.After(s.Clock()) {
					t.Fatalf("step %d: next deadline %s not after clock %s", i, next, s.Clock())
				}
				before := clone(t, s)
				if sigs := e.Advance(before, next.Add(-time.Nanosecond), c.profile, &c.th); len(sigs) != 0 {
					t.Fatalf("step %d: fired before the next deadline %s:\n%s", i, next, describe(sigs))
				}
				at := clone(t, s)
				sigs := e.Advance(at, next, c.profile, &c.th)
				if len(sigs) == 0 || !sigs[0].Time.Equal(next) {
					t.Fatalf("step %d: Advance to next deadline %s fired:\n%s", i, next, describe(sigs))
				}
				checked++
			})
			if checked == 0 && len(c.steps) > 3 {
				t.Logf("no deadline checked")
			}
		})
	}
}

func TestMarshalRoundTripIsLossless(t *testing.T) {
	for _, c := range corpora(t) {
		t.Run(c.name, func(t *testing.T) {
			e := New(c.cfg)
			c.run(e, &State{}, func(i int, _ step, s *State) {
				b := marshal(t, s)
				var back State
				if err := back.UnmarshalBinary(b); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if !reflect.DeepEqual(*s, back) {
					t.Fatalf("step %d: round trip differs:\n%#v\n%#v", i, *s, back)
				}
			})
		})
	}
	// A round trip in the middle of a stream does not change what follows.
	e := New(Config{})
	evs := synthCustomer(4, 500, 3)
	a, b := &State{}, &State{}
	want := replay(e, a, evs, nil)
	var got []Signal
	for i, ev := range evs {
		if i%50 == 0 {
			b = clone(t, b)
		}
		got = append(got, e.Apply(b, ev, synthProfile, nil)...)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatal("signals differ after round trips mid-stream")
	}
	if len(want) == 0 {
		t.Fatal("synthetic customer fired nothing")
	}
}

func TestStateSizeIsBounded(t *testing.T) {
	e := New(Config{})
	for _, tc := range []struct {
		name   string
		perDay int
		limit  int
	}{
		{"typical active customer", 2, 2048},
		{"busy customer", 40, 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := synthCustomer(5, 730, tc.perDay)
			s := &State{}
			biggest, lastYear := 0, 0
			for i, ev := range evs {
				e.Apply(s, ev, synthProfile, nil)
				if i%25 == 0 || i == len(evs)-1 {
					n := len(marshal(t, s))
					biggest = max(biggest, n)
					if ev.Time.After(t0.Add(365 * 24 * time.Hour)) {
						lastYear = max(lastYear, n)
					}
				}
			}
			t.Logf("%d events over 2 years: largest state %d bytes, final %d bytes", len(evs), biggest, len(marshal(t, s)))
			if biggest > tc.limit {
				t.Fatalf("state grew to %d bytes, limit %d", biggest, tc.limit)
			}
			if lastYear > biggest {
				t.Fatalf("state keeps growing: %d in year two", lastYear)
			}
		})
	}
}

// Out-of-order arrival within the lateness window fills the same daily
// buckets and balances as in-order arrival.
func TestLateEventsUpdateTheRightDays(t *testing.T) {
	e := New(Config{})
	evs := synthCustomer(6, 400, 4)
	shuffled := append([]Event(nil), evs...)
	rng := rand.New(rand.NewPCG(6, 6))
	// shuffle inside 3-day blocks: always within the 7-day lateness
	for i := 0; i < len(shuffled); {
		j := i
		for j < len(shuffled) && shuffled[j].Time.Sub(shuffled[i].Time) < 3*24*time.Hour {
			j++
		}
		block := shuffled[i:j]
		rng.Shuffle(len(block), func(a, b int) { block[a], block[b] = block[b], block[a] })
		i = j
	}
	inOrder, late := &State{}, &State{}
	replay(e, inOrder, evs, nil)
	for _, ev := range shuffled {
		if err := e.Check(late, ev); err != nil {
			t.Fatalf("%s refused: %v", ev.ID, err)
		}
		e.Apply(late, ev, synthProfile, nil)
	}
	today := dayOf(inOrder.clock)
	if dayOf(late.clock) != today {
		t.Fatal("clocks differ")
	}
	for d := today - keepCountDays + 10; d <= today; d++ {
		a, b := dayValues(inOrder, d), dayValues(late, d)
		if d < today-keepBalanceDays+10 {
			a.bal, b.bal = 0, 0
		}
		if d < today-keepOutflowDays+10 {
			a.extOut, b.extOut = 0, 0
		}
		if a != b {
			t.Fatalf("day %d: in order %+v, out of order %+v", d, a, b)
		}
	}
	if !reflect.DeepEqual(inOrder.accounts, late.accounts) {
		t.Fatalf("accounts differ:\n%+v\n%+v", inOrder.accounts, late.accounts)
	}
	if !reflect.DeepEqual(inOrder.salaryDays, late.salaryDays) || inOrder.lastActivity != late.lastActivity {
		t.Fatal("salary days or last activity differ")
	}
}

type dayValue struct {
	txns        int32
	extOut, bal int64
	hasBal      bool
}

func dayValues(s *State, d int32) dayValue {
	var v dayValue
	if i := s.bucketIndex(d, false); i >= 0 {
		v.txns, v.extOut = s.buckets[i].txns, s.buckets[i].extOut
	}
	v.bal, v.hasBal = s.balanceAt(d)
	return v
}

func TestLateBalanceMovesTheRightDays(t *testing.T) {
	e := New(Config{})
	s := &State{}
	at := func(day, hour int) time.Time { return t0.Add(time.Duration(day*24+hour) * time.Hour) }
	ev := func(id string, day, hour int, acct string, bal int64) Event {
		return Event{ID: id, CustomerID: "C", AccountID: acct, Time: at(day, hour), Type: EventDeposit,
			Amount: 1, Currency: "EUR", BalanceAfter: bal, HasBalance: true}
	}
	p := Profile{Tier: TierMass, Known: true}
	e.Apply(s, ev("a", 0, 10, "A1", 100), p, nil)
	e.Apply(s, ev("b", 0, 11, "A2", 1000), p, nil)
	e.Apply(s, ev("c", 5, 10, "A1", 300), p, nil)
	e.Apply(s, ev("d", 2, 10, "A1", 200), p, nil) // late: days 2..4 hold 200
	e.Apply(s, ev("e", 5, 9, "A1", 250), p, nil)  // late, same day as a later one: no effect
	e.Apply(s, ev("f", 3, 12, "A2", 2000), p, nil)
	want := map[int32]int64{0: 1100, 1: 1100, 2: 1200, 3: 2200, 4: 2200, 5: 2300, 6: 2300}
	for d, w := range want {
		if got, _ := s.balanceAt(dayOf(t0.UnixNano()) + d); got != w {
			t.Errorf("day %d: end-of-day total %d, want %d", d, got, w)
		}
	}
	if err := e.Check(s, ev("g", -3, 0, "A1", 1)); !errors.Is(err, ErrTooLate) {
		t.Fatalf("8 days late: %v, want ErrTooLate", err)
	}
	before := marshal(t, s)
	if e.Apply(s, ev("g", -3, 0, "A1", 1), p, nil) != nil || !bytes.Equal(before, marshal(t, s)) {
		t.Fatal("a too-late event changed the state")
	}
}

func TestRiskAndSignalIDs(t *testing.T) {
	e := New(Config{})
	p := Profile{Tier: TierMass, Known: true}
	s := &State{}
	ev := Event{ID: "x1", CustomerID: "C9", AccountID: "A", Time: t0, Type: EventAccountClosed}
	sigs := e.Apply(s, ev, p, nil)
	if len(sigs) != 1 {
		t.Fatalf("got %d signals", len(sigs))
	}
	s2 := &State{}
	again := e.Apply(s2, ev, p, nil)
	if sigs[0].ID != again[0].ID {
		t.Fatal("the same trigger gave a different signal id")
	}
	ev2 := ev
	ev2.ID = "x2"
	if other := e.Apply(&State{}, ev2, p, nil); other[0].ID == sigs[0].ID {
		t.Fatal("another trigger event gave the same signal id")
	}
	stage, score, sev, live := s.Risk(t0.Add(time.Hour))
	if stage != StageActive || score != 50 || sev != SeverityMedium || len(live) != 1 || live[0].ID != sigs[0].ID {
		t.Fatalf("Risk = %s %d %s %v", stage, score, sev, live)
	}
	if _, score, _, live := s.Risk(t0.Add(30 * 24 * time.Hour)); score != 0 || len(live) != 0 {
		t.Fatalf("after 30 days: score %d, %d live", score, len(live))
	}
	if !s.LastActivity().IsZero() {
		t.Fatal("a closure is not activity")
	}
}

func TestSeverityFor(t *testing.T) {
	for score, want := range map[int]Severity{0: SeverityLow, 39: SeverityLow, 40: SeverityMedium, 59: SeverityMedium,
		60: SeverityHigh, 79: SeverityHigh, 80: SeverityCritical, 100: SeverityCritical} {
		if got := SeverityFor(score); got != want {
			t.Errorf("SeverityFor(%d) = %s, want %s", score, got, want)
		}
	}
}

func TestNamesRoundTrip(t *testing.T) {
	for ty := EventDeposit; ty < numEventTypes; ty++ {
		if got, err := ParseEventType(ty.String()); err != nil || got != ty {
			t.Errorf("ParseEventType(%s) = %v, %v", ty, got, err)
		}
	}
	if _, err := ParseEventType("UNKNOWN"); !errors.Is(err, ErrUnknownEventType) {
		t.Errorf("UNKNOWN parsed: %v", err)
	}
	for in, want := range map[string]Tier{"HIGH_NET_WORTH": TierHNW, "HNW": TierHNW, "potential": TierPotential, "MASS": TierMass, "BASIC": TierBasic} {
		if got, err := ParseTier(in); err != nil || got != want {
			t.Errorf("ParseTier(%s) = %v, %v", in, got, err)
		}
	}
	if got, err := ParseTier("GOLD"); err == nil || got != TierMass {
		t.Errorf("ParseTier(GOLD) = %v, %v; want MASS and an error", got, err)
	}
	for _, r := range Rules() {
		if Weight(r) < 0 {
			t.Errorf("no weight for %s", r)
		}
	}
}

func FuzzUnmarshalBinary(f *testing.F) {
	e := New(Config{})
	s := &State{}
	replay(e, s, synthCustomer(8, 120, 2), nil)
	b, _ := s.MarshalBinary()
	f.Add(b)
	f.Add([]byte{stateVersion, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s State
		if s.UnmarshalBinary(data) != nil {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back State
		if err := back.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(s, back) {
			t.Fatalf("re-decode: %v", err)
		}
		// A decoded state must be usable.
		e.Advance(&s, s.Clock().Add(400*24*time.Hour), synthProfile, nil)
		s.Risk(s.Clock())
	})
}
