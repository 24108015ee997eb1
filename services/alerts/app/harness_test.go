package app_test

import (
	"context"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// clock is a controllable wall clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t       *testing.T
	app     *app.App
	cfg     app.Config
	keys    *testkit.Keys
	kafka   *embedded.Kafka
	redis   testkit.RedisTarget
	clock   *clock
	signals *kafka.Writer
	custs   *kafka.Writer
	// stop ends the instance (its context cancelled) and waits for it.
	stop func()
}

func start(t *testing.T, tune func(*app.Config)) *env {
	t.Helper()
	return startLogged(t, tune, nil)
}

// startLogged runs the service with its logs going to logs (when not nil).
func startLogged(t *testing.T, tune func(*app.Config), logs io.Writer) *env {
	t.Helper()
	return startOn(t, testkit.RedisUnderTest(t), testkit.Kafka(t), testkit.NewKeys(t), nil, tune, logs)
}

// peer starts another instance of the service on e's Redis, broker, keys
// and clock, as a second replica would run.
func (e *env) peer(tune func(*app.Config), opts ...app.Option) *env {
	e.t.Helper()
	return startOn(e.t, e.redis, e.kafka, e.keys, e.clock, tune, nil, opts...)
}

func startOn(t *testing.T, r testkit.RedisTarget, k *embedded.Kafka, keys *testkit.Keys, clk *clock, tune func(*app.Config), logs io.Writer, opts ...app.Option) *env {
	t.Helper()
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{"CHURNWATCH_AUTH_PUBLIC_KEYS": keys.PublicPEM}))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Common = testkit.Common("alerts", keys, k.Brokers, "")
	r.Configure(&cfg.Common)
	cfg.ScanInterval = time.Hour // tests run escalations themselves
	if tune != nil {
		tune(&cfg)
	}
	if logs == nil {
		logs = io.Discard
	}
	if os.Getenv("ALERTS_TEST_LOG") != "" {
		logs = os.Stderr
		cfg.Common.LogLevel = "debug"
	}
	if clk == nil {
		clk = &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, append([]app.Option{app.WithClock(clk.Now), app.WithLogOutput(logs)}, opts...)...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e := &env{t: t, app: a, cfg: cfg, keys: keys, kafka: k, redis: r, clock: clk,
		signals: kafkax.NewWriter(kafkax.Plain(k.Brokers), cfg.Common.Topics.Signals), custs: kafkax.NewWriter(kafkax.Plain(k.Brokers), cfg.Common.Topics.Customers)}
	e.stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("shutdown hung")
		}
	})
	t.Cleanup(func() {
		e.signals.Close()
		e.custs.Close()
		e.stop()
	})
	waitFor(t, 10*time.Second, "health SERVING", func() bool {
		return client.CheckHealth(context.Background(), a.GRPCAddr(), client.TLS{}) == nil
	})
	return e
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client dials the service as a principal; role "" means no token.
func (e *env) client(sub string, role auth.Role, branch string) cwv1.AlertServiceClient {
	e.t.Helper()
	tok := ""
	if role != "" {
		tok = e.keys.Token(e.t, sub, role, branch)
	}
	conn, err := client.Dial(e.app.GRPCAddr(), tok, client.TLS{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return cwv1.NewAlertServiceClient(conn)
}

func (e *env) admin() cwv1.AlertServiceClient { return e.client("admin-1", auth.RoleAdmin, "") }

func (e *env) produce(w *kafka.Writer, key string, m proto.Message) {
	e.t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(key), Value: b}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) profile(cust, manager, branch string, tier cwv1.Tier) {
	e.produce(e.custs, cust, &cwv1.CustomerProfile{CustomerId: cust, ManagerId: manager, BranchId: branch, Tier: tier})
}

func (e *env) signal(id, cust, rule string, score int32) {
	e.produce(e.signals, cust, sig(id, cust, rule, score))
}

// sig is a signal that leaves the tier unsaid, so that the alert takes the
// profile's (the rules service always says the tier it judged as; the
// alerting tests cover that).
func sig(id, cust, rule string, score int32) *cwv1.RiskSignal {
	return &cwv1.RiskSignal{SignalId: id, CustomerId: cust, RuleId: rule, Score: score, Stage: cwv1.Stage_STAGE_DECLINING,
		EventTime: timestamppb.Now(), IngestedAt: timestamppb.Now(),
		Explanation: &cwv1.Explanation{RuleId: rule, Observed: "2", Threshold: "1", Unit: "count", Detail: "test"}}
}

// caughtUp waits until a consumer group has committed everything on its topic.
func (e *env) caughtUp(group, topic string) {
	e.t.Helper()
	waitFor(e.t, 20*time.Second, group+" caught up", func() bool {
		lag, err := kafkax.GroupLag(context.Background(), kafkax.Plain(e.kafka.Brokers), group, topic)
		if err != nil {
			return false
		}
		for _, p := range lag {
			if p.Lag > 0 {
				return false
			}
		}
		return true
	})
}

func (e *env) signalsCaughtUp() { e.caughtUp(e.cfg.SignalsGroup, e.cfg.Common.Topics.Signals) }
func (e *env) profilesCaughtUp() {
	e.caughtUp(e.cfg.CustomersGroup, e.cfg.Common.Topics.Customers)
}

// alertOf waits for the customer's latest alert to satisfy ok.
func (e *env) alertOf(cust string, ok func(*cwv1.Alert) bool) *cwv1.Alert {
	e.t.Helper()
	var got *cwv1.Alert
	adm := e.admin()
	var lastErr error
	defer func() {
		if lastErr != nil {
			e.t.Logf("last ListAlerts error: %v", lastErr)
		}
	}()
	waitFor(e.t, 20*time.Second, "alert of "+cust, func() bool {
		resp, err := adm.ListAlerts(context.Background(), &cwv1.ListAlertsRequest{CustomerId: cust})
		lastErr = err
		if err != nil || len(resp.Alerts) == 0 {
			return false
		}
		for _, a := range resp.Alerts {
			if ok == nil || ok(a) {
				got = a
				return true
			}
		}
		return false
	})
	return got
}

// recv reads the next update of a stream with a deadline.
func recv(t *testing.T, s grpc.ServerStreamingClient[cwv1.SubscribeResponse]) *cwv1.AlertUpdate {
	t.Helper()
	type res struct {
		r   *cwv1.SubscribeResponse
		err error
	}
	ch := make(chan res, 1)
	go func() { r, err := s.Recv(); ch <- res{r, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("recv: %v", r.err)
		}
		return r.r.Update
	case <-time.After(20 * time.Second):
		t.Fatal("no update within 20s")
	}
	return nil
}

type cfgT = app.Config

type kafkaMsg = kafka.Message

func kmsg(key string, m proto.Message) kafka.Message {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return kafka.Message{Key: []byte(key), Value: b}
}

func (e *env) produceAll(msgs []kafka.Message) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.signals.WriteMessages(ctx, msgs...); err != nil {
		e.t.Fatal(err)
	}
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// smallWindowClient dials with a fixed 64 KiB flow-control window (no BDP
// growth), so a client that does not read stops the server's sends soon.
func (e *env) smallWindowClient(sub string, role auth.Role) cwv1.AlertServiceClient {
	e.t.Helper()
	conn, err := grpc.NewClient(e.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer(e.keys.Token(e.t, sub, role, ""))),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return cwv1.NewAlertServiceClient(conn)
}

// syncBuffer collects the services' logs from several goroutines.
type syncBuffer = testkit.SyncBuffer
