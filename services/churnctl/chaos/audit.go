package chaos

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// readTopic calls fn for every record of topic, every partition from its
// first offset to the end it had when the read began.
func readTopic(ctx context.Context, brokers []string, topic string, fn func(kafka.Message)) error {
	ends, err := endOffsets(ctx, brokers, topic)
	if err != nil {
		return err
	}
	for p, end := range ends {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Dialer: kafkax.Plain(brokers).Dialer(), Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 16 << 20,
			MaxWait: 100 * time.Millisecond, StartOffset: kafka.FirstOffset})
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		for {
			m, err := r.FetchMessage(rctx)
			if err != nil {
				cancel()
				r.Close()
				return fmt.Errorf("read %s/%d: %w", topic, p, err)
			}
			fn(m)
			if m.Offset >= end-1 {
				break
			}
		}
		cancel()
		r.Close()
	}
	return nil
}

// endOffsets returns each partition's log end offset.
func endOffsets(ctx context.Context, brokers []string, topic string) (map[int]int64, error) {
	cl := kafkax.Plain(brokers).Client(10 * time.Second)
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	var req []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("metadata %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			req = append(req, kafka.LastOffsetOf(p.ID))
		}
	}
	res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, fmt.Errorf("offsets %s: %w", topic, err)
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// waitQuiet returns when topic's end offsets have not moved for 2 s (the
// alerts publisher has copied everything), or after timeout.
func waitQuiet(ctx context.Context, brokers []string, topic string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last int64 = -1
	since := time.Now()
	for {
		ends, err := endOffsets(ctx, brokers, topic)
		if err == nil {
			var sum int64
			for _, e := range ends {
				sum += e
			}
			if sum != last {
				last, since = sum, time.Now()
			} else if time.Since(since) >= 2*time.Second {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still moving after %s", topic, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// alertLog is what churnwatch.alerts.v1 holds.
type alertLog struct {
	seen map[string]map[int64]int // alert id → version → publications
}

func readAlertLog(ctx context.Context, brokers []string, topic string) (*alertLog, error) {
	l := &alertLog{seen: map[string]map[int64]int{}}
	var bad int
	err := readTopic(ctx, brokers, topic, func(m kafka.Message) {
		u := &cwv1.AlertUpdate{}
		if proto.Unmarshal(m.Value, u) != nil || u.GetAlert().GetAlertId() == "" {
			bad++
			return
		}
		id := u.GetAlert().GetAlertId()
		if l.seen[id] == nil {
			l.seen[id] = map[int64]int{}
		}
		l.seen[id][u.GetAlert().GetVersion()]++
	})
	if bad > 0 && err == nil {
		err = fmt.Errorf("%s: %d records are not AlertUpdates", topic, bad)
	}
	return l, err
}

// duplicates counts publications of an (alert id, version) beyond the first.
func (l *alertLog) duplicates() int {
	n := 0
	for _, vs := range l.seen {
		for _, c := range vs {
			n += c - 1
		}
	}
	return n
}

// missing counts versions absent from the log: per alert, every version
// from 1 to its live version (or the highest published, when that is more)
// must be there. An alert live but never published misses all of them.
func (l *alertLog) missing(live []*cwv1.Alert) int {
	final := map[string]int64{}
	for _, a := range live {
		final[a.GetAlertId()] = a.GetVersion()
	}
	for id, vs := range l.seen {
		for v := range vs {
			final[id] = max(final[id], v)
		}
	}
	n := 0
	for id, top := range final {
		for v := int64(1); v <= top; v++ {
			if l.seen[id][v] == 0 {
				n++
			}
		}
	}
	return n
}

// dlqLog is what the DLQ topic holds.
type dlqLog struct {
	records int
	// sources are the events-topic records the rules service sent there
	// (partition, offset), from the cw-source-* headers.
	sources map[[2]int64]bool
}

func readDLQ(ctx context.Context, brokers []string, topic, eventsTopic string) (*dlqLog, error) {
	d := &dlqLog{sources: map[[2]int64]bool{}}
	err := readTopic(ctx, brokers, topic, func(m kafka.Message) {
		d.records++
		var srcTopic string
		var p, o int64 = -1, -1
		for _, h := range m.Headers {
			switch h.Key {
			case "cw-source-topic":
				srcTopic = string(h.Value)
			case "cw-source-partition":
				p, _ = strconv.ParseInt(string(h.Value), 10, 64)
			case "cw-source-offset":
				o, _ = strconv.ParseInt(string(h.Value), 10, 64)
			}
		}
		if srcTopic == eventsTopic && p >= 0 && o >= 0 {
			d.sources[[2]int64{p, o}] = true
		}
	})
	return d, err
}

// eventLog maps each event id on the events topic to the records carrying
// it (a producer retry may have written one twice).
type eventLog struct {
	at       map[string][][2]int64 // event id → (partition, offset)…
	customer map[string]string     // event id → customer id
	records  int
}

func readEventLog(ctx context.Context, brokers []string, topic string) (*eventLog, error) {
	l := &eventLog{at: map[string][][2]int64{}, customer: map[string]string{}}
	err := readTopic(ctx, brokers, topic, func(m kafka.Message) {
		ev := &cwv1.AccountEvent{}
		if proto.Unmarshal(m.Value, ev) != nil || ev.GetType() == cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED || ev.GetEventId() == "" {
			return
		}
		l.records++
		id := ev.GetEventId()
		l.at[id] = append(l.at[id], [2]int64{int64(m.Partition), m.Offset})
		l.customer[id] = ev.GetCustomerId()
	})
	return l, err
}

// watermark is a customer's stored scoring position: the events partition
// and offset of the last record the rules service applied for it.
type watermark struct {
	partition, offset int64
}

// readWatermarks reads the rules service's state envelope of each
// customer (hash cw:{c:ID}, field s: a version byte, the partition and
// offset as varints, then the engine state — services/rules/internal/store).
func readWatermarks(ctx context.Context, rdb *redis.Client, customers []string) (map[string]watermark, error) {
	out := map[string]watermark{}
	for i := 0; i < len(customers); i += 1000 {
		part := customers[i:min(i+1000, len(customers))]
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(part))
		for j, id := range part {
			cmds[j] = pipe.HGet(ctx, "cw:{c:"+id+"}", "s")
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return nil, fmt.Errorf("read customer states: %w", err)
		}
		for j, c := range cmds {
			b, err := c.Bytes()
			if err != nil || len(b) < 1 || b[0] != 1 {
				continue
			}
			p, n := binary.Varint(b[1:])
			if n <= 0 {
				continue
			}
			o, m := binary.Varint(b[1+n:])
			if m <= 0 {
				continue
			}
			out[part[j]] = watermark{partition: p, offset: o}
		}
	}
	return out, nil
}

// scored counts the accepted events that reached their customer's state:
// the event is on the events topic at a record that the customer's stored
// watermark covers (the rules service processes a customer's records in
// offset order and moves the watermark only past records it applied or
// found already applied) and that it did not send to the DLQ instead.
// An event accepted but lost before the topic, or stuck behind a
// watermark that never reached it, is not counted.
func scored(ids []string, events *eventLog, marks map[string]watermark, dlq *dlqLog) (n int, notOnTopic int) {
	for _, id := range ids {
		recs := events.at[id]
		if len(recs) == 0 {
			notOnTopic++
			continue
		}
		w, ok := marks[events.customer[id]]
		if !ok {
			continue
		}
		for _, r := range recs {
			if r[0] == w.partition && r[1] <= w.offset && !dlq.sources[r] {
				n++
				break
			}
		}
	}
	return n, notOnTopic
}
