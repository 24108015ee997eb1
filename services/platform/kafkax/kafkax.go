// Package kafkax holds churnwatch's kafka-go conventions: writers that wait
// for every in-sync replica and do not linger a second per batch, group
// readers that never auto-commit, batched fetching, topic creation, consumer
// lag, W3C trace context carried in record headers, and the one
// batch-consumer loop (BatchConsumer) with its dead-letter policy.
package kafkax

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
)

// HeaderCarrier is a propagation.TextMapCarrier over a message's headers.
type HeaderCarrier struct{ Headers *[]kafka.Header }

// Get returns the first header value with key.
func (c HeaderCarrier) Get(key string) string {
	for _, h := range *c.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces or adds a header.
func (c HeaderCarrier) Set(key, value string) {
	for i, h := range *c.Headers {
		if h.Key == key {
			(*c.Headers)[i].Value = []byte(value)
			return
		}
	}
	*c.Headers = append(*c.Headers, kafka.Header{Key: key, Value: []byte(value)})
}

// Keys lists header keys.
func (c HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(*c.Headers))
	for _, h := range *c.Headers {
		out = append(out, h.Key)
	}
	return out
}

// Header returns the value of a header of m, or "".
func Header(m kafka.Message, key string) string {
	return HeaderCarrier{Headers: &m.Headers}.Get(key)
}

// NewWriter returns a writer for topic that hashes keys like the Java client
// (murmur2), waits for all in-sync replicas, and flushes after a few ms.
// Its BatchSize (5,000 records per partition and request) suits bulk
// producers; kafka-go allocates room for a whole batch per partition and
// request, so a writer that mostly sends a few records should lower it
// (SmallWriter).
func NewWriter(cl Cluster, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(cl.Brokers...),
		Transport:              cl.Transport(),
		Topic:                  topic,
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           2 * time.Millisecond,
		BatchSize:              5000,
		BatchBytes:             1 << 20, // a broker's default message.max.bytes (1 MiB + 12) bounds one partition's record batch
		MaxAttempts:            5,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
	}
}

// SmallWriter is NewWriter for a topic that gets a few records at a time
// (signals, alert changes, dead letters).
func SmallWriter(cl Cluster, topic string) *kafka.Writer {
	w := NewWriter(cl, topic)
	w.BatchSize = 500
	return w
}

// ReaderConfig returns a consumer-group reader configuration that commits
// only when told to (CommitMessages after the state write) and starts at the
// earliest offset for a new group.
func ReaderConfig(cl Cluster, group, topic string) kafka.ReaderConfig {
	return kafka.ReaderConfig{
		Brokers:       cl.Brokers,
		Dialer:        cl.Dialer(),
		GroupID:       group,
		Topic:         topic,
		MinBytes:      1,
		MaxBytes:      16 << 20,
		MaxWait:       50 * time.Millisecond,
		QueueCapacity: 20000,
		// Commits are sent in the background every 200 ms; callers still call
		// CommitMessages only after their state write is durable, so a crash
		// can only redeliver (which every consumer treats idempotently), and
		// the batch loop does not wait a broker round trip per batch.
		// Close flushes the outstanding commit.
		CommitInterval: 200 * time.Millisecond,
		StartOffset:    kafka.FirstOffset,
		// kafka-go's default 5 s makes every start of a group slow: it waits for
		// other members to join. One instance per process here; 1 s still lets
		// peers join on a real cluster.
		JoinGroupBackoff:  500 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		ReadBackoffMin:    10 * time.Millisecond,
		ReadBackoffMax:    200 * time.Millisecond,
	}
}

// Fetcher is the part of *kafka.Reader that FetchBatch needs.
type Fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
}

// FetchBatch blocks for the first message, then takes whatever else arrives
// within linger, up to max messages. It returns the messages read so far with
// the error that stopped it, if any.
func FetchBatch(ctx context.Context, r Fetcher, max int, linger time.Duration) ([]kafka.Message, error) {
	return FetchBatchInto(ctx, r, nil, max, linger)
}

// FetchBatchInto is FetchBatch appending to buf[:0], so that a consumer can
// reuse the memory of a batch it is done with.
func FetchBatchInto(ctx context.Context, r Fetcher, buf []kafka.Message, max int, linger time.Duration) ([]kafka.Message, error) {
	first, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := append(buf[:0], first)
	lctx, cancel := context.WithTimeout(ctx, linger)
	defer cancel()
	for len(batch) < max {
		m, err := r.FetchMessage(lctx)
		if err != nil {
			if lctx.Err() != nil && ctx.Err() == nil {
				return batch, nil
			}
			return batch, err
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// PartitionLag is one partition's committed offset against its end.
type PartitionLag struct {
	Topic     string
	Partition int
	Committed int64
	End       int64
	Lag       int64
}

// GroupLag reads the committed offsets of group on topic and the log end
// offsets, one request each.
func GroupLag(ctx context.Context, c Cluster, group, topic string) ([]PartitionLag, error) {
	cl := c.Client(5 * time.Second)
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return nil, fmt.Errorf("metadata %s: %w", topic, t.Error)
			}
			for _, p := range t.Partitions {
				parts = append(parts, p.ID)
			}
		}
	}
	sort.Ints(parts)
	of, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("offset fetch %s: %w", group, err)
	}
	reqs := make([]kafka.OffsetRequest, 0, len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets %s: %w", topic, err)
	}
	committed := map[int]int64{}
	for _, p := range of.Topics[topic] {
		committed[p.Partition] = p.CommittedOffset
	}
	end := map[int]int64{}
	for _, p := range lo.Topics[topic] {
		end[p.Partition] = p.LastOffset
	}
	out := make([]PartitionLag, 0, len(parts))
	for _, p := range parts {
		c := committed[p]
		if c < 0 {
			c = 0
		}
		l := end[p] - c
		if l < 0 {
			l = 0
		}
		out = append(out, PartitionLag{Topic: topic, Partition: p, Committed: c, End: end[p], Lag: l})
	}
	return out, nil
}
