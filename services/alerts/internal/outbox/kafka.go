package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/internal/store"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// Header names the header carrying a record's outbox entry id (the
// cw:{alerts}:s:all stream id). Ids grow with the stream, so a consumer may
// also dedupe by it; the publisher reads it back to reconcile.
const Header = "cw-outbox-id"

// Kafka is the Sink that copies the outbox to churnwatch.alerts.v1 (key =
// customer id). Changes made by RPCs and escalations take the same path
// as signal merges.
//
// Exactly once on the topic, however many instances run:
//   - only the holder of the publisher lease writes (Runner); the others
//     stand by and take over when it expires;
//   - one bounded batch at a time, produced straight to each partition with
//     no client-side retry, and only while the lease is valid;
//   - the position moves by a CAS on the lease token;
//   - on taking the lease, and after any write whose outcome is unknown,
//     the holder reads back the end of every partition and skips the
//     outbox entries already there (a holder killed after the Kafka write
//     but before the position update, a write that timed out but landed).
type Kafka struct {
	topic *topicLog
	log   *slog.Logger
	grace time.Duration

	onReconcile func(context.Context, int)
	onTopic     map[string]bool // outbox ids after the position found on the topic
}

// NewKafka publishes to topic on cluster; a write is bounded by grace (and
// the lease). onReconcile (may be nil) counts entries found on the topic.
func NewKafka(cluster kafkax.Cluster, topic string, log *slog.Logger, grace time.Duration, onReconcile func(context.Context, int)) *Kafka {
	return &Kafka{topic: newTopicLog(cluster, topic), log: log, grace: grace, onReconcile: onReconcile}
}

// Close releases the publisher's connections.
func (k *Kafka) Close() { k.topic.close() }

// Reconcile finds the outbox entries after position already on the topic;
// Deliver skips them.
func (k *Kafka) Reconcile(ctx context.Context, position string) error {
	onTopic, err := k.topic.since(ctx, position)
	if err != nil {
		return fmt.Errorf("with the topic: %w", err)
	}
	k.onTopic = onTopic
	if len(onTopic) > 0 {
		k.log.InfoContext(ctx, "publisher reconciled: outbox entries already on the topic are skipped", "entries", len(onTopic), "position", position)
		if k.onReconcile != nil {
			k.onReconcile(ctx, len(onTopic))
		}
	}
	return nil
}

// Deliver publishes the batch, leaving out what is on the topic already.
func (k *Kafka) Deliver(ctx context.Context, lease Validity, entries []store.Entry) (int, error) {
	recs := k.records(ctx, entries)
	// The batch is finished even when shutdown begins mid-write, but
	// never past the lease's validity.
	if err := k.write(context.WithoutCancel(ctx), lease, recs); err != nil {
		return 0, err
	}
	k.onTopic = nil
	return len(entries), nil
}

// records turns stream entries into records, per partition key, in stream
// order, leaving out those already on the topic.
func (k *Kafka) records(ctx context.Context, entries []store.Entry) []kafka.Message {
	var recs []kafka.Message
	now := time.Now()
	for _, e := range entries {
		if k.onTopic[e.ID] {
			continue
		}
		u, err := e.Decode()
		if err != nil || u.GetAlert().GetCustomerId() == "" {
			k.log.ErrorContext(ctx, "skipping corrupt alert stream entry", "id", e.ID)
			continue
		}
		h := []kafka.Header{{Key: Header, Value: []byte(e.ID)}}
		if e.Traceparent != "" {
			h = append(h, kafka.Header{Key: "traceparent", Value: []byte(e.Traceparent)})
		}
		m := kafka.Message{Time: now, Key: []byte(u.GetAlert().GetCustomerId()), Value: e.Update, Headers: h}
		alertCloudEvent(u).Stamp(&m)
		recs = append(recs, m)
	}
	return recs
}

// write produces one batch, each partition's records in one request, while
// the lease is valid.
func (k *Kafka) write(ctx context.Context, lease Validity, recs []kafka.Message) error {
	if len(recs) == 0 {
		return nil
	}
	until, ok := lease.Valid()
	if !ok {
		return store.ErrLeaseLost
	}
	if d := time.Now().Add(k.grace); d.Before(until) {
		until = d
	}
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	return k.topic.produce(ctx, recs)
}

// alertCloudEvent is the CloudEvents identity of an outbox entry's
// AlertUpdate: ce_id alertId.vN, what a consumer
// dedupes by (exactly once per alert version).
func alertCloudEvent(u *cwv1.AlertUpdate) kafkax.CloudEvent {
	a := u.GetAlert()
	var at time.Time
	if u.GetAt() != nil {
		at = u.GetAt().AsTime()
	}
	return kafkax.CloudEvent{
		Type:    kafkax.AlertType(u.GetChange().String()),
		Source:  kafkax.Source("alerts"),
		ID:      a.GetAlertId() + ".v" + strconv.FormatInt(a.GetVersion(), 10),
		Time:    at,
		Subject: a.GetCustomerId(),
		Data:    u,
	}
}

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
				if h.Key == Header {
					id = string(h.Value)
				}
			}
			if id == "" || !store.IDLess(position, id) {
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
