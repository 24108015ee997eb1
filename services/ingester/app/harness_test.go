package app_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// stack is a real redis-server, a kfake broker and the keys that sign the
// test tokens.
type stack struct {
	rt      testkit.RedisTarget
	redis   *embedded.Redis // nil on a Cluster
	brokers []string
	keys    *testkit.Keys
}

func newStack(t testing.TB) *stack {
	t.Helper()
	return stackOn(t, testkit.RedisUnderTest(t))
}

// newSingleNodeStack is newStack on one redis-server whatever the Redis
// under test, for tests that stop or restart it.
func newSingleNodeStack(t testing.TB) *stack {
	t.Helper()
	return stackOn(t, testkit.RedisTarget{Node: testkit.Redis(t)})
}

func stackOn(t testing.TB, rt testkit.RedisTarget) *stack {
	return &stack{rt: rt, redis: rt.Node, brokers: testkit.Kafka(t).Brokers, keys: testkit.NewKeys(t)}
}

func (s *stack) config(t testing.TB) app.Config {
	t.Helper()
	cfg, err := app.LoadConfig(emptyEnv())
	if err == nil {
		t.Fatal("an empty environment must fail validation (no public keys)")
	}
	cfg.Common = testkit.Common("ingester", s.keys, s.brokers, "")
	s.rt.Configure(&cfg.Common)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// running is an App serving in the background.
type running struct {
	*app.App
	stop func()
}

// start runs an app until the test ends (or stop is called) and waits for
// its health check to say SERVING.
func start(t testing.TB, cfg app.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.WithLogOutput(io.Discard))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("ingester did not stop")
		}
	}
	t.Cleanup(stop)
	waitFor(t, 10*time.Second, "ingester SERVING", func() error {
		hctx, hc := context.WithTimeout(ctx, time.Second)
		defer hc()
		return client.CheckHealth(hctx, a.GRPCAddr(), client.TLS{})
	})
	return &running{App: a, stop: stop}
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) ingestClient(t testing.TB, addr string, role auth.Role) cwv1.IngestServiceClient {
	t.Helper()
	return cwv1.NewIngestServiceClient(s.dial(t, addr, s.keys.Token(t, "core-banking", role, "")))
}

func (s *stack) dial(t testing.TB, addr, token string) *grpc.ClientConn {
	t.Helper()
	conn, err := client.Dial(addr, token, client.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// topicCount sums the log end offsets of a topic: how many records it holds.
func topicCount(t testing.TB, brokers []string, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	reqs := make([]kafka.OffsetRequest, testkit.Partitions)
	for p := range reqs {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	var total int64
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		resp, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
		if err != nil {
			lastErr = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		total = 0
		for _, p := range resp.Topics[topic] {
			if p.Error != nil {
				return -1
			}
			total += p.LastOffset
		}
		return total
	}
	t.Fatalf("list offsets %s: %v", topic, lastErr)
	return 0
}

// readEvents reads every record of the events topic, partition by
// partition, checking each one's key and headers.
func readEvents(t testing.TB, brokers []string, topic string) map[int][]*cwv1.AccountEvent {
	t.Helper()
	out := map[int][]*cwv1.AccountEvent{}
	for p, ms := range readRecords(t, brokers, topic) {
		for _, m := range ms {
			var ev cwv1.AccountEvent
			if err := proto.Unmarshal(m.Value, &ev); err != nil {
				t.Fatalf("partition %d offset %d: %v", p, m.Offset, err)
			}
			if string(m.Key) != ev.CustomerId {
				t.Fatalf("key %q, customer %q", m.Key, ev.CustomerId)
			}
			if kafkaHeader(m, "traceparent") == "" && ev.Type != cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED {
				t.Fatalf("record without traceparent header")
			}
			typ := "com.churnwatch.account_event"
			switch ev.Type {
			case cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED:
				typ = "com.churnwatch.business_day_closed"
			case cwv1.EventType_EVENT_TYPE_PROFILE_UPDATED:
				typ = "com.churnwatch.customer_profile"
			}
			checkCloudEvent(t, m, typ, ev.EventId, "churnwatch.v1.AccountEvent")
			if ev.CustomerId != "" && kafkaHeader(m, "ce_subject") != ev.CustomerId {
				t.Fatalf("%s: ce_subject %q", ev.EventId, kafkaHeader(m, "ce_subject"))
			}
			if ev.OccurredAt != nil && kafkaHeader(m, "ce_time") != ev.OccurredAt.AsTime().UTC().Format(time.RFC3339Nano) {
				t.Fatalf("%s: ce_time %q, occurredAt %s", ev.EventId, kafkaHeader(m, "ce_time"), ev.OccurredAt.AsTime())
			}
			out[p] = append(out[p], &ev)
		}
	}
	return out
}

// checkCloudEvent fails unless m carries the CloudEvents Kafka binding
// headers (binary content mode) of an ingester record.
func checkCloudEvent(t testing.TB, m kafka.Message, typ, id, messageType string) {
	t.Helper()
	want := map[string]string{
		"ce_specversion": "1.0",
		"ce_type":        typ,
		"ce_source":      "churnwatch/ingester",
		"ce_id":          id,
		"content-type":   "application/protobuf; messageType=" + messageType,
	}
	for k, v := range want {
		if got := kafkaHeader(m, k); got != v {
			t.Fatalf("%s@%d: header %s = %q, want %q", m.Topic, m.Offset, k, got, v)
		}
	}
}

// readRecords reads every record of topic, partition by partition.
func readRecords(t testing.TB, brokers []string, topic string) map[int][]kafka.Message {
	t.Helper()
	out := map[int][]kafka.Message{}
	for p := 0; p < testkit.Partitions; p++ {
		conn, err := kafka.DialLeader(context.Background(), "tcp", brokers[0], topic, p)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read partition %d: %v", p, err)
			}
			out[p] = append(out[p], m)
			if m.Offset+1 >= last {
				break
			}
		}
		cancel()
		r.Close()
	}
	return out
}

func kafkaHeader(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// restartableKafka is a kfake broker on a fixed port that keeps its data
// on disk, so it can be stopped (broker down) and started again.
type restartableKafka struct {
	t       testing.TB
	port    int
	dir     string
	cluster *kfake.Cluster
	Brokers []string
}

func newRestartableKafka(t testing.TB) *restartableKafka {
	t.Helper()
	port, err := embedded.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	k := &restartableKafka{t: t, port: port, dir: t.TempDir()}
	k.Brokers = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	k.Start()
	t.Cleanup(k.Stop)
	return k
}

func (k *restartableKafka) Start() {
	k.t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		k.cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(k.dir),
			kfake.ListenFn(func(network, _ string) (net.Listener, error) {
				return net.Listen(network, k.Brokers[0])
			}),
			kfake.SeedTopics(testkit.Partitions, testkit.DefaultTopics().All()...))
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // the port may linger a moment after Stop
	}
	k.t.Fatalf("start kfake on %d: %v", k.port, err)
}

func (k *restartableKafka) Stop() {
	if k.cluster != nil {
		k.cluster.Close()
		k.cluster = nil
	}
}

func emptyEnv() *config.Env { return config.FromMap(nil) }

// event is a valid incoming event; i makes its id unique.
func event(i int, customer string) *cwv1.IncomingEvent {
	return &cwv1.IncomingEvent{
		EventId: fmt.Sprintf("t-%06d", i), CustomerId: customer, AccountId: customer + "-01",
		OccurredAt: time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute).Format(time.RFC3339),
		Type:       "TRANSFER_OUT", Amount: "12500.00", Currency: "EUR", CounterpartyBank: "OTHERBANK",
		BalanceAfter: "300.00", Channel: "MOBILE",
	}
}

func events(from, n int) []*cwv1.IncomingEvent {
	out := make([]*cwv1.IncomingEvent, n)
	for i := range out {
		out[i] = event(from+i, fmt.Sprintf("C%04d", (from+i)%97))
	}
	return out
}

func mustReq(evs []*cwv1.IncomingEvent) *cwv1.PublishEventsRequest {
	return &cwv1.PublishEventsRequest{Events: evs}
}
