package app

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

const (
	testCustomers = 28
	testSeed      = 7
)

// run is one scenario's outcome.
type run struct {
	signals map[string]signalKey
	states  map[string][]byte // customer → engine state bytes (without the watermark)
	kpis    kpi.Deltas        // the KPI counts, summed over partitions
	last    *running          // the app running at the end
}

// scenario feeds the bank through a fresh stack and returns what came out.
type scenario struct {
	partitions int
	batch      int
	// restartAfter stops the app after this many committed records and
	// starts a new one (0 = never).
	restartAfter int64
	// duplicate delivers every event twice, the copy a few records later.
	duplicate bool
	// crashAfterBatches makes the first app fail between state write and
	// commit on its n-th batch (0 = never); a second app takes over.
	crashAfterBatches int32
	// redisRestartAfter restarts redis-server after this many committed
	// records (0 = never).
	redisRestartAfter int64
}

func (sc scenario) run(t *testing.T, b *bank) (*stack, run) {
	t.Helper()
	var rt testkit.RedisTarget
	if sc.redisRestartAfter > 0 {
		rt = testkit.RedisTarget{Node: testkit.Redis(t)} // it restarts the server
	} else {
		rt = testkit.RedisUnderTest(t)
	}
	s := stackOn(t, sc.partitions, rt)
	cfg := s.config(sc.batch)
	var opts []Option
	var batches atomic.Int32
	if sc.crashAfterBatches > 0 {
		opts = append(opts, withAfterWrite(func() error {
			if batches.Add(1) == sc.crashAfterBatches {
				return errCrash
			}
			return nil
		}))
	}
	app := s.start(cfg, opts...)
	s.loadCustomers(b, cfg)

	msgs := b.eventMsgs()
	if sc.duplicate {
		var dup []kafka.Message
		for i := range msgs {
			dup = append(dup, msgs[i])
			if i >= 3 {
				dup = append(dup, msgs[i-3])
			}
		}
		for i := max(0, len(msgs)-3); i < len(msgs); i++ {
			dup = append(dup, msgs[i])
		}
		msgs = dup
	}
	s.produce(s.topics.Events, msgs...)
	switch {
	case sc.restartAfter > 0:
		s.waitProgress(cfg.Group, s.topics.Events, sc.restartAfter, 120*time.Second)
		if err := app.stop(t); err != nil {
			t.Fatalf("stop: %v", err)
		}
		app = s.start(cfg)
	case sc.crashAfterBatches > 0:
		select {
		case err := <-app.done:
			if err == nil {
				t.Fatal("app stopped cleanly, want the simulated crash")
			}
			close(app.done)
		case <-time.After(120 * time.Second):
			t.Fatal("simulated crash never happened")
		}
		app = s.start(cfg)
	case sc.redisRestartAfter > 0:
		// Offsets are committed in the background, so progress is read from
		// the applied-events counter, not from committed offsets.
		const applied = `churnwatch_rules_events_total{result="applied"}`
		deadline := time.Now().Add(120 * time.Second)
		for s.metric(app, applied) < float64(sc.redisRestartAfter) {
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d events applied within 120s", sc.redisRestartAfter)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if s.metric(app, applied) >= float64(len(b.events)) {
			t.Fatal("stream already consumed before the Redis restart: the test would prove nothing")
		}
		if err := s.redis.Restart(); err != nil {
			t.Fatalf("redis restart: %v", err)
		}
	}
	s.waitCaughtUp(cfg.Group, s.topics.Events, 180*time.Second)
	s.closeDay(finalClose)
	s.waitCaughtUp(cfg.Group, s.topics.Events, 60*time.Second)
	return s, run{signals: s.signals(), states: s.states(b), kpis: s.kpis(), last: app}
}

// kpis reads the KPI counts of every partition, summed.
func (s *stack) kpis() kpi.Deltas {
	s.t.Helper()
	d, err := store.New(s.rt.Client(s.t)).KPIDeltas(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// sameKPIs checks that a scenario counted every KPI fact once, as the
// baseline did.
func sameKPIs(t *testing.T, name string, want, got kpi.Deltas) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the baseline counted no KPI fact", name)
	}
	if !reflect.DeepEqual(want, got) {
		for m, fields := range want {
			for f, v := range fields {
				if got[m][f] != v {
					t.Errorf("%s: KPI %s %s = %d, want %d", name, m, f, got[m][f], v)
				}
			}
		}
		t.Fatalf("%s: KPI counts differ (%d months vs %d)", name, len(got), len(want))
	}
}

// states reads every customer's engine state.
func (s *stack) states(b *bank) map[string][]byte {
	s.t.Helper()
	rdb := s.rt.Client(s.t)
	out := map[string][]byte{}
	for _, c := range b.customers {
		raw, err := rdb.HGet(context.Background(), store.CustomerKey(c.GetCustomerId()), "s").Bytes()
		if err != nil {
			s.t.Fatalf("state of %s: %v", c.GetCustomerId(), err)
		}
		env, err := store.UnmarshalEnvelope(raw)
		if err != nil {
			s.t.Fatal(err)
		}
		out[c.GetCustomerId()] = env.State
	}
	return out
}

func sameStates(t *testing.T, name string, want, got map[string][]byte) {
	t.Helper()
	for id, w := range want {
		if string(got[id]) != string(w) {
			t.Fatalf("%s: state of %s differs (%d vs %d bytes)", name, id, len(w), len(got[id]))
		}
	}
}

var baseline struct {
	done bool
	run  run
}

// base is the reference: 3 partitions, batches of 500.
func base(t *testing.T, b *bank) run {
	t.Helper()
	if !baseline.done {
		_, r := scenario{partitions: 3, batch: 500}.run(t, b)
		baseline.run, baseline.done = r, true
	}
	return baseline.run
}

func TestDeterminism(t *testing.T) {
	b := newBank(testCustomers, testSeed)
	want := base(t, b)
	rules := map[string]int{}
	for _, k := range want.signals {
		rules[k.Rule]++
	}
	for _, r := range []string{"dormancy.declining", "dormancy.churned", "outflow.large", "salary.stopped", "closure", "complaints", "winback", "activity.drop"} {
		if rules[r] == 0 {
			t.Errorf("baseline has no %s signal: %v", r, rules)
		}
	}
	t.Logf("baseline: %d events, %d signals %v", len(b.events), len(want.signals), rules)
	for name, sc := range map[string]scenario{
		"1 partition, batch 1":               {partitions: 1, batch: 1},
		"1 partition, batch 500, restart":    {partitions: 1, batch: 500, restartAfter: int64(len(b.events)) / 2},
		"3 partitions, batch 1, restart":     {partitions: 3, batch: 1, restartAfter: int64(len(b.events)) / 3},
		"3 partitions, batch 500, restarted": {partitions: 3, batch: 500, restartAfter: 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, got := sc.run(t, b)
			diffSignals(t, name, want.signals, got.signals)
			sameStates(t, name, want.states, got.states)
			sameKPIs(t, name, want.kpis, got.kpis)
		})
	}
}

func TestExactlyOnce(t *testing.T) {
	b := newBank(testCustomers, testSeed)
	want := base(t, b)
	t.Run("every event twice", func(t *testing.T) {
		_, got := scenario{partitions: 3, batch: 200, duplicate: true}.run(t, b)
		diffSignals(t, "duplicates", want.signals, got.signals)
		sameStates(t, "duplicates", want.states, got.states)
		sameKPIs(t, "duplicates", want.kpis, got.kpis)
	})
	t.Run("crash between state write and commit", func(t *testing.T) {
		s, got := scenario{partitions: 3, batch: 50, crashAfterBatches: 5}.run(t, b)
		diffSignals(t, "crash", want.signals, got.signals)
		if n := s.metric(got.last, `churnwatch_rules_events_total{result="redelivered"}`); n == 0 {
			t.Fatal("the restarted app saw no redelivered record: the crash did not happen between write and commit")
		}
		sameStates(t, "crash", want.states, got.states)
		sameKPIs(t, "crash", want.kpis, got.kpis)
	})
	t.Run("replay the whole topic with a fresh group", func(t *testing.T) {
		s, first := scenario{partitions: 3, batch: 500}.run(t, b)
		before := len(s.readAll(s.topics.Signals))
		cfg := s.config(500)
		cfg.Group = "churnwatch-rules-replay"
		replay := s.start(cfg)
		s.waitCaughtUp(cfg.Group, s.topics.Events, 120*time.Second)
		if n := s.metric(replay, `churnwatch_rules_events_total{result="redelivered"}`); n < float64(len(b.events)) {
			t.Fatalf("replay skipped %v records by watermark, want every event (%d)", n, len(b.events))
		}
		if after := len(s.readAll(s.topics.Signals)); after != before {
			t.Fatalf("replay produced %d more signals", after-before)
		}
		sameStates(t, "replay", first.states, s.states(b))
		sameKPIs(t, "replay", first.kpis, s.kpis())
	})
}

func TestRedisRestartMidStream(t *testing.T) {
	b := newBank(testCustomers, testSeed)
	want := base(t, b)
	_, got := scenario{partitions: 3, batch: 20, redisRestartAfter: int64(len(b.events)) / 3}.run(t, b)
	diffSignals(t, "redis restart", want.signals, got.signals)
	sameStates(t, "redis restart", want.states, got.states)
	sameKPIs(t, "redis restart", want.kpis, got.kpis)
}

// metric reads one sample of the app's /metrics (0 when absent).
func (s *stack) metric(r *running, series string) float64 {
	s.t.Helper()
	for _, line := range strings.Split(httpGet(s.t, "http://"+r.app.HTTPAddr()+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.t.Fatal(err)
			}
			return f
		}
	}
	return 0
}
