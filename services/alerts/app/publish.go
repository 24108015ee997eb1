package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// outboxHeader names the header carrying a record's outbox entry id (the
// cw:s:all stream id). Ids grow with the stream, so a consumer may also
// dedupe by it; the publisher reads it back to reconcile.
const outboxHeader = "cw-outbox-id"

// errKilled is returned by a test hook to stop the publisher as kill -9
// would: no position update, no lease release, no renewal.
var errKilled = errors.New("publisher killed (test)")

// publisher copies the all-stream to churnwatch.alerts.v1 (key = customer
// id), remembering in Redis how far it got. The stream is written in the
// same transaction as each alert change, so it is an outbox: a crash
// anywhere between the change and the Kafka write loses nothing. Changes
// made by RPCs and escalations take the same path as signal merges.
//
// Exactly once on the topic, however many instances run:
//   - only the holder of the publisher lease writes (lease.go); the others
//     stand by and take over when it expires;
//   - one bounded batch at a time, produced straight to each partition with
//     no client-side retry, and only while the lease is valid;
//   - the position moves by a CAS on the lease token;
//   - on taking the lease, and after any write or position update whose
//     outcome is unknown, the holder reads back the end of every partition
//     and skips the outbox entries already there (a holder killed after the
//     Kafka write but before the position update, a write that timed out
//     but landed).
type publisher struct {
	rdb       redis.UniversalClient // blocking XREAD: the fan-out's own client
	lease     *lease
	topic     *topicLog
	log       *slog.Logger
	batch     int
	grace     time.Duration
	posKey    string
	streamKey string

	onTakeover  func(context.Context)
	onReconcile func(context.Context, int)
	hook        func(stage string) error // tests: "written" = after the Kafka write, before the position update

	leader atomic.Bool
}

// run stands by until it holds the lease, publishes while it does, and
// releases it on shutdown (leaseLoop, as the receivers' deliverers do).
func (p *publisher) run(ctx context.Context) error {
	leaseLoop(ctx, p.lease, p.log, "publisher", func(hctx context.Context) error {
		if p.onTakeover != nil {
			p.onTakeover(hctx)
		}
		p.leader.Store(true)
		defer p.leader.Store(false)
		return p.publish(hctx)
	})
	return nil
}

// publish is the holder's loop, one batch at a time.
func (p *publisher) publish(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	fail := func(what string, err error) {
		p.log.WarnContext(ctx, "publish alerts: "+what, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	reconcile := true
	var onTopic map[string]bool
	for ctx.Err() == nil {
		if _, ok := p.lease.valid(); !ok {
			return errLeaseLost
		}
		last, err := p.rdb.Get(ctx, p.posKey).Result()
		if errors.Is(err, redis.Nil) {
			last = "0-0"
		} else if err != nil {
			fail("read position", err)
			continue
		}
		if reconcile {
			if onTopic, err = p.topic.since(ctx, last); err != nil {
				fail("reconcile with the topic", err)
				continue
			}
			reconcile = false
			if len(onTopic) > 0 {
				p.log.InfoContext(ctx, "publisher reconciled: outbox entries already on the topic are skipped", "entries", len(onTopic), "position", last)
				if p.onReconcile != nil {
					p.onReconcile(ctx, len(onTopic))
				}
			}
		}
		res, err := p.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{p.streamKey, last}, Count: int64(p.batch), Block: min(2*time.Second, p.lease.renew)}).Result()
		if errors.Is(err, redis.Nil) || ctx.Err() != nil {
			continue
		}
		if err != nil {
			fail("read stream", err)
			continue
		}
		recs, lastID := p.records(ctx, res, onTopic)
		if lastID == "" {
			continue
		}
		// The batch is finished even when shutdown begins mid-write, but
		// never past the lease's validity.
		err = p.write(context.WithoutCancel(ctx), recs)
		if errors.Is(err, errLeaseLost) {
			return err
		}
		if err != nil {
			reconcile = true
			fail("write", err)
			continue
		}
		if p.hook != nil {
			if err := p.hook("written"); err != nil {
				return err
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.grace)
		err = p.lease.commit(cctx, p.posKey, lastID)
		cancel()
		if errors.Is(err, errLeaseLost) {
			return err
		}
		if err != nil {
			reconcile = true // the update may have landed or not
			fail("update position", err)
			continue
		}
		onTopic = nil
		backoff = 50 * time.Millisecond
	}
	return nil
}

// records turns stream entries into records, per partition key, in stream
// order, leaving out those already on the topic; lastID is the last entry
// read.
func (p *publisher) records(ctx context.Context, res []redis.XStream, onTopic map[string]bool) ([]kafka.Message, string) {
	var recs []kafka.Message
	var lastID string
	now := time.Now()
	for _, s := range res {
		for _, x := range s.Messages {
			lastID = x.ID
			if onTopic[x.ID] {
				continue
			}
			e := parseEntry(x)
			key, err := updateCustomer(e.update)
			if err != nil || key == "" {
				p.log.ErrorContext(ctx, "skipping corrupt alert stream entry", "id", x.ID)
				continue
			}
			h := []kafka.Header{{Key: outboxHeader, Value: []byte(x.ID)}}
			if e.tp != "" {
				h = append(h, kafka.Header{Key: "traceparent", Value: []byte(e.tp)})
			}
			m := kafka.Message{Time: now, Key: []byte(key), Value: e.update, Headers: h}
			alertCloudEvent(e.update).Stamp(&m)
			recs = append(recs, m)
		}
	}
	return recs, lastID
}

// write produces one batch, each partition's records in one request, while
// the lease is valid.
func (p *publisher) write(ctx context.Context, recs []kafka.Message) error {
	if len(recs) == 0 {
		return nil
	}
	until, ok := p.lease.valid()
	if !ok {
		return errLeaseLost
	}
	if d := time.Now().Add(p.grace); d.Before(until) {
		until = d
	}
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	return p.topic.produce(ctx, recs)
}

// publishLoop is the publisher worker.
func (a *App) publishLoop(ctx context.Context) error { return a.pub.run(ctx) }

// topicLog is the publisher's access to churnwatch.alerts.v1: plain
// produce and fetch requests, so that nothing is retried or sent behind the
// publisher's back (kafka-go's Writer retries a batch in the background
// after WriteMessages has returned).
type topicLog struct {
	client    *kafka.Client
	transport *kafka.Transport
	topic     string
}

func newTopicLog(cl kafkax.Cluster, topic string) *topicLog {
	tr := cl.Secure(&kafka.Transport{DialTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, MetadataTTL: 5 * time.Second, ClientID: "churnwatch-alerts-publisher"})
	return &topicLog{client: &kafka.Client{Addr: kafka.TCP(cl.Brokers...), Timeout: 10 * time.Second, Transport: tr}, transport: tr, topic: topic}
}

func (t *topicLog) close() { t.transport.CloseIdleConnections() }

func (t *topicLog) partitions(ctx context.Context) ([]int, error) {
	md, err := t.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{t.topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	for _, tp := range md.Topics {
		if tp.Name != t.topic {
			continue
		}
		if tp.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", t.topic, tp.Error)
		}
		n := len(tp.Partitions)
		if n == 0 {
			break
		}
		// Partition ids are 0..n-1; the balancer takes them in order, as
		// kafka-go's Writer does.
		ids := make([]int, n)
		for i := range ids {
			ids[i] = i
		}
		return ids, nil
	}
	return nil, fmt.Errorf("topic %s has no partitions", t.topic)
}

// produce sends recs, all records of a customer to the partition its key
// hashes to (murmur2, as the Java client), in order; it fails if any
// partition's request did.
func (t *topicLog) produce(ctx context.Context, msgs []kafka.Message) error {
	parts, err := t.partitions(ctx)
	if err != nil {
		return err
	}
	bal := &kafka.Murmur2Balancer{}
	byPart := map[int][]kafka.Record{}
	for _, m := range msgs {
		pt := bal.Balance(m, parts...)
		byPart[pt] = append(byPart[pt], kafka.Record{Time: m.Time, Key: kafka.NewBytes(m.Key), Value: kafka.NewBytes(m.Value), Headers: m.Headers})
	}
	errs := make(chan error, len(byPart))
	for pt, rs := range byPart {
		go func() {
			res, err := t.client.Produce(ctx, &kafka.ProduceRequest{Topic: t.topic, Partition: pt, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(rs...)})
			if err == nil {
				err = res.Error
			}
			if err == nil {
				for _, e := range res.RecordErrors {
					err = e
					break
				}
			}
			if err != nil {
				err = fmt.Errorf("produce to partition %d: %w", pt, err)
			}
			errs <- err
		}()
	}
	var all []error
	for range byPart {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// since returns the outbox ids after position that are on the topic. Each
// partition is read backwards from its end, a window at a time, until a
// record at or before position (or one without the header, published
// before it existed) shows that everything earlier is older; records of a
// partition are in stream order because batches are written one at a time.
func (t *topicLog) since(ctx context.Context, position string) (map[string]bool, error) {
	parts, err := t.partitions(ctx)
	if err != nil {
		return nil, err
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, pt := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(pt), kafka.LastOffsetOf(pt))
	}
	offs, err := t.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{t.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	found := map[string]bool{}
	for _, po := range offs.Topics[t.topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets of partition %d: %w", po.Partition, po.Error)
		}
		const window = 500
		for end := po.LastOffset; end > po.FirstOffset; end -= window {
			from := max(po.FirstOffset, end-window)
			older, err := t.scan(ctx, po.Partition, from, end, position, found)
			if err != nil {
				return nil, err
			}
			if older {
				break
			}
		}
	}
	return found, nil
}

// scan reads offsets [from, to) of a partition, adds the outbox ids after
// position to found, and reports whether it met an older record.
func (t *topicLog) scan(ctx context.Context, partition int, from, to int64, position string, found map[string]bool) (bool, error) {
	older := false
	for off := from; off < to; {
		res, err := t.client.Fetch(ctx, &kafka.FetchRequest{Topic: t.topic, Partition: partition, Offset: off, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
		if err != nil {
			return false, fmt.Errorf("fetch partition %d at %d: %w", partition, off, err)
		}
		if res.Error != nil {
			return false, fmt.Errorf("fetch partition %d at %d: %w", partition, off, res.Error)
		}
		n := 0
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return false, fmt.Errorf("read partition %d at %d: %w", partition, off, err)
			}
			if r.Offset < off || r.Offset >= to {
				continue
			}
			n++
			off = r.Offset + 1
			id := ""
			for _, h := range r.Headers {
				if h.Key == outboxHeader {
					id = string(h.Value)
				}
			}
			if id == "" || !idLess(position, id) {
				older = true
			} else {
				found[id] = true
			}
		}
		if n == 0 {
			break // nothing more below the end (a gap, or the end moved)
		}
	}
	return older, nil
}
