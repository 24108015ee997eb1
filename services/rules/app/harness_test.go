package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// stack is one broker + one Redis + keys, shared by the apps of a test.
type stack struct {
	t       *testing.T
	kafka   *embedded.Kafka
	rt      testkit.RedisTarget
	redis   *embedded.Redis // nil on a Cluster
	keys    *testkit.Keys
	topics  config.Topics
	brokers []string
}

func newStack(t *testing.T, partitions int) *stack {
	t.Helper()
	return stackOn(t, partitions, testkit.RedisUnderTest(t))
}

func stackOn(t *testing.T, partitions int, rt testkit.RedisTarget) *stack {
	t.Helper()
	s := &stack{t: t, rt: rt, redis: rt.Node, keys: testkit.NewKeys(t), topics: testkit.DefaultTopics()}
	if partitions == testkit.Partitions {
		s.kafka = testkit.Kafka(t)
	} else {
		k, err := embedded.StartKafka(0, partitions, s.topics.All()...)
		if err != nil {
			t.Fatalf("kafka: %v", err)
		}
		t.Cleanup(k.Close)
		s.kafka = k
	}
	s.brokers = s.kafka.Brokers
	return s
}

func (s *stack) config(batch int) Config {
	c := Defaults()
	c.Common = testkit.Common("rules", s.keys, s.brokers, "")
	s.rt.Configure(&c.Common)
	c.BatchSize = batch
	c.LagInterval = 200 * time.Millisecond
	c.ThresholdsPoll = 200 * time.Millisecond
	return c
}

// running is a started App.
type running struct {
	app    *App
	cancel context.CancelFunc
	done   chan error
}

func (s *stack) start(cfg Config, opts ...Option) *running {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, append([]Option{WithLogOutput(io.Discard)}, opts...)...)
	if err != nil {
		cancel()
		s.t.Fatalf("new app: %v", err)
	}
	r := &running{app: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	s.t.Cleanup(func() { r.stop(s.t) })
	return r
}

// stop ends the app and returns Run's error; safe to call twice.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
			return err
		}
		return nil
	case <-time.After(30 * time.Second):
		t.Fatal("app did not stop within 30s")
	}
	return nil
}

func (s *stack) dial(addr string, sub string, role auth.Role, branch string) *grpc.ClientConn {
	s.t.Helper()
	conn, err := client.Dial(addr, s.keys.Token(s.t, sub, role, branch), client.TLS{})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close() })
	return conn
}

// produce writes records to topic and waits for the acks.
func (s *stack) produce(topic string, msgs ...kafka.Message) {
	s.t.Helper()
	w := kafkax.NewWriter(kafkax.Plain(s.brokers), topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for start := 0; start < len(msgs); start += 1000 {
		if err := w.WriteMessages(ctx, msgs[start:min(start+1000, len(msgs))]...); err != nil {
			s.t.Fatalf("produce %s: %v", topic, err)
		}
	}
}

// produceToPartition writes one record to a chosen partition of topic.
func (s *stack) produceToPartition(topic string, partition int, m kafka.Message) {
	s.t.Helper()
	w := kafkax.NewWriter(kafkax.Plain(s.brokers), topic)
	w.Balancer = kafka.BalancerFunc(func(kafka.Message, ...int) int { return partition })
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, m); err != nil {
		s.t.Fatalf("produce %s/%d: %v", topic, partition, err)
	}
}

func (s *stack) partitions(topic string) []int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lag, err := kafkax.GroupLag(ctx, kafkax.Plain(s.brokers), "probe", topic)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []int
	for _, p := range lag {
		out = append(out, p.Partition)
	}
	return out
}

// closeDay writes a business-day-close marker to every events partition.
func (s *stack) closeDay(at time.Time) {
	s.t.Helper()
	for _, p := range s.partitions(s.topics.Events) {
		b, _ := proto.Marshal(&cwv1.AccountEvent{EventId: "close-" + at.Format(time.DateOnly) + "-" + strconv.Itoa(p),
			Type: cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED, OccurredAt: timestamppb.New(at), IngestedAt: timestamppb.Now()})
		s.produceToPartition(s.topics.Events, p, kafka.Message{Value: b})
	}
}

// waitCaughtUp waits until group has committed every record of topic.
func (s *stack) waitCaughtUp(group, topic string, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var last []kafkax.PartitionLag
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag, err := kafkax.GroupLag(ctx, kafkax.Plain(s.brokers), group, topic)
		cancel()
		if err == nil {
			last = lag
			total := int64(0)
			for _, p := range lag {
				total += p.Lag
			}
			if total == 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("group %s not caught up on %s within %s: %+v", group, topic, within, last)
}

// waitProgress waits until group committed at least n records of topic.
func (s *stack) waitProgress(group, topic string, n int64, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag, err := kafkax.GroupLag(ctx, kafkax.Plain(s.brokers), group, topic)
		cancel()
		if err == nil {
			done := int64(0)
			for _, p := range lag {
				done += p.Committed
			}
			if done >= n {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("group %s did not commit %d records of %s within %s", group, n, topic, within)
}

// readAll returns every record of topic, partition by partition.
func (s *stack) readAll(topic string) []kafka.Message {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lag, err := kafkax.GroupLag(ctx, kafkax.Plain(s.brokers), "probe", topic)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []kafka.Message
	for _, p := range lag {
		if p.End == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: topic, Partition: p.Partition, MaxWait: 50 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				s.t.Fatalf("read %s/%d: %v", topic, p.Partition, err)
			}
			out = append(out, m)
			if m.Offset >= p.End-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

// signalKey is what must be identical across runs.
type signalKey struct {
	Rule, Customer, Time, Observed, Threshold, Unit, Detail, Stage, Severity string
	Score                                                                    int32
	Version                                                                  int64
	EventIDs                                                                 string
}

func keyOf(s *cwv1.RiskSignal) signalKey {
	e := s.GetExplanation()
	return signalKey{Rule: s.GetRuleId(), Customer: s.GetCustomerId(), Time: s.GetEventTime().AsTime().Format(time.RFC3339Nano),
		Observed: e.GetObserved(), Threshold: e.GetThreshold(), Unit: e.GetUnit(), Detail: e.GetDetail(),
		Stage: s.GetStage().String(), Severity: s.GetSeverity().String(), Score: s.GetScore(), Version: e.GetThresholdVersion(),
		EventIDs: fmt.Sprint(e.GetEventIds())}
}

// signals reads the signals topic and dedupes by id, failing when one id
// carries two different contents.
func (s *stack) signals() map[string]signalKey {
	s.t.Helper()
	out := map[string]signalKey{}
	for _, m := range s.readAll(s.topics.Signals) {
		var sg cwv1.RiskSignal
		if err := proto.Unmarshal(m.Value, &sg); err != nil {
			s.t.Fatalf("signal: %v", err)
		}
		if string(m.Key) != sg.GetCustomerId() {
			s.t.Fatalf("signal key %q for customer %q", m.Key, sg.GetCustomerId())
		}
		for h, want := range map[string]string{
			"ce_specversion": "1.0", "ce_type": "com.churnwatch.risk_signal", "ce_source": "churnwatch/rules",
			"ce_id": sg.GetSignalId(), "ce_subject": sg.GetCustomerId(), "ce_time": sg.GetEventTime().AsTime().Format(time.RFC3339Nano),
			"content-type": "application/protobuf; messageType=churnwatch.v1.RiskSignal",
		} {
			if got := header(m, h); got != want {
				s.t.Fatalf("signal %s: header %s = %q, want %q", sg.GetSignalId(), h, got, want)
			}
		}
		k := keyOf(&sg)
		if prev, ok := out[sg.GetSignalId()]; ok && prev != k {
			s.t.Fatalf("signal %s re-emitted with different content:\n%+v\n%+v", sg.GetSignalId(), prev, k)
		}
		out[sg.GetSignalId()] = k
	}
	return out
}

func diffSignals(t *testing.T, name string, want, got map[string]signalKey) {
	t.Helper()
	var missing, extra []string
	for id, k := range want {
		if g, ok := got[id]; !ok {
			missing = append(missing, fmt.Sprintf("%s %+v", id, k))
		} else if g != k {
			extra = append(extra, fmt.Sprintf("%s differs: want %+v got %+v", id, k, g))
		}
	}
	for id, k := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, fmt.Sprintf("%s unexpected %+v", id, k))
		}
	}
	if len(missing)+len(extra) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		t.Fatalf("%s: %d signals missing, %d extra/different (of %d)\nmissing: %v\nextra: %v", name, len(missing), len(extra), len(want),
			head(missing), head(extra))
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// ---- synthetic bank ----

var (
	yearStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	yearEnd   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// finalClose pushes every partition clock far enough for every absence
	// rule of the year to fire.
	finalClose = time.Date(2026, 9, 30, 23, 59, 59, 0, time.UTC)
)

type bank struct {
	customers []*cwv1.CustomerProfile
	events    []*cwv1.AccountEvent
}

// newBank builds n customers with behaviours that fire every rule, their
// events over 2025 sorted by event time.
func newBank(n int, seed uint64) *bank {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := &bank{}
	tiers := []cwv1.Tier{cwv1.Tier_TIER_MASS, cwv1.Tier_TIER_HIGH_NET_WORTH, cwv1.Tier_TIER_POTENTIAL, cwv1.Tier_TIER_BASIC}
	for i := range n {
		id := fmt.Sprintf("C%03d", i)
		b.customers = append(b.customers, &cwv1.CustomerProfile{CustomerId: id, Tier: tiers[i%len(tiers)],
			ManagerId: fmt.Sprintf("rm-%d", i%3), BranchId: fmt.Sprintf("br-%d", i%2)})
		c := &custSim{b: b, id: id, acct: id + "-01", bal: 500000, rng: rng}
		switch i % 7 {
		case 0: // steady: salary and payments all year
			c.salary(yearStart, yearEnd)
			c.payments(yearStart, yearEnd, 7)
		case 1: // stops: salary and activity end in May → salary.stopped, dormancy
			c.salary(yearStart, date(5, 15))
			c.payments(yearStart, date(5, 20), 5)
		case 2: // large external outflow, then a drain
			c.payments(yearStart, yearEnd, 6)
			c.outflow(date(3, 10), 15000000)
			c.outflow(date(8, 3), 9000000)
		case 3: // complaints
			c.payments(yearStart, yearEnd, 9)
			c.complaint(date(5, 2), -0.2)
			c.complaint(date(5, 20), -0.3)
			c.complaint(date(10, 1), -0.9)
		case 4: // closure
			c.payments(yearStart, date(9, 1), 4)
			c.event(date(9, 12), cwv1.EventType_EVENT_TYPE_ACCOUNT_CLOSED, 0, "")
		case 5: // activity drop: busy, then rare
			c.payments(yearStart, date(7, 1), 2)
			c.payments(date(7, 1), yearEnd, 40)
		case 6: // churns and comes back
			c.payments(yearStart, date(1, 20), 5)
			c.payments(date(8, 20), yearEnd, 10)
		}
		c.logins()
	}
	sort.SliceStable(b.events, func(i, j int) bool {
		ti, tj := b.events[i].GetOccurredAt().AsTime(), b.events[j].GetOccurredAt().AsTime()
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return b.events[i].GetEventId() < b.events[j].GetEventId()
	})
	return b
}

func date(m, d int) time.Time { return time.Date(2025, time.Month(m), d, 10, 0, 0, 0, time.UTC) }

type custSim struct {
	b    *bank
	id   string
	acct string
	bal  int64
	n    int
	rng  *rand.Rand
}

func (c *custSim) event(at time.Time, typ cwv1.EventType, amount int64, bank string) {
	c.n++
	ev := &cwv1.AccountEvent{EventId: fmt.Sprintf("%s-e%04d", c.id, c.n), CustomerId: c.id, AccountId: c.acct,
		OccurredAt: timestamppb.New(at), Type: typ, AmountMinor: amount, CounterpartyBank: bank, IngestedAt: timestamppb.New(at)}
	if amount > 0 {
		ev.Currency = "EUR"
		switch typ {
		case cwv1.EventType_EVENT_TYPE_SALARY, cwv1.EventType_EVENT_TYPE_DEPOSIT, cwv1.EventType_EVENT_TYPE_TRANSFER_IN:
			c.bal += amount
		default:
			c.bal -= amount
		}
		bal := c.bal
		ev.BalanceAfterMinor = &bal
	}
	c.b.events = append(c.b.events, ev)
}

func (c *custSim) salary(from, to time.Time) {
	for t := time.Date(from.Year(), from.Month(), 25, 8, 0, 0, 0, time.UTC); t.Before(to); t = t.AddDate(0, 1, 0) {
		if !t.Before(from) {
			c.event(t, cwv1.EventType_EVENT_TYPE_SALARY, 300000, "")
		}
	}
}

func (c *custSim) payments(from, to time.Time, everyDays int) {
	for t := from.Add(time.Duration(c.rng.IntN(24)) * time.Hour); t.Before(to); t = t.AddDate(0, 0, everyDays) {
		c.event(t.Add(time.Duration(c.rng.IntN(600))*time.Minute), cwv1.EventType_EVENT_TYPE_CARD_PAYMENT, int64(1000+c.rng.IntN(9000)), "")
	}
}

func (c *custSim) outflow(at time.Time, amount int64) {
	c.event(at, cwv1.EventType_EVENT_TYPE_TRANSFER_OUT, amount, "OTHERBANK")
}

func (c *custSim) complaint(at time.Time, sentiment float64) {
	c.n++
	c.b.events = append(c.b.events, &cwv1.AccountEvent{EventId: fmt.Sprintf("%s-e%04d", c.id, c.n), CustomerId: c.id,
		AccountId: c.acct, OccurredAt: timestamppb.New(at), Type: cwv1.EventType_EVENT_TYPE_COMPLAINT, Sentiment: &sentiment})
}

func (c *custSim) logins() {
	for t := yearStart.Add(time.Duration(c.rng.IntN(1000)) * time.Hour); t.Before(yearEnd); t = t.AddDate(0, 1, 3) {
		c.event(t, cwv1.EventType_EVENT_TYPE_LOGIN, 0, "")
	}
}

func eventMsg(ev *cwv1.AccountEvent) kafka.Message {
	b, err := proto.Marshal(ev)
	if err != nil {
		panic(err)
	}
	m := kafka.Message{Key: []byte(ev.GetCustomerId()), Value: b,
		Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}}
	// As the ingester writes it.
	kafkax.CloudEvent{Type: kafkax.TypeAccountEvent, Source: kafkax.Source("ingester"), ID: ev.GetEventId(), Data: ev}.Stamp(&m)
	return m
}

func (b *bank) eventMsgs() []kafka.Message {
	out := make([]kafka.Message, len(b.events))
	for i, ev := range b.events {
		out[i] = eventMsg(ev)
	}
	return out
}

// profileMsgs are the bank's profiles as the ingester writes them to the
// events topic: one EVENT_TYPE_PROFILE_UPDATED record per customer.
func (b *bank) profileMsgs() []kafka.Message {
	out := make([]kafka.Message, len(b.customers))
	for i, c := range b.customers {
		out[i] = eventMsg(&cwv1.AccountEvent{EventId: "profile:" + c.GetCustomerId(), CustomerId: c.GetCustomerId(),
			Type: cwv1.EventType_EVENT_TYPE_PROFILE_UPDATED, Profile: c})
	}
	return out
}

// loadCustomers publishes the profiles on the events topic, ahead of the
// customers' events (as `churnctl customers import` before `ingest` does):
// every event is then scored with its customer's tier whatever the timing.
func (s *stack) loadCustomers(b *bank, cfg Config) {
	s.t.Helper()
	s.produce(s.topics.Events, b.profileMsgs()...)
}

var errCrash = errors.New("simulated crash between state write and commit")
