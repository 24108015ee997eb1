package scoring

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// producedSignals is where the consumer's produce goes in this test: the
// test counts what would reach the signals topic (the real topic is
// exercised by the e2e test TestShadowEqualsBacktest).
type producedSignals struct{ n int }

func (p *producedSignals) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.n += len(msgs)
	return nil
}

// shadowFixture is a real redis-server, its store, and live thresholds
// eager enough that the synthetic batches raise signals.
type shadowFixture struct {
	t   *testing.T
	ctx context.Context
	rdb *redis.Client
	st  *store.Store
	th  engine.Thresholds
}

func newShadowFixture(t *testing.T) *shadowFixture {
	t.Helper()
	r := testkit.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	th := engine.DefaultThresholds()
	for k, v := range map[string]string{"outflow.large.amount.MASS": "1", "outflow.large.min_amount.MASS": "1", "outflow.large.share.MASS": "0.01"} {
		if err := th.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	return &shadowFixture{t: t, ctx: ctx, rdb: rdb, st: store.New(rdb), th: th}
}

// consumer scores with the fixture's thresholds and the sets shadows
// returns, producing into sig.
func (f *shadowFixture) consumer(sig *producedSignals, shadows func() []Shadow) *Consumer {
	f.t.Helper()
	metrics, err := NewMetrics(sdkmetric.NewMeterProvider().Meter("test"))
	if err != nil {
		f.t.Fatal(err)
	}
	return &Consumer{Scorer: newScorer(1000), Store: f.st, Signals: sig, Thresholds: func() *engine.Thresholds { return &f.th },
		Metrics: metrics, Log: slog.New(slog.DiscardHandler), Tracer: noop.NewTracerProvider().Tracer("t"), Propagator: propagation.TraceContext{},
		Shadows: shadows, ShadowStore: f.st}
}

// handle scores msgs and returns their landing.
func (f *shadowFixture) handle(c *Consumer, msgs []kafka.Message) kafkax.Landing {
	f.t.Helper()
	l, err := c.handle(f.ctx, msgs, c.Scorer.Decode(msgs))
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// land lands l and settles it.
func (f *shadowFixture) land(l kafkax.Landing) {
	f.t.Helper()
	err := l.Land(f.ctx)
	l.Settled(err)
	if err != nil {
		f.t.Fatal(err)
	}
}

// TestShadowIsExactlyOnceAndNeverProduced: a shadow set with the live
// values scores the same events over its own state in Redis: its alerts are
// the live signals merged, its signals are never produced, and a batch
// redelivered (in process, and after a restart) changes none of its state.
func TestShadowIsExactlyOnceAndNeverProduced(t *testing.T) {
	f := newShadowFixture(t)
	ctx, rdb, st, th := f.ctx, f.rdb, f.st, &f.th
	// The "quiet" shadow set has the SPEC defaults, which raise no signal
	// on these batches.
	quiet := engine.DefaultThresholds()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	batches := [][]kafka.Message{batchOf(300, 20, 0, t0), batchOf(300, 20, 300, t0.Add(300*time.Minute))}

	run := func(c *Consumer, msgs []kafka.Message) { f.land(f.handle(c, msgs)) }
	newConsumer := func(sig *producedSignals) *Consumer {
		return f.consumer(sig, func() []Shadow { return []Shadow{{Name: "same", Thresholds: th}, {Name: "quiet", Thresholds: &quiet}} })
	}
	var sig producedSignals
	c := newConsumer(&sig)
	for _, b := range batches {
		run(c, b)
	}
	produced := sig.n
	if produced == 0 {
		t.Fatal("the live set raised no signal: the test would prove little")
	}
	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, name := range []string{"same", "quiet"} {
			for i := range 20 {
				id := batches[0][i].Key
				for _, f := range []string{store.ShadowStateField(name), store.ShadowAlertField(name)} {
					v, _ := rdb.HGet(ctx, store.CustomerKey(string(id)), f).Result()
					out[string(id)+"/"+f] = v
				}
			}
		}
		return out
	}
	before := snapshot()
	sameAlerts, err := st.Shadow("same").AllAlerts(ctx)
	if err != nil || len(sameAlerts) == 0 {
		t.Fatalf("shadow set with the live values: %d alerts, %v", len(sameAlerts), err)
	}
	quietAlerts, err := st.Shadow("quiet").AllAlerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(quietAlerts) >= len(sameAlerts) {
		t.Errorf("quiet set alerted %d customers, the live values %d: the set's own thresholds were not used", len(quietAlerts), len(sameAlerts))
	}
	// The set with the live values sees every signal the live set produced.
	merged := 0
	for _, raw := range sameAlerts {
		a := &cwv1.Alert{}
		if err := proto.Unmarshal(raw, a); err != nil {
			t.Fatal(err)
		}
		merged += int(a.GetVersion())
	}
	if merged != produced {
		t.Errorf("shadow with the live values merged %d signals, live produced %d", merged, produced)
	}

	// Redelivered in process, then to a restarted consumer: nothing changes
	// and the shadow produces nothing.
	for _, b := range batches {
		run(c, b)
	}
	c2 := newConsumer(&sig)
	for _, b := range batches {
		run(c2, b)
	}
	after := snapshot()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed on redelivery", k)
		}
	}
	if sig.n != produced {
		// Redelivered records are below the live watermark: nothing is
		// produced again, and the shadow sets never produce.
		t.Errorf("produced %d signals over three deliveries, want %d", sig.n, produced)
	}
}

// TestShadowStartsFromTheLiveState: a set started after events were scored
// goes on from each customer's live state, so that a set with the live
// values keeps exactly the live states from then on — also when it starts
// while the batch before is still landing (its states not yet in Redis) —
// and raises exactly the signals the live set raises after its start.
func TestShadowStartsFromTheLiveState(t *testing.T) {
	f := newShadowFixture(t)
	ctx, rdb, st, th := f.ctx, f.rdb, f.st, &f.th
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const customers = 20
	batches := [][]kafka.Message{batchOf(300, customers, 0, t0), batchOf(300, customers, 300, t0.Add(300*time.Minute)),
		batchOf(300, customers, 600, t0.Add(600*time.Minute))}
	var running []Shadow
	sig := &producedSignals{}
	c := f.consumer(sig, func() []Shadow { return running })
	handle := func(msgs []kafka.Message) kafkax.Landing { return f.handle(c, msgs) }
	land := f.land
	// Batch 1 with no set; the set starts while it lands: batch 2 is
	// scored (live and shadow) before batch 1's write is in Redis.
	first := handle(batches[0])
	beforeStart := sig.n
	running = []Shadow{{Name: "same", Thresholds: th}}
	second := handle(batches[1])
	land(first)
	afterFirst := sig.n
	land(second)
	land(handle(batches[2]))
	if sig.n == afterFirst {
		t.Fatal("the live set raised no signal after the set started: the test would prove little")
	}
	// A second set starts with nothing in flight: it starts from the live
	// states in Redis.
	running = append(running, Shadow{Name: "late", Thresholds: th})
	land(handle(batchOf(300, customers, 900, t0.Add(900*time.Minute))))
	for i := range customers {
		id := string(batches[0][i].Key)
		live, err := rdb.HGet(ctx, store.CustomerKey(id), "s").Bytes()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"same", "late"} {
			shadow, err := rdb.HGet(ctx, store.CustomerKey(id), store.ShadowStateField(name)).Bytes()
			if err != nil {
				t.Fatalf("%s: no state of set %s: %v", id, name, err)
			}
			if string(live) != string(shadow) {
				t.Errorf("%s: set %s, with the live values, keeps a state (%d bytes) other than the live one (%d bytes)", id, name, len(shadow), len(live))
			}
		}
	}
	alerts, err := st.Shadow("same").AllAlerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	merged := 0
	for _, raw := range alerts {
		a := &cwv1.Alert{}
		if err := proto.Unmarshal(raw, a); err != nil {
			t.Fatal(err)
		}
		merged += int(a.GetVersion())
	}
	// Produced counts signals of batches 1–3 (batch 1's are produced when
	// it lands, after the set started, but were scored before it).
	if want := sig.n - beforeStart - (afterFirst - beforeStart); merged != want {
		t.Errorf("the set merged %d signals; the live set raised %d after it started", merged, want)
	}
}

// TestShadowTakesOverQuietCustomers: customers with no event after a set
// started come in through the live deadlines copied at its start
// (store.SeedShadowDeadlines): when the partition clock passes them, the
// set takes them over from the live state and its absence rules fire as
// the live ones do.
func TestShadowTakesOverQuietCustomers(t *testing.T) {
	f := newShadowFixture(t)
	ctx, rdb := f.ctx, f.rdb
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const quiet = 20
	var running []Shadow
	sig := &producedSignals{}
	c := f.consumer(sig, func() []Shadow { return running })
	f.land(f.handle(c, batchOf(300, quiet, 0, t0)))
	seeded, err := f.st.SeedShadowDeadlines(ctx, "same")
	if err != nil || seeded < quiet {
		t.Fatalf("seeded %d deadlines (%v), want one per quiet customer at least", seeded, err)
	}
	running = []Shadow{{Name: "same", Thresholds: &f.th}}
	before := sig.n
	// Other customers' events 100 days on: the partition clock passes the
	// quiet customers' 90-day dormancy deadlines.
	f.land(f.handle(c, batchOf(10, 1000, 500, t0.Add(100*24*time.Hour))))
	if sig.n-before < quiet {
		t.Fatalf("the live set raised %d signals when the clock passed the deadlines, want one per quiet customer", sig.n-before)
	}
	alerts, err := f.st.Shadow("same").AllAlerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range quiet {
		id := fmt.Sprintf("B%04d", i)
		live, err := rdb.HGet(ctx, store.CustomerKey(id), "s").Bytes()
		if err != nil {
			t.Fatal(err)
		}
		shadow, err := rdb.HGet(ctx, store.CustomerKey(id), store.ShadowStateField("same")).Bytes()
		if err != nil {
			t.Fatalf("%s: the set never took the quiet customer over: %v", id, err)
		}
		if string(live) != string(shadow) {
			t.Errorf("%s: set state (%d bytes) differs from the live one (%d bytes)", id, len(shadow), len(live))
		}
		raw, ok := alerts[id]
		if !ok {
			t.Errorf("%s: no shadow alert, although the live set signalled its dormancy", id)
			continue
		}
		a := &cwv1.Alert{}
		if err := proto.Unmarshal(raw, a); err != nil {
			t.Fatal(err)
		}
		dormant := false
		for _, r := range a.GetReasons() {
			dormant = dormant || r.GetRuleId() == engine.RuleDormancyDeclining
		}
		if !dormant {
			t.Errorf("%s: shadow alert %v has no %s reason", id, a.GetReasons(), engine.RuleDormancyDeclining)
		}
	}
}
