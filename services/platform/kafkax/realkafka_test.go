package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// A broker SIGKILLed while NewWriter produces (acks from every in-sync
// replica, min.insync.replicas 2 of 3) and later restarted on its data must
// not lose a record whose write was acknowledged.
func TestNoAcknowledgedRecordLostWhenABrokerIsKilled(t *testing.T) {
	k := testkit.RealKafka(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const topic = "kafkax.broker-kill"
	rep, err := kafkax.EnsureTopics(ctx, kafkax.Plain(k.Brokers), kafkax.TopicPolicy{}, kafkax.TopicSpec{Name: topic, Partitions: 3})
	if err != nil {
		t.Fatalf("topics: %v", err)
	}
	if rep[0].Replication != 3 || rep[0].MinInsync != 2 {
		t.Fatalf("topic %+v, want replication 3, min.insync 2", rep[0])
	}
	var (
		mu       sync.Mutex
		acked    = map[int]bool{}
		nAcked   atomic.Int64
		failures atomic.Int64
	)
	victim := leaderOf(ctx, t, k.Brokers, topic, 0)
	start := time.Now()
	phase := func(what string) {
		t.Logf("%6.1fs %s (%d acknowledged)", time.Since(start).Seconds(), what, nAcked.Load())
	}

	w := kafkax.NewWriter(kafkax.Plain(k.Brokers), topic)
	w.MaxAttempts = 3
	pctx, stopProducing := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		const batch = 50
		for seq := 0; pctx.Err() == nil; seq += batch {
			msgs := make([]kafka.Message, batch)
			for i := range msgs {
				msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("C%04d", (seq+i)%997)), Value: []byte(strconv.Itoa(seq + i))}
			}
			err := w.WriteMessages(pctx, msgs...)
			var werrs kafka.WriteErrors
			mu.Lock()
			for i := range msgs {
				// A failed write may or may not have landed; only acknowledged
				// ones are promised.
				if err == nil || (errors.As(err, &werrs) && werrs[i] == nil) {
					acked[seq+i] = true
					nAcked.Add(1)
				}
			}
			mu.Unlock()
			if err != nil {
				failures.Add(1)
			}
			// About 10,000 records a second: enough to be mid-write at the
			// kill, and CPU left on two cores for the restarting JVM.
			time.Sleep(5 * time.Millisecond)
		}
	}()
	waitAcked := func(what string, n int64) {
		t.Helper()
		for nAcked.Load() < n {
			if ctx.Err() != nil {
				t.Fatalf("%s: only %d records acknowledged (%d failed writes)", what, nAcked.Load(), failures.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAcked("before the kill", 2000)
	phase("killing")
	if err := k.Kill(victim); err != nil {
		t.Fatal(err)
	}
	killedAt := nAcked.Load()
	phase("killed")
	// Writes go on with two of three replicas once leadership moved.
	waitAcked("with a broker down", killedAt+3000)
	phase("restarting")
	if err := k.StartNode(victim); err != nil {
		t.Fatal(err)
	}
	phase("restarted")
	waitAcked("after the restart", nAcked.Load()+1000)
	stopProducing()
	<-done
	if err := w.Close(); err != nil {
		t.Logf("writer close: %v", err)
	}
	t.Logf("killed node %d (leader of partition 0) after %d acks; %d acknowledged in all, %d failed writes", victim, killedAt, nAcked.Load(), failures.Load())

	got := readAll(ctx, t, k.Brokers, topic)
	phase("read back")
	lost := 0
	for seq := range acked {
		if !got[strconv.Itoa(seq)] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost", lost, len(acked))
	}
}

func leaderOf(ctx context.Context, t *testing.T, brokers []string, topic string, partition int) int {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	for _, p := range md.Topics[0].Partitions {
		if p.ID == partition {
			return p.Leader.ID
		}
	}
	t.Fatalf("no partition %d in %+v", partition, md.Topics)
	return 0
}

// readAll reads every partition of topic from the start to its end offset.
func readAll(ctx context.Context, t *testing.T, brokers []string, topic string) map[string]bool {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...)}
	reqs := []kafka.OffsetRequest{kafka.LastOffsetOf(0), kafka.LastOffsetOf(1), kafka.LastOffsetOf(2)}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	got := map[string]bool{}
	for _, po := range lo.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("partition %d: %v", po.Partition, po.Error)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: po.Partition, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
		for n := int64(0); n < po.LastOffset; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read partition %d at %d of %d: %v", po.Partition, n, po.LastOffset, err)
			}
			got[string(m.Value)] = true
			n = m.Offset + 1
		}
		r.Close()
	}
	return got
}
