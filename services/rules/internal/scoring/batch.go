// Package scoring is the rules service's events consumer: it turns batches
// of account events into risk signals with the engine, keeps per-customer
// state and per-partition event-time clocks in Redis, and runs the
// absence-rule sweep when a partition clock passes a customer's deadline.
//
// One batch is: decode → one Redis round trip to load (customers, clocks,
// due deadlines; only a stamp and the profile of customers whose decoded
// state this instance holds from an earlier batch, see StateCache) → engine
// in memory → produce signals and DLQ records and
// wait for the acks → one MULTI/EXEC to write (states with their offset
// watermark, deadline index, clocks) → commit offsets. A crash anywhere
// repeats at most the produce (same signal ids) and never the state change.
package scoring

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/engine"
	"github.com/churnwatch/churnwatch/services/rules/internal/kpi"
	"github.com/churnwatch/churnwatch/services/rules/internal/store"
)

// DLQ reasons (header cw-reason carries the detail, cw-reason-class and the
// metric the class).
const (
	ReasonTooLate = "too late"
	reasonDecode  = "decode"
	reasonInvalid = "invalid"
)

// Result classes of a processed record, for metrics.
const (
	ResultApplied     = "applied"
	ResultDuplicate   = "duplicate"   // event id already applied (engine dedupe)
	ResultRedelivered = "redelivered" // at or below the customer's offset watermark
	ResultTooLate     = "too_late"
	ResultInvalid     = "invalid"
	ResultMarker      = "clock_marker"
	ResultProfile     = "profile" // a customer record in event order
)

// Output is what a batch produced, before it is made durable.
type Output struct {
	Signals []kafka.Message
	DLQ     []kafka.Message
	Write   store.Write
	// Counts by result and rule, and DLQ records by reason class.
	Results map[string]int
	Rules   map[string]int
	DLQBy   map[string]int

	custs map[string]*customer // the batch's customers, for the cache
	// shadowSigs are the signals of a shadow run (never produced).
	shadowSigs []engine.Signal
}

// Loader is the part of the store a batch reads.
type Loader interface {
	Load(ctx context.Context, q store.Query) (store.Loaded, error)
	LoadCustomers(ctx context.Context, ids []string, held func(string) bool) (map[string]store.Customer, error)
}

// Scorer computes a batch's effect. It holds configuration only.
type Scorer struct {
	Engine   *engine.Engine
	Lateness time.Duration
	Topic    string // events topic, for DLQ source headers
	// Hook on engine state decode errors: the customer restarts empty
	// rather than blocking its partition forever.
	OnCorrupt func(customerID string, err error)
	// Cache, if not nil, keeps decoded states between batches. Score and
	// Keep fill it; a caller whose batch fails to land must Reset it.
	Cache *StateCache

	stampOnce sync.Once
	stamps    *stamper

	// shadow: signals are kept as shadowSigs, not made Kafka records.
	shadow bool

	// beforeApply, if not nil, sees each event before the engine (tests
	// make it panic, as an engine bug would).
	beforeApply func(m *kafka.Message)
}

type record struct {
	msg   *kafka.Message
	rec   convert.Record // rec.Event, unless rec.Marker
	bad   string         // DLQ reason when the record cannot be processed
	class string         // DLQ metric class
}

type customer struct {
	id      string
	env     store.Envelope
	state   *engine.State
	profile engine.Profile
	branch  string // of the profile, for the KPIs
	manager string // of the profile, for shadow alerts
	stamp   string // of the stored state this one was read from ("" if none or unreadable)
	dirty   bool
	// newProfile is a profile record of this batch, to store with the state.
	newProfile *store.Profile
}

// Batch is a fetched batch, decoded: what can be known of it without
// reading any state.
type Batch struct {
	Msgs     []kafka.Message
	Decoded  time.Time
	recs     []record
	parts    []int32         // partitions of the batch, ascending
	byPart   map[int32][]int // records of each partition, in offset order
	ids      []string        // customers with records, in first-record order
	dueUntil map[int32]int64 // latest event time (unix ms) of each partition
}

// recycle clears b (so that it holds no record) for decodeInto. The
// messages are the runner's to clear.
func (b *Batch) recycle() {
	clear(b.recs)
	b.Msgs, b.recs = nil, b.recs[:0]
}

// decodeChunk is about how many records a decoding goroutine is worth.
const decodeChunk = 512

// Decode decodes msgs, spreading the work over up to GOMAXPROCS goroutines.
func (s *Scorer) Decode(msgs []kafka.Message) *Batch {
	return s.decodeInto(nil, msgs)
}

// decodeInto is Decode reusing the memory of spare, a batch done with (or
// nil).
func (s *Scorer) decodeInto(spare *Batch, msgs []kafka.Message) *Batch {
	b := spare
	if b == nil {
		b = &Batch{byPart: map[int32][]int{}, dueUntil: map[int32]int64{}}
	}
	b.Msgs, b.ids, b.parts = msgs, b.ids[:0], b.parts[:0]
	if cap(b.recs) < len(msgs) {
		b.recs = make([]record, len(msgs))
	}
	b.recs = b.recs[:len(msgs)]
	for p, idx := range b.byPart {
		b.byPart[p] = idx[:0]
	}
	clear(b.dueUntil)
	for i := range msgs {
		b.recs[i].msg = &msgs[i]
	}
	spread(len(msgs), decodeChunk, func(i int) { s.decode(&b.recs[i]) })
	seen := map[string]bool{}
	for i := range b.recs {
		r := &b.recs[i]
		p := int32(msgs[i].Partition)
		b.byPart[p] = append(b.byPart[p], i)
		if r.bad != "" {
			continue
		}
		if r.rec.Profile != nil {
			// No event time: it neither moves the clock nor makes deadlines due.
			if !seen[r.rec.Event.CustomerID] {
				seen[r.rec.Event.CustomerID] = true
				b.ids = append(b.ids, r.rec.Event.CustomerID)
			}
			continue
		}
		ms := r.time().UnixMilli()
		if cur, ok := b.dueUntil[p]; !ok || ms > cur {
			b.dueUntil[p] = ms
		}
		if !r.rec.Marker && !seen[r.rec.Event.CustomerID] {
			seen[r.rec.Event.CustomerID] = true
			b.ids = append(b.ids, r.rec.Event.CustomerID)
		}
	}
	b.Decoded = time.Now()
	for p, idx := range b.byPart {
		if len(idx) == 0 {
			delete(b.byPart, p)
			continue
		}
		b.parts = append(b.parts, p)
		sort.SliceStable(idx, func(x, y int) bool { return msgs[idx[x]].Offset < msgs[idx[y]].Offset })
	}
	sort.Slice(b.parts, func(i, j int) bool { return b.parts[i] < b.parts[j] })
	return b
}

// Score decodes msgs and scores them (Decode, then ScoreBatch).
func (s *Scorer) Score(ctx context.Context, l Loader, msgs []kafka.Message, th *engine.Thresholds) (*Output, error) {
	return s.ScoreBatch(ctx, l, s.Decode(msgs), th)
}

// ScoreBatch runs the engine over b. It reads from Redis through l (one
// round trip, plus one per 5,000 due customers not in the batch) and returns
// what to produce and write; it changes nothing in Redis itself. It may be
// called again with the same batch after an error.
func (s *Scorer) ScoreBatch(ctx context.Context, l Loader, b *Batch, th *engine.Thresholds) (_ *Output, err error) {
	scored := false
	defer func() {
		if err != nil || !scored {
			// Cached states may have been changed by a batch that will
			// not be written (an error, or a panic on its way up).
			s.Cache.Reset()
		}
	}()
	recs, ids := b.recs, b.ids
	loaded, err := l.Load(ctx, store.Query{Customers: ids, Held: s.Cache.held, DueUntil: b.dueUntil, KPIPartitions: b.parts})
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
	}
	custs := make(map[string]*customer, len(ids))
	if err := s.resolve(ctx, l, custs, ids, loaded.Customers); err != nil {
		return nil, err
	}
	var extra []string
	for _, dues := range loaded.Due {
		for _, d := range dues {
			if !seen[d.CustomerID] {
				seen[d.CustomerID] = true
				extra = append(extra, d.CustomerID)
			}
		}
	}
	if len(extra) > 0 {
		more, err := l.LoadCustomers(ctx, extra, s.Cache.held)
		if err != nil {
			return nil, err
		}
		if err := s.resolve(ctx, l, custs, extra, more); err != nil {
			return nil, err
		}
	}

	runs := make([]*partitionRun, len(b.parts))
	for i, p := range b.parts {
		runs[i] = &partitionRun{s: s, out: newOutput(), th: th, p: p, custs: custs, clock: loaded.Clocks[p], idx: b.byPart[p], dues: loaded.Due[p],
			kpi: kpiRun{from: kpiWatermark(loaded.KPIApplied, p), deltas: kpi.Deltas{}}}
	}
	// Partitions are independent when every customer of the batch belongs
	// to one partition (always, unless the topic was repartitioned): then
	// they run in parallel, each touching only its own customers, and their
	// outputs are merged in partition order, so the result is the same as
	// running them one after the other.
	if len(runs) > 1 && disjoint(recs, loaded.Due) {
		var wg sync.WaitGroup
		var caught panicked
		errs := make([]error, len(runs))
		for i, pr := range runs {
			wg.Go(func() {
				defer caught.recover()
				errs[i] = pr.run(recs)
			})
		}
		wg.Wait()
		caught.raise()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	} else {
		for _, pr := range runs {
			if err := pr.run(recs); err != nil {
				return nil, err
			}
		}
	}
	out := newOutput()
	for _, pr := range runs {
		out.merge(pr.out)
	}
	out.custs = custs
	if len(out.Write.States) > 0 {
		s.stampOnce.Do(func() { s.stamps = newStamper() })
		out.Write.Stamp = s.stamps.next()
	}
	scored = true
	return out, nil
}

// Keep puts out's states in the cache as they will be stored by out's
// write. The caller makes sure the write lands or resets the cache.
func (s *Scorer) Keep(out *Output) {
	if s.Cache == nil {
		return
	}
	for id, cu := range out.custs {
		if _, written := out.Write.States[id]; written {
			s.Cache.put(cu, out.Write.Stamp)
		} else {
			s.Cache.put(cu, cu.stamp)
		}
	}
}

// resolve adds the customers ids, as loaded, to custs: from the cache where
// Redis still holds the state it has, else decoded (read again whole when
// only the stamp was read and it showed the cached state stale).
func (s *Scorer) resolve(ctx context.Context, l Loader, custs map[string]*customer, ids []string, loaded map[string]store.Customer) error {
	if s.Cache == nil {
		s.addCustomers(custs, ids, loaded)
		return nil
	}
	var decode, stale []string
	for _, id := range ids {
		held := s.Cache.held(id)
		if cu, ok := s.Cache.take(id, loaded[id]); ok {
			custs[id] = cu
		} else if held {
			stale = append(stale, id)
		} else {
			decode = append(decode, id)
		}
	}
	s.addCustomers(custs, decode, loaded)
	if len(stale) > 0 {
		more, err := l.LoadCustomers(ctx, stale, nil)
		if err != nil {
			return err
		}
		s.addCustomers(custs, stale, more)
	}
	return nil
}

func newOutput() *Output {
	return &Output{Results: map[string]int{}, Rules: map[string]int{}, DLQBy: map[string]int{},
		Write: store.Write{States: map[string][]byte{}, Deadlines: map[int32]map[string]int64{}, Clocks: map[int32]int64{}, Profiles: map[string]store.Profile{},
			KPI: map[int32]store.KPIWrite{}}}
}

func (o *Output) merge(from *Output) {
	o.Signals = append(o.Signals, from.Signals...)
	o.shadowSigs = append(o.shadowSigs, from.shadowSigs...)
	o.DLQ = append(o.DLQ, from.DLQ...)
	for k, v := range from.Results {
		o.Results[k] += v
	}
	for k, v := range from.Rules {
		o.Rules[k] += v
	}
	for k, v := range from.DLQBy {
		o.DLQBy[k] += v
	}
	for k, v := range from.Write.States {
		o.Write.States[k] = v
	}
	for p, d := range from.Write.Deadlines {
		o.Write.Deadlines[p] = d
	}
	for p, c := range from.Write.Clocks {
		o.Write.Clocks[p] = c
	}
	for id, prof := range from.Write.Profiles {
		o.Write.Profiles[id] = prof
	}
	for p, k := range from.Write.KPI {
		o.Write.KPI[p] = k
	}
}

// disjoint reports whether no customer has records, or a due deadline, on
// two partitions of the batch.
func disjoint(recs []record, dues map[int32][]store.Due) bool {
	owner := map[string]int32{}
	for i := range recs {
		r := &recs[i]
		if r.bad != "" || r.rec.Marker {
			continue
		}
		p := int32(r.msg.Partition)
		if q, ok := owner[r.rec.Event.CustomerID]; ok && q != p {
			return false
		}
		owner[r.rec.Event.CustomerID] = p
	}
	for p, ds := range dues {
		for _, d := range ds {
			if q, ok := owner[d.CustomerID]; ok && q != p {
				return false
			}
		}
	}
	return true
}

// run replays the partition's records and records its part of the write.
func (pr *partitionRun) run(recs []record) error {
	pr.start(pr.dues)
	for _, i := range pr.idx {
		pr.record(&recs[i])
	}
	return pr.finish()
}

func (r *record) time() time.Time { return r.rec.At }

func (s *Scorer) decode(r *record) {
	rec, err := convert.DecodeRecord(r.msg.Value)
	switch {
	case errors.Is(err, convert.ErrMalformed):
		r.bad, r.class = "decode: "+err.Error(), reasonDecode
	case err != nil:
		r.bad, r.class = "decode: "+err.Error(), reasonInvalid
	default:
		r.rec = rec
	}
}

// decodePerWorker is about how many customers a decoding goroutine is
// worth (a state decodes in a few microseconds).
const decodePerWorker = 32

// spread runs do(0) … do(n-1) over up to GOMAXPROCS goroutines, each taking
// chunk indexes at a time, or on this goroutine when n is less than two
// chunks' worth.
func spread(n, chunk int, do func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/chunk)
	if workers <= 1 {
		for i := range n {
			do(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var caught panicked
	for range workers {
		wg.Go(func() {
			defer caught.recover()
			for {
				from := int(next.Add(int64(chunk))) - chunk
				if from >= n {
					return
				}
				for i := from; i < min(from+chunk, n); i++ {
					do(i)
				}
			}
		})
	}
	wg.Wait()
	caught.raise()
}

// panicked carries the first panic of worker goroutines to the goroutine
// that waits for them, where the consumer's recover sees it (a panic on a
// goroutine of its own would end the process).
type panicked struct {
	once  sync.Once
	value any
	stack []byte
}

// recover, deferred in a worker, keeps the worker's panic.
func (p *panicked) recover() {
	if r := recover(); r != nil {
		p.once.Do(func() { p.value, p.stack = r, debug.Stack() })
	}
}

// raise panics again with the panic kept, if any, once the workers are
// done.
func (p *panicked) raise() {
	if p.value != nil {
		panic(fmt.Sprintf("%v [in a worker goroutine: %s]", p.value, p.stack))
	}
}

// addCustomers decodes the customers ids from loaded into custs. Decoding
// is most of a batch's work before the partitions run, so it is spread
// over up to GOMAXPROCS goroutines; OnCorrupt still runs on this goroutine,
// in ids order.
func (s *Scorer) addCustomers(custs map[string]*customer, ids []string, loaded map[string]store.Customer) {
	cs := make([]*customer, len(ids))
	errs := make([]error, len(ids))
	spread(len(ids), decodePerWorker, func(i int) { cs[i], errs[i] = customerFrom(ids[i], loaded[ids[i]]) })
	for i, id := range ids {
		if errs[i] != nil && s.OnCorrupt != nil {
			// A state this version cannot read must not block the
			// partition: the customer starts afresh, and we say so.
			s.OnCorrupt(id, errs[i])
		}
		custs[id] = cs[i]
	}
}

// customerFrom decodes one loaded customer. A state it cannot read is
// returned empty, with the error.
func customerFrom(id string, c store.Customer) (*customer, error) {
	cu := &customer{id: id, state: &engine.State{}, env: store.Envelope{Partition: -1, Offset: -1}, profile: profileOf(c), branch: c.Profile.Branch, manager: c.Profile.Manager}
	if c.Envelope == nil {
		return cu, nil
	}
	env, err := store.UnmarshalEnvelope(c.Envelope)
	if err == nil {
		err = cu.state.UnmarshalBinary(env.State)
	}
	if err != nil {
		cu.state = &engine.State{}
		return cu, err
	}
	env.State = nil // decoded; the bytes are not needed any more
	cu.env, cu.stamp = env, c.Stamp
	return cu, nil
}

// profileOf is the engine's view of a loaded customer's profile: MASS until
// the customer record arrives.
func profileOf(c store.Customer) engine.Profile {
	if !c.Known {
		return engine.Profile{Tier: engine.TierMass}
	}
	tier, err := engine.ParseTier(c.Profile.Tier)
	return engine.Profile{Tier: tier, Known: err == nil}
}

// partitionRun replays one partition's records in offset order. After each
// record the partition clock moves to the latest event time seen and every
// customer whose deadline it passed is advanced to it, exactly as if each
// record were its own batch: the result does not depend on batch size.
type partitionRun struct {
	s     *Scorer
	out   *Output
	th    *engine.Thresholds
	p     int32
	custs map[string]*customer
	clock int64 // unix ms
	dirty bool
	due   dueHeap
	// customers whose deadline entry in this partition must be rewritten
	index map[string]bool
	idx   []int       // the partition's records in offset order
	dues  []store.Due // deadlines due up to the batch's latest event time
	kpi   kpiRun
}

func (pr *partitionRun) start(dues []store.Due) {
	pr.index = map[string]bool{}
	pr.due = make(dueHeap, 0, len(pr.idx)+len(dues)) // a push per record at most
	for _, d := range dues {
		c := pr.custs[d.CustomerID]
		if c == nil || c.env.Partition != pr.p {
			// Stale entry: the customer is scored on another partition now,
			// or its state is gone. Drop it.
			pr.index[d.CustomerID] = true
			continue
		}
		pr.push(c)
	}
}

func (pr *partitionRun) push(c *customer) {
	if at, ok := c.state.NextDeadline(); ok {
		pr.due.push(dueEntry{at: at.UnixNano(), c: c})
	}
}

func (pr *partitionRun) record(r *record) {
	m := r.msg
	if r.bad != "" {
		pr.dlq(m, r.bad, r.class)
		pr.out.Results[ResultInvalid]++
		return
	}
	if r.rec.Profile != nil {
		pr.profile(r)
		return
	}
	t := r.time()
	ms := t.UnixMilli()
	if r.rec.Marker {
		pr.out.Results[ResultMarker]++
	} else {
		c := pr.custs[r.rec.Event.CustomerID]
		// Lateness is judged against the clock the ingester accepted the
		// event by, when it says: then an event it reported accepted is
		// never dropped here, in whatever order concurrent writes landed.
		clock := pr.clock
		if r.rec.AcceptedClock != 0 {
			clock = r.rec.AcceptedClock
		}
		if pr.s.beforeApply != nil {
			pr.s.beforeApply(m)
		}
		switch {
		case c.env.Partition == pr.p && m.Offset <= c.env.Offset:
			pr.out.Results[ResultRedelivered]++
			return // already applied and written: the clock already holds it
		case clock != 0 && t.Before(time.UnixMilli(clock).Add(-pr.s.Lateness)):
			pr.dlq(m, ReasonTooLate, "too_late")
			pr.out.Results[ResultTooLate]++
			return
		}
		before := pr.kpi.snapshot(m, c)
		sigs, err := pr.s.Engine.ApplyChecked(c.state, r.rec.Event, c.profile, pr.th)
		switch {
		case errors.Is(err, engine.ErrDuplicate):
			pr.out.Results[ResultDuplicate]++
		case errors.Is(err, engine.ErrTooLate):
			// Older than the customer's own clock minus the lateness (its
			// later events landed first): the engine cannot apply it
			// exactly once. Said, not silently counted.
			pr.dlq(m, ReasonTooLate+" for the customer", "too_late")
			pr.out.Results[ResultTooLate]++
		default:
			pr.emit(sigs, m, &r.rec)
			pr.kpi.change(m, before, c, sigs, t)
			pr.out.Results[ResultApplied]++
		}
		c.env.Partition, c.env.Offset = pr.p, m.Offset
		c.dirty = true
		pr.index[c.id] = true
		pr.push(c)
	}
	if ms > pr.clock {
		pr.clock, pr.dirty = ms, true
	}
	pr.sweep(m, &r.rec)
}

// profile sets the profile the customer's later events are scored with. A
// profile record has no event time: the clock stays and nothing becomes due.
func (pr *partitionRun) profile(r *record) {
	m := r.msg
	c := pr.custs[r.rec.Event.CustomerID]
	if c.env.Partition == pr.p && m.Offset <= c.env.Offset {
		pr.out.Results[ResultRedelivered]++
		return
	}
	p := r.rec.Profile
	tier, _ := convert.Tier(p.GetTier())
	sp := store.Profile{Tier: tier.String(), Manager: p.GetManagerId(), Branch: p.GetBranchId()}
	before := pr.kpi.snapshot(m, c)
	c.profile = profileOf(store.Customer{Profile: sp, Known: true})
	c.branch, c.manager = sp.Branch, sp.Manager
	pr.kpi.move(m, before, c)
	c.newProfile = &sp
	c.env.Partition, c.env.Offset = pr.p, m.Offset
	c.dirty = true
	pr.index[c.id] = true
	pr.out.Results[ResultProfile]++
}

// sweep advances every customer whose deadline the clock passed.
func (pr *partitionRun) sweep(m *kafka.Message, src *convert.Record) {
	now := time.UnixMilli(pr.clock)
	for len(pr.due) > 0 && pr.due[0].at <= now.UnixNano() {
		e := pr.due.pop()
		c := e.c
		if at, ok := c.state.NextDeadline(); !ok || at.UnixNano() != e.at {
			continue // superseded entry
		}
		before := pr.kpi.snapshot(m, c)
		sigs := pr.s.Engine.Advance(c.state, now, c.profile, pr.th)
		pr.kpi.change(m, before, c, sigs, now)
		pr.emit(sigs, m, src)
		c.dirty = true
		pr.index[c.id] = true
		if at, ok := c.state.NextDeadline(); ok && !at.After(now) {
			// The engine fires every deadline ≤ now; a deadline still due
			// would loop forever. Keep it for the next clock move instead.
			continue
		}
		pr.push(c)
	}
}

// source is the ce_source of the signals the rules service writes.
var source = kafkax.Source("rules")

func (pr *partitionRun) emit(sigs []engine.Signal, m *kafka.Message, src *convert.Record) {
	if pr.s.shadow {
		pr.out.shadowSigs = append(pr.out.shadowSigs, sigs...)
		return
	}
	for _, sg := range sigs {
		rs := convert.Signal(sg, convert.Source{Partition: pr.p, Offset: m.Offset, IngestedAt: src.IngestedAt()})
		b, err := proto.Marshal(rs)
		if err != nil {
			continue // a generated message with valid fields always marshals
		}
		msg := kafka.Message{Key: []byte(sg.CustomerID), Value: b}
		for _, h := range m.Headers {
			if h.Key == "traceparent" || h.Key == "tracestate" {
				msg.Headers = append(msg.Headers, h)
			}
		}
		kafkax.CloudEvent{Type: kafkax.TypeRiskSignal, Source: source, ID: rs.GetSignalId(), Time: rs.GetEventTime().AsTime(),
			Subject: rs.GetCustomerId(), Data: rs}.Stamp(&msg)
		pr.out.Signals = append(pr.out.Signals, msg)
		pr.out.Rules[sg.Rule]++
	}
}

func (pr *partitionRun) dlq(m *kafka.Message, reason, class string) {
	pr.out.DLQ = append(pr.out.DLQ, kafkax.DeadLetter(m, pr.s.Topic, class, reason))
	pr.out.DLQBy[class]++
}

// finish records the partition's part of the write.
func (pr *partitionRun) finish() error {
	w := &pr.out.Write
	if pr.dirty {
		w.Clocks[pr.p] = pr.clock
	}
	ids := make([]string, 0, len(pr.index))
	for id := range pr.index {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// The envelopes are cut from shared chunks: one allocation for many
	// customers.
	var buf []byte
	dl := w.Deadlines[pr.p]
	if dl == nil {
		dl = map[string]int64{}
		w.Deadlines[pr.p] = dl
	}
	for _, id := range ids {
		c := pr.custs[id]
		if c == nil || c.env.Partition != pr.p {
			dl[id] = -1
			continue
		}
		if at, ok := c.state.NextDeadline(); ok {
			dl[id] = at.UnixMilli()
		} else {
			dl[id] = -1
		}
		if c.dirty {
			if cap(buf)-len(buf) < c.state.EncodedSizeHint()+32 {
				buf = make([]byte, 0, max(arenaChunk, c.state.EncodedSizeHint()+32))
			}
			from := len(buf)
			buf = store.AppendEnvelopeHeader(buf, c.env.Partition, c.env.Offset)
			var err error
			if buf, err = c.state.AppendBinary(buf); err != nil {
				return fmt.Errorf("encode customer state: %w", err)
			}
			w.States[id] = buf[from:len(buf):len(buf)]
			c.dirty = false
			if c.newProfile != nil {
				w.Profiles[id] = *c.newProfile
				c.newProfile = nil
			}
		}
	}
	if len(dl) == 0 {
		delete(w.Deadlines, pr.p)
	}
	if len(pr.kpi.deltas) > 0 {
		w.KPI[pr.p] = store.KPIWrite{Applied: pr.kpi.to, Deltas: pr.kpi.deltas}
	}
	return nil
}

// arenaChunk is the size of the buffers encoded states are cut from.
const arenaChunk = 256 << 10

// dueEntry is a customer's absence deadline (unix ns) in a partition run's
// queue; entries are ordered by deadline, then customer id.
type dueEntry struct {
	at int64
	c  *customer
}

func (e dueEntry) before(f dueEntry) bool {
	if e.at != f.at {
		return e.at < f.at
	}
	return e.c.id < f.c.id
}

// dueHeap is a binary min-heap of deadlines (typed, so that a push does
// not box its entry as container/heap would).
type dueHeap []dueEntry

func (h *dueHeap) push(e dueEntry) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q[i].before(q[parent]) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
}

func (h *dueHeap) pop() dueEntry {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = dueEntry{}
	q = q[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(q) && q[l].before(q[least]) {
			least = l
		}
		if r < len(q) && q[r].before(q[least]) {
			least = r
		}
		if least == i {
			break
		}
		q[i], q[least] = q[least], q[i]
		i = least
	}
	*h = q
	return top
}
