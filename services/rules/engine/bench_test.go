package engine

import (
	"testing"
	"time"
)

func reportEventsPerSec(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "events/s")
	}
}

// BenchmarkApply measures Apply per event on one core: over the YAML cases
// (the same loader as TestCases) and over a two-year active customer, with
// and without the state codec round trip the rules service does per event.
func BenchmarkApply(b *testing.B) {
	b.Run("cases", func(b *testing.B) {
		type flat struct {
			c     *compiled
			st    step
			first bool
		}
		cases := loadCases(b)
		var steps []flat
		for i := range cases {
			for k, st := range cases[i].steps {
				steps = append(steps, flat{&cases[i], st, k == 0})
			}
		}
		engines := map[*compiled]*Engine{}
		for i := range cases {
			engines[&cases[i]] = New(cases[i].cfg)
		}
		s := &State{}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			f := steps[i%len(steps)]
			if f.first {
				*s = State{}
			}
			if f.st.advance {
				engines[f.c].Advance(s, f.st.at, f.c.profile, &f.c.th)
			} else {
				engines[f.c].Apply(s, f.st.ev, f.c.profile, &f.c.th)
			}
		}
		reportEventsPerSec(b)
	})

	evs := synthCustomer(11, 730, 3)
	th := DefaultThresholds()
	b.Run("active-customer", func(b *testing.B) {
		e := New(Config{})
		s := &State{}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			k := i % len(evs)
			if k == 0 {
				*s = State{}
			}
			e.Apply(s, evs[k], synthProfile, &th)
		}
		reportEventsPerSec(b)
	})
	b.Run("active-customer-with-codec", func(b *testing.B) {
		e := New(Config{})
		var blob []byte
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			k := i % len(evs)
			var s State
			if k > 0 {
				if err := s.UnmarshalBinary(blob); err != nil {
					b.Fatal(err)
				}
			}
			e.Apply(&s, evs[k], synthProfile, &th)
			blob, _ = s.MarshalBinary()
		}
		reportEventsPerSec(b)
	})
}

func activeState(b *testing.B) *State {
	s := &State{}
	replay(New(Config{}), s, synthCustomer(12, 365, 3), nil)
	return s
}

func BenchmarkMarshal(b *testing.B) {
	s := activeState(b)
	var blob []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if blob, err = s.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(blob)), "state-bytes")
}

func BenchmarkUnmarshal(b *testing.B) {
	blob, _ := activeState(b).MarshalBinary()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var s State
		if err := s.UnmarshalBinary(blob); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdvance is the deadline sweep: one quiet day per call.
func BenchmarkAdvance(b *testing.B) {
	base := activeState(b)
	blob, _ := base.MarshalBinary()
	e := New(Config{})
	var s State
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		day := i % 400
		if day == 0 {
			_ = s.UnmarshalBinary(blob)
		}
		e.Advance(&s, base.Clock().Add(time.Duration(day+1)*24*time.Hour), synthProfile, nil)
	}
}
