// Package intake takes validated account events and customer profiles onto
// Kafka exactly once: it validates each record, drops duplicates by eventId
// (within the request and across requests, restarts and instances, via
// Redis), writes the rest with every in-sync replica's acknowledgement, and
// only then marks them published. Nothing is reported accepted unless it is
// on the topic. It also writes the business-day-close markers.
package intake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// MaxBatch is the most records one call takes (SPEC: batches up to 10,000).
const MaxBatch = 10000

// Errors, mapped to gRPC codes and HTTP statuses at the edge.
var (
	// ErrBatchTooLarge: more than MaxBatch records in one call.
	ErrBatchTooLarge = errors.New("batch too large")
	// ErrBrokerUnavailable: Kafka certainly did not take the failed
	// records; none of them is marked published, a retry is safe.
	ErrBrokerUnavailable = errors.New("kafka unavailable")
	// ErrOutcomeUnknown: Kafka may or may not have taken some records (a
	// timeout, a lost connection); a retry is safe: it writes them again
	// if need be, and the rules service scores an event id once.
	ErrOutcomeUnknown = errors.New("kafka write outcome unknown")
	// ErrInFlight: another running request is publishing some of the
	// batch's event ids; what this call could write is written; retry the
	// batch (the rest then comes back accepted or duplicate).
	ErrInFlight = errors.New("events in flight in another request")
	// ErrDedupUnavailable: Redis could not be asked whether the events are
	// new; nothing was written.
	ErrDedupUnavailable = errors.New("dedup store unavailable")
	// ErrBadDate: a business date that is not YYYY-MM-DD or has not ended.
	ErrBadDate = errors.New("bad business date")
)

// Writer is the part of *kafka.Writer intake uses.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// PartitionLister returns the partition ids of a topic.
type PartitionLister func(ctx context.Context, topic string) ([]int, error)

// Config tunes an Intake.
type Config struct {
	EventsTopic    string
	CustomersTopic string
	// Retention is how long a published eventId is remembered.
	Retention time.Duration
	// PendingTTL bounds a claim held while its Kafka write is in flight; it
	// must outlast the writer's own bounded retries.
	PendingTTL time.Duration
	// InFlightWait is how long a request waits for another request that
	// holds the same eventId to finish before it reports the record
	// retryable.
	InFlightWait time.Duration
	// KeyPrefix prefixes the Redis dedup keys.
	KeyPrefix string
	// DLQTopic receives events reported late.
	DLQTopic string
	// Lateness is the allowed lateness (SPEC §3): an event older than its
	// partition's clock minus this is reported late, not accepted.
	Lateness time.Duration
	// WriteAttempts is how many produce attempts a batch gets (the
	// writers make one each).
	WriteAttempts int
	// LeaseTTL is how long a request's claims outlive the request's last
	// sign of life (a crashed ingester's claims are taken over after it).
	LeaseTTL time.Duration
	// Earliest is the earliest accepted occurredAt (validate.DefaultEarliest
	// when zero).
	Earliest time.Time
}

// Deps are an Intake's collaborators.
type Deps struct {
	Events, Customers, DLQ Writer
	Partitions             PartitionLister
	Redis                  redis.UniversalClient
	Meter                  metric.Meter
	Tracer                 trace.Tracer
	Propagator             propagation.TextMapPropagator
	Log                    *slog.Logger
	// Now is the wall clock (time.Now when nil).
	Now func() time.Time
}

// Intake publishes records. It is safe for concurrent use.
type Intake struct {
	cfg      Config
	deps     Deps
	dedup    *dedup
	m        metrics
	balancer Balancer

	partsMu   sync.Mutex
	parts     []int
	partsRead time.Time
}

type metrics struct {
	records    metric.Int64Counter
	rejections metric.Int64Counter
	writeDur   metric.Float64Histogram
	batchSize  metric.Int64Histogram
}

// New builds an Intake.
func New(cfg Config, d Deps) (*Intake, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "ingest:event:"
	}
	if cfg.Lateness <= 0 {
		cfg.Lateness = 7 * 24 * time.Hour
	}
	if cfg.WriteAttempts < 1 {
		cfg.WriteAttempts = 3
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.EventsTopic + ".dlq"
	}
	if d.DLQ == nil {
		return nil, errors.New("intake: no DLQ writer")
	}
	in := &Intake{cfg: cfg, deps: d, dedup: &dedup{rdb: d.Redis, prefix: cfg.KeyPrefix, retention: cfg.Retention, pendingTTL: cfg.PendingTTL, leaseTTL: cfg.LeaseTTL}}
	var err error
	m := &in.m
	if m.records, err = d.Meter.Int64Counter("churnwatch.ingest.records",
		metric.WithDescription("Records through the ingester by result (accepted, duplicate, rejected).")); err != nil {
		return nil, err
	}
	if m.rejections, err = d.Meter.Int64Counter("churnwatch.ingest.rejections",
		metric.WithDescription("Rejected records by reason.")); err != nil {
		return nil, err
	}
	if m.writeDur, err = d.Meter.Float64Histogram("churnwatch.ingest.kafka.write.duration", metric.WithUnit("s"),
		metric.WithDescription("Kafka write latency of one batch, acknowledged by every in-sync replica."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if m.batchSize, err = d.Meter.Int64Histogram("churnwatch.ingest.batch.size", metric.WithUnit("{record}"),
		metric.WithDescription("Records per ingest call."),
		metric.WithExplicitBucketBoundaries(1, 10, 100, 500, 1000, 2000, 5000, 10000)); err != nil {
		return nil, err
	}
	return in, nil
}

// LoadScripts loads the Redis scripts; call at start (a failure is not
// fatal: they are loaded again when Redis reports them missing).
func (in *Intake) LoadScripts(ctx context.Context) error { return in.dedup.loadScripts(ctx) }

// Result is the fate of one record.
type Result struct {
	// Index is the record's index as numbered by the caller.
	Index  int
	ID     string
	Status cwv1.RecordStatus
	Reason string
	// Code classifies a rejection (metrics label); empty otherwise.
	Code validate.Code
}

// Batch is the outcome of one call.
type Batch struct {
	Accepted, Duplicates, Rejected, Late int
	// Results has one entry per record, in input order.
	Results []Result
}

func (b *Batch) set(i int, r Result) {
	b.Results[i] = r
}

func (b *Batch) count() {
	b.Accepted, b.Duplicates, b.Rejected, b.Late = 0, 0, 0, 0
	for _, r := range b.Results {
		switch r.Status {
		case cwv1.RecordStatus_RECORD_STATUS_ACCEPTED:
			b.Accepted++
		case cwv1.RecordStatus_RECORD_STATUS_DUPLICATE:
			b.Duplicates++
		case cwv1.RecordStatus_RECORD_STATUS_LATE:
			b.Late++
		default:
			b.Rejected++
		}
	}
}

// CodeLate marks a late event (metrics label).
const CodeLate validate.Code = "late"

// CodeNotAttempted marks a good record of an all-or-nothing batch that was
// refused because another record was bad.
const CodeNotAttempted validate.Code = "all_or_nothing"

type candidate struct {
	index int
	ev    *cwv1.AccountEvent
}

// PublishEvents validates and publishes a batch of events. number maps a
// record's position in events to the index reported for it (StreamEvents
// numbers records across its batches, HTTP by position in the body); nil
// keeps positions.
// The error is ErrBatchTooLarge, ErrDedupUnavailable, ErrBrokerUnavailable
// or the context's; on error no result is reported and a retry of the whole
// batch is safe (what did reach the topic comes back as duplicate).
func (in *Intake) PublishEvents(ctx context.Context, events []*cwv1.IncomingEvent, allOrNothing bool, number func(int) int) (*Batch, error) {
	if number == nil {
		number = func(i int) int { return i }
	}
	if len(events) > MaxBatch {
		return nil, fmt.Errorf("%w: %d events, at most %d", ErrBatchTooLarge, len(events), MaxBatch)
	}
	in.m.batchSize.Record(ctx, int64(len(events)), metric.WithAttributes(attribute.String("kind", "events")))
	now := in.deps.Now()
	b := &Batch{Results: make([]Result, len(events))}
	cands := make([]candidate, 0, len(events))
	first := make(map[string]int, len(events))
	firstBad := -1
	for i, raw := range events {
		ev, verr := validate.Checker{Earliest: in.cfg.Earliest}.Event(raw, now)
		if verr != nil {
			b.set(i, Result{Index: number(i), ID: raw.GetEventId(), Status: cwv1.RecordStatus_RECORD_STATUS_REJECTED, Reason: verr.Error(), Code: verr.Code})
			if firstBad < 0 {
				firstBad = i
			}
			continue
		}
		if j, dup := first[ev.EventId]; dup {
			b.set(i, Result{Index: number(i), ID: ev.EventId, Status: cwv1.RecordStatus_RECORD_STATUS_DUPLICATE,
				Reason: "same eventId as record " + strconv.Itoa(number(j)) + " of this request"})
			continue
		}
		first[ev.EventId] = i
		cands = append(cands, candidate{index: i, ev: ev})
	}
	if allOrNothing && firstBad >= 0 {
		for _, c := range cands {
			b.set(c.index, Result{Index: number(c.index), ID: c.ev.EventId, Status: cwv1.RecordStatus_RECORD_STATUS_REJECTED,
				Reason: fmt.Sprintf("not published: the batch is all-or-nothing and record %d was rejected", number(firstBad)), Code: CodeNotAttempted})
		}
		cands = nil
	}
	if err := in.publishEvents(ctx, cands, b, number); err != nil {
		return nil, err
	}
	b.count()
	in.countResults(ctx, b)
	return b, nil
}

// CountDecodeRejects counts records refused before validation because they
// could not be decoded (HTTP bodies).
func (in *Intake) CountDecodeRejects(ctx context.Context, n int) {
	in.CountRejects(ctx, validate.CodeDecode, n)
}

// CountRejects counts n records rejected at the edge with code.
func (in *Intake) CountRejects(ctx context.Context, code validate.Code, n int) {
	if n == 0 {
		return
	}
	in.m.records.Add(ctx, int64(n), metric.WithAttributes(attribute.String("result", "rejected")))
	in.m.rejections.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", string(code))))
}

func (in *Intake) countResults(ctx context.Context, b *Batch) {
	add := func(result string, n int) {
		if n > 0 {
			in.m.records.Add(ctx, int64(n), metric.WithAttributes(attribute.String("result", result)))
		}
	}
	add("accepted", b.Accepted)
	add("duplicate", b.Duplicates)
	add("rejected", b.Rejected)
	add("late", b.Late)
	if b.Rejected == 0 {
		return
	}
	byCode := map[validate.Code]int64{}
	for _, r := range b.Results {
		if r.Status == cwv1.RecordStatus_RECORD_STATUS_REJECTED {
			byCode[r.Code]++
		}
	}
	for c, n := range byCode {
		in.m.rejections.Add(ctx, n, metric.WithAttributes(attribute.String("reason", string(c))))
	}
}

// publishEvents claims, judges, writes and marks the candidates, filling b.
func (in *Intake) publishEvents(ctx context.Context, cands []candidate, b *Batch, number func(int) int) error {
	if len(cands) == 0 {
		return nil
	}
	token := newToken()
	stopLease, err := in.dedup.lease(ctx, token)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %v", ErrDedupUnavailable, err)
	}
	defer stopLease()
	waitUntil := time.Now().Add(in.cfg.InFlightWait)
	backoff := 20 * time.Millisecond
	var toWrite, busy []candidate
	for len(cands) > 0 {
		states, err := in.dedup.claim(ctx, candidateIDs(cands), token)
		if err != nil {
			in.releaseDetached(ctx, candidateIDs(toWrite), token)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %v", ErrDedupUnavailable, err)
		}
		var waiting []candidate
		for i, c := range cands {
			switch states[i] {
			case claimed:
				toWrite = append(toWrite, c)
			case published:
				b.set(c.index, Result{Index: number(c.index), ID: c.ev.EventId, Status: cwv1.RecordStatus_RECORD_STATUS_DUPLICATE, Reason: "already published"})
			case lateMarked:
				b.set(c.index, Result{Index: number(c.index), ID: c.ev.EventId, Status: cwv1.RecordStatus_RECORD_STATUS_LATE,
					Reason: "reported late before: older than its partition clock minus the allowed lateness; it went to the DLQ and will not be scored", Code: CodeLate})
			case inFlight:
				waiting = append(waiting, c)
			}
		}
		cands = waiting
		if len(cands) == 0 {
			break
		}
		// Another request that is still running holds these ids. Its claim
		// ends within its bounded write; then they are published
		// (duplicate) or free again (ours to write). Reporting anything for
		// them now could be wrong, so the call fails retryable once the
		// records it could write are written.
		if time.Now().Add(backoff).After(waitUntil) {
			busy = cands
			break
		}
		select {
		case <-ctx.Done():
			in.releaseDetached(ctx, candidateIDs(toWrite), token)
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
	if err := in.writeClaimed(ctx, toWrite, token, b, number); err != nil {
		return err
	}
	if len(busy) > 0 {
		return fmt.Errorf("%w: %d of the batch's events are being published by another request right now (first %q)",
			ErrInFlight, len(busy), busy[0].ev.EventId)
	}
	return nil
}

// writeClaimed judges the claimed candidates against their partitions'
// clocks, writes those in time to the events topic (stamped with the clock
// they were judged by) and the late ones to the DLQ, and marks them.
func (in *Intake) writeClaimed(ctx context.Context, toWrite []candidate, token string, b *Batch, number func(int) int) error {
	if len(toWrite) == 0 {
		return nil
	}
	// Keep the input order: per customer, Kafka keeps what we send in order.
	slices.SortFunc(toWrite, func(a, c candidate) int { return a.index - c.index })

	parts, err := in.partitions(ctx)
	if err != nil {
		in.releaseDetached(ctx, candidateIDs(toWrite), token)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: not written: partitions of %s: %v", ErrBrokerUnavailable, in.cfg.EventsTopic, err)
	}
	partOf := make([]int, len(toWrite))
	times := map[int][]int64{}
	for i, c := range toWrite {
		partOf[i] = in.balancer.Balance(kafka.Message{Key: []byte(c.ev.CustomerId)}, parts...)
		times[partOf[i]] = append(times[partOf[i]], c.ev.OccurredAt.AsTime().UnixMilli())
	}
	verdicts, err := in.dedup.clocks(ctx, in.cfg.EventsTopic, in.cfg.Lateness.Milliseconds(), times)
	if err != nil {
		in.releaseDetached(ctx, candidateIDs(toWrite), token)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %v", ErrDedupUnavailable, err)
	}

	ctx, span := in.deps.Tracer.Start(ctx, "produce "+in.cfg.EventsTopic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", in.cfg.EventsTopic),
			attribute.Int("messaging.batch.message_count", len(toWrite))))
	defer span.End()
	var headers []kafka.Header
	in.deps.Propagator.Inject(ctx, kafkax.HeaderCarrier{Headers: &headers})
	ingested := timestamppb.New(in.deps.Now())
	var accepted, late []candidate
	var msgs, dead []kafka.Message
	next := map[int]int{}
	for i, c := range toWrite {
		p := partOf[i]
		clock := verdicts[p][next[p]]
		next[p]++
		c.ev.IngestedAt, c.ev.AcceptedClock = ingested, nil
		if clock >= 0 {
			c.ev.AcceptedClock = timestamppb.New(time.UnixMilli(clock))
		}
		v, err := proto.Marshal(c.ev)
		if err != nil {
			in.releaseDetached(ctx, candidateIDs(toWrite), token)
			return fmt.Errorf("encode event: %w", err)
		}
		ce := eventCloudEvent(c.ev)
		if clock < 0 {
			late = append(late, c)
			dead = append(dead, in.lateRecord(c, v, p, headers, ce))
			continue
		}
		accepted = append(accepted, c)
		// The trace context is the batch's. The partition is the one whose
		// clock judged the event.
		m := kafka.Message{Key: []byte(c.ev.CustomerId), Value: v, Headers: headers, WriterData: Pinned(p)}
		ce.Stamp(&m)
		msgs = append(msgs, m)
	}

	written, failed, unknown, werr := in.write(ctx, in.deps.Events, in.cfg.EventsTopic, msgs)
	var dlqWritten, dlqFailed, dlqUnknown []int
	var derr error
	if len(dead) > 0 {
		dlqWritten, dlqFailed, dlqUnknown, derr = in.write(ctx, in.deps.DLQ, in.cfg.DLQTopic, dead)
	}
	if ctx.Err() != nil && (len(failed)+len(unknown)+len(dlqFailed)+len(dlqUnknown) > 0) {
		// The caller left while records were queued: the writer may still
		// deliver them, so the claims stay until they expire or a retry
		// takes them over (this request's lease ends with it).
		span.SetStatus(codes.Error, "caller cancelled")
		in.promoteDetached(ctx, candidateIDs(pick(accepted, written)))
		return ctx.Err()
	}
	in.promoteDetached(ctx, candidateIDs(pick(accepted, written)))
	if err := in.dedup.markLate(context.WithoutCancel(ctx), candidateIDs(pick(late, dlqWritten))); err != nil {
		// The next try of these ids is judged again: late again, since a
		// clock only moves forward, and dead-lettered a second time.
		in.deps.Log.WarnContext(ctx, "could not mark late events", "events", len(dlqWritten), "err", err)
	}
	// Records that certainly did not reach the topic are free for a retry;
	// those that may have stay claimed by this request, whose lease ends
	// now, so that a retry takes them over and writes them (again).
	in.releaseDetached(ctx, append(candidateIDs(pick(accepted, failed)), candidateIDs(pick(late, dlqFailed))...), token)
	if n := len(failed) + len(unknown) + len(dlqFailed) + len(dlqUnknown); n > 0 {
		err := errors.Join(werr, derr)
		span.RecordError(err)
		span.SetStatus(codes.Error, "kafka write failed")
		in.deps.Log.WarnContext(ctx, "kafka write failed", "topic", in.cfg.EventsTopic, "not_written", len(failed)+len(dlqFailed),
			"outcome_unknown", len(unknown)+len(dlqUnknown), "written", len(written)+len(dlqWritten), "err", err)
		if len(unknown)+len(dlqUnknown) > 0 {
			return fmt.Errorf("%w: %d of %d events may or may not have been written (%d certainly not): %v",
				ErrOutcomeUnknown, len(unknown)+len(dlqUnknown), len(toWrite), len(failed)+len(dlqFailed), err)
		}
		return fmt.Errorf("%w: not written: %d of %d events: %v", ErrBrokerUnavailable, n, len(toWrite), err)
	}
	for _, c := range accepted {
		b.set(c.index, Result{Index: number(c.index), ID: c.ev.EventId, Status: cwv1.RecordStatus_RECORD_STATUS_ACCEPTED})
	}
	for _, c := range late {
		b.set(c.index, Result{Index: number(c.index), ID: c.ev.EventId, Status: cwv1.RecordStatus_RECORD_STATUS_LATE, Code: CodeLate,
			Reason: fmt.Sprintf("late: occurredAt is more than the allowed lateness (%s) behind its partition's clock; it went to the DLQ and will not be scored", in.cfg.Lateness)})
	}
	return nil
}

// lateRecord is the DLQ record of a late event, built like every
// consumer's (kafkax.DeadLetter); cw-source-offset -1: it never was on the
// events topic.
func (in *Intake) lateRecord(c candidate, v []byte, partition int, headers []kafka.Header, ce kafkax.CloudEvent) kafka.Message {
	m := kafka.Message{Key: []byte(c.ev.CustomerId), Value: v, Headers: headers, Partition: partition, Offset: -1}
	ce.Stamp(&m)
	return kafkax.DeadLetter(&m, in.cfg.EventsTopic, "too_late",
		"too late: more than the allowed lateness ("+in.cfg.Lateness.String()+") behind the partition clock at intake")
}

func pick(cs []candidate, idx []int) []candidate {
	out := make([]candidate, len(idx))
	for i, j := range idx {
		out[i] = cs[j]
	}
	return out
}

// write produces msgs with up to cfg.WriteAttempts attempts (the writer
// itself makes one), retrying only the records not yet written, and sorts
// them by index into written, failed (no attempt can have written it) and
// unknown (an attempt ended so that it may be on the topic: a timeout, a
// lost connection, a broker that appended but could not replicate).
func (in *Intake) write(ctx context.Context, w Writer, topic string, msgs []kafka.Message) (written, failed, unknown []int, err error) {
	if len(msgs) == 0 {
		return nil, nil, nil, nil
	}
	maybe := make([]bool, len(msgs))
	pending := make([]int, len(msgs))
	for i := range pending {
		pending[i] = i
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		batch := make([]kafka.Message, len(pending))
		for i, j := range pending {
			batch[i] = msgs[j]
		}
		start := time.Now()
		werr := w.WriteMessages(ctx, batch...)
		in.recordWrite(ctx, topic, start, werr)
		var wes kafka.WriteErrors
		var still []int
		switch {
		case werr == nil:
			written = append(written, pending...)
		case errors.As(werr, &wes) && len(wes) == len(batch):
			for i, j := range pending {
				if wes[i] == nil {
					written = append(written, j)
					continue
				}
				if !notWritten(wes[i]) {
					maybe[j] = true
				}
				still = append(still, j)
			}
		default:
			for _, j := range pending {
				if !notWritten(werr) {
					maybe[j] = true
				}
			}
			still = pending
		}
		err = werr
		pending = still
		if len(pending) == 0 || attempt >= in.cfg.WriteAttempts || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
	for _, j := range pending {
		if maybe[j] {
			unknown = append(unknown, j)
		} else {
			failed = append(failed, j)
		}
	}
	sort.Ints(written)
	return written, failed, unknown, firstErr(err)
}

// notWritten reports whether a produce error proves the record was not
// appended: the broker refused it before writing (no leader here, not
// enough in-sync replicas, unknown topic, too large, not authorised) or no
// connection could be made. Timeouts, lost connections and "appended but
// not replicated" prove nothing.
func notWritten(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafka.NotEnoughReplicas, kafka.LeaderNotAvailable, kafka.NotLeaderForPartition, kafka.UnknownTopicOrPartition,
			kafka.MessageSizeTooLarge, kafka.RecordListTooLarge, kafka.InvalidTopic, kafka.InvalidRequiredAcks,
			kafka.TopicAuthorizationFailed, kafka.InvalidMessage, kafka.InvalidRecord, kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch:
			return true
		}
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	// A closed writer queues nothing.
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.ErrClosedPipe)
}

func firstErr(err error) error {
	var wes kafka.WriteErrors
	if errors.As(err, &wes) {
		for _, e := range wes {
			if e != nil {
				return e
			}
		}
	}
	return err
}

func candidateIDs(cs []candidate) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ev.EventId
	}
	return ids
}

func (in *Intake) recordWrite(ctx context.Context, topic string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	in.m.writeDur.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("topic", topic), attribute.String("outcome", outcome)))
}

// promoteDetached marks written events published. The records are on the
// topic whatever happens here, so it retries for a while even if the caller
// has gone; if Redis stays down the claims expire and a later retry of the
// same events could publish a second copy (consumers dedupe by eventId).
func (in *Intake) promoteDetached(ctx context.Context, ids []string) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.PendingTTL/2)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		err := in.dedup.promote(pctx, ids)
		if err == nil {
			return
		}
		select {
		case <-pctx.Done():
			in.deps.Log.ErrorContext(ctx, "could not mark published events in Redis; a retry within the claim lifetime is safe, later ones may duplicate",
				"events", len(ids), "err", err)
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (in *Intake) releaseDetached(ctx context.Context, ids []string, token string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := in.dedup.release(rctx, ids, token); err != nil {
		// The claims expire after PendingTTL; until then a retry waits.
		in.deps.Log.WarnContext(ctx, "could not release dedup claims", "events", len(ids), "err", err)
	}
}

// partitions returns the events topic's partitions, read at most every
// few seconds.
func (in *Intake) partitions(ctx context.Context) ([]int, error) {
	in.partsMu.Lock()
	defer in.partsMu.Unlock()
	if in.parts != nil && time.Since(in.partsRead) < 5*time.Second {
		return in.parts, nil
	}
	ps, err := in.deps.Partitions(ctx, in.cfg.EventsTopic)
	if err != nil {
		if in.parts != nil {
			return in.parts, nil // the count does not change under us in practice
		}
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", in.cfg.EventsTopic)
	}
	ps = slices.Clone(ps)
	sort.Ints(ps)
	in.parts, in.partsRead = ps, time.Now()
	return ps, nil
}

// UpsertCustomers validates and publishes customer profiles to the
// compacted customers topic (key customerId). Profiles need no dedup: a
// later record replaces the earlier one, so a replay changes nothing.
func (in *Intake) UpsertCustomers(ctx context.Context, customers []*cwv1.IncomingCustomer) (*Batch, error) {
	if len(customers) > MaxBatch {
		return nil, fmt.Errorf("%w: %d customers, at most %d", ErrBatchTooLarge, len(customers), MaxBatch)
	}
	in.m.batchSize.Record(ctx, int64(len(customers)), metric.WithAttributes(attribute.String("kind", "customers")))
	now := in.deps.Now()
	b := &Batch{Results: make([]Result, len(customers))}
	var msgs, inOrder []kafka.Message
	var idx []int
	ctx, span := in.deps.Tracer.Start(ctx, "produce "+in.cfg.CustomersTopic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", in.cfg.CustomersTopic)))
	defer span.End()
	var headers []kafka.Header
	in.deps.Propagator.Inject(ctx, kafkax.HeaderCarrier{Headers: &headers})
	for i, raw := range customers {
		p, verr := validate.Customer(raw, now)
		if verr != nil {
			b.set(i, Result{Index: i, ID: raw.GetCustomerId(), Status: cwv1.RecordStatus_RECORD_STATUS_REJECTED, Reason: verr.Error(), Code: verr.Code})
			continue
		}
		v, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encode customer: %w", err)
		}
		m := kafka.Message{Key: []byte(p.CustomerId), Value: v, Headers: headers}
		profileCloudEvent(p, p).Stamp(&m)
		msgs = append(msgs, m)
		// The same profile in event order, on the customer's events
		// partition: every event accepted after this call is scored with
		// it (SPEC §4), however far the customers topic's consumers lag.
		pev := &cwv1.AccountEvent{
			EventId:    "profile:" + p.CustomerId + ":" + strconv.FormatInt(p.GetUpdatedAt().AsTime().UnixNano(), 10),
			CustomerId: p.CustomerId,
			Type:       cwv1.EventType_EVENT_TYPE_PROFILE_UPDATED,
			Profile:    p,
			IngestedAt: timestamppb.New(now),
		}
		rec, err := proto.Marshal(pev)
		if err != nil {
			return nil, fmt.Errorf("encode profile record: %w", err)
		}
		m = kafka.Message{Key: []byte(p.CustomerId), Value: rec, Headers: headers}
		profileCloudEvent(p, pev).Stamp(&m)
		inOrder = append(inOrder, m)
		idx = append(idx, i)
	}
	if len(msgs) > 0 {
		start := time.Now()
		err := in.deps.Customers.WriteMessages(ctx, msgs...)
		in.recordWrite(ctx, in.cfg.CustomersTopic, start, err)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "kafka write failed")
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %v", ErrOutcomeUnknown, firstErr(err))
		}
		// Profiles are idempotent: a retry of the whole call is always safe.
		_, failed, unknown, err := in.write(ctx, in.deps.Events, in.cfg.EventsTopic, inOrder)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if len(failed)+len(unknown) > 0 {
			span.RecordError(err)
			span.SetStatus(codes.Error, "kafka write failed")
			return nil, fmt.Errorf("%w: %d of %d profiles not yet on the events topic: %v", ErrOutcomeUnknown, len(failed)+len(unknown), len(inOrder), err)
		}
	}
	for _, i := range idx {
		b.set(i, Result{Index: i, ID: customers[i].GetCustomerId(), Status: cwv1.RecordStatus_RECORD_STATUS_ACCEPTED})
	}
	b.count()
	in.countResults(ctx, b)
	return b, nil
}

// Pinned, set as a message's WriterData, sends it to that partition: the
// events writer's balancer honours it (kafka-go ignores Message.Partition
// on a Writer). WriterData never goes on the wire.
type Pinned int

// Balancer hashes keys like the Java client (murmur2) except for messages
// pinned to a partition.
type Balancer struct{ hash kafka.Murmur2Balancer }

// Balance implements kafka.Balancer.
func (b *Balancer) Balance(msg kafka.Message, partitions ...int) int {
	if p, ok := msg.WriterData.(Pinned); ok && slices.Contains(partitions, int(p)) {
		return int(p)
	}
	return b.hash.Balance(msg, partitions...)
}

// BusinessDay parses a business date (YYYY-MM-DD) and returns the clock
// its close sets: the next midnight, UTC.
func BusinessDay(date string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, date)
	if err != nil || d.Format(time.DateOnly) != date {
		return time.Time{}, fmt.Errorf("%w: %q is not a date YYYY-MM-DD", ErrBadDate, date)
	}
	return d.AddDate(0, 0, 1), nil
}

// CloseBusinessDay writes one BUSINESS_DAY_CLOSED marker to every partition
// of the events topic, so that quiet partitions' clocks advance too. A day
// that has not ended (beyond the 5 minutes of clock skew events may have)
// is refused: it would move event time past the wall clock.
func (in *Intake) CloseBusinessDay(ctx context.Context, date string) (int, time.Time, error) {
	clock, err := BusinessDay(date)
	if err != nil {
		return 0, time.Time{}, err
	}
	now := in.deps.Now()
	if clock.After(now.Add(validate.MaxFutureSkew)) {
		return 0, time.Time{}, fmt.Errorf("%w: %s has not ended yet", ErrBadDate, date)
	}
	parts, err := in.deps.Partitions(ctx, in.cfg.EventsTopic)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%w: partitions of %s: %v", ErrBrokerUnavailable, in.cfg.EventsTopic, err)
	}
	ctx, span := in.deps.Tracer.Start(ctx, "produce "+in.cfg.EventsTopic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", in.cfg.EventsTopic),
			attribute.String("churnwatch.business_day", date)))
	defer span.End()
	var headers []kafka.Header
	in.deps.Propagator.Inject(ctx, kafkax.HeaderCarrier{Headers: &headers})
	msgs := make([]kafka.Message, 0, len(parts))
	for _, p := range parts {
		ev := &cwv1.AccountEvent{
			EventId:    fmt.Sprintf("business-day-closed:%s:%d", date, p),
			OccurredAt: timestamppb.New(clock),
			Type:       cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED,
			IngestedAt: timestamppb.New(now),
		}
		v, err := proto.Marshal(ev)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("encode marker: %w", err)
		}
		m := kafka.Message{Value: v, Headers: headers, WriterData: Pinned(p)}
		eventCloudEvent(ev).Stamp(&m)
		msgs = append(msgs, m)
	}
	start := time.Now()
	werr := in.deps.Events.WriteMessages(ctx, msgs...)
	in.recordWrite(ctx, in.cfg.EventsTopic, start, werr)
	if werr != nil {
		span.RecordError(werr)
		span.SetStatus(codes.Error, "kafka write failed")
		if ctx.Err() != nil {
			return 0, time.Time{}, ctx.Err()
		}
		// Markers are idempotent (a clock only moves forward): a retry is safe.
		return 0, time.Time{}, fmt.Errorf("%w: %v", ErrOutcomeUnknown, firstErr(werr))
	}
	// The ingester's clocks move with the markers, as the rules service's do.
	times := make(map[int][]int64, len(parts))
	for _, p := range parts {
		times[p] = []int64{clock.UnixMilli()}
	}
	if _, err := in.dedup.clocks(ctx, in.cfg.EventsTopic, in.cfg.Lateness.Milliseconds(), times); err != nil {
		if ctx.Err() != nil {
			return 0, time.Time{}, ctx.Err()
		}
		return 0, time.Time{}, fmt.Errorf("%w: the markers are written; moving the intake clocks failed (retry: it is safe): %v", ErrDedupUnavailable, err)
	}
	return len(parts), clock, nil
}
