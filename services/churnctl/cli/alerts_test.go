package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	alertsapp "github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func alertsFixture(t *testing.T) (addr string, keys *testkit.Keys, produce func(proto.Message, string, string)) {
	t.Helper()
	r := testkit.Redis(t)
	k := testkit.Kafka(t)
	keys = testkit.NewKeys(t)
	cfg, err := alertsapp.LoadConfig(config.FromMap(map[string]string{"CHURNWATCH_AUTH_PUBLIC_KEYS": keys.PublicPEM}))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Common = testkit.Common("alerts", keys, k.Brokers, r.Addr)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := alertsapp.New(ctx, cfg, alertsapp.WithLogOutput(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	writers := map[string]*kafka.Writer{}
	t.Cleanup(func() {
		for _, w := range writers {
			w.Close()
		}
		cancel()
		<-done
	})
	waitUntil(t, "alerts healthy", func() bool {
		return client.CheckHealth(context.Background(), a.GRPCAddr(), client.TLS{}) == nil
	})
	produce = func(m proto.Message, topic, key string) {
		w := writers[topic]
		if w == nil {
			w = kafkax.NewWriter(kafkax.Plain(k.Brokers), topic)
			writers[topic] = w
		}
		b, _ := proto.Marshal(m)
		if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(key), Value: b}); err != nil {
			t.Fatal(err)
		}
		if topic == cfg.Common.Topics.Customers {
			// The alerts service reads profiles and signals with two
			// consumers; a test that routes by profile waits for it.
			waitUntil(t, "profile consumed", func() bool {
				lag, err := kafkax.GroupLag(context.Background(), kafkax.Plain(k.Brokers), cfg.CustomersGroup, topic)
				if err != nil {
					return false
				}
				for _, p := range lag {
					if p.Lag > 0 {
						return false
					}
				}
				return len(lag) > 0
			})
		}
	}
	return a.GRPCAddr(), keys, produce
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAlertsCommands(t *testing.T) {
	addr, keys, produce := alertsFixture(t)
	topics := testkit.DefaultTopics()
	produce(&cwv1.CustomerProfile{CustomerId: "C1", ManagerId: "rm-1", BranchId: "br-1", Tier: cwv1.Tier_TIER_HIGH_NET_WORTH}, topics.Customers, "C1")
	signal := func(id string, score int32) {
		produce(&cwv1.RiskSignal{SignalId: id, CustomerId: "C1", RuleId: "outflow.large", Score: score, Stage: cwv1.Stage_STAGE_ACTIVE, Tier: cwv1.Tier_TIER_HIGH_NET_WORTH,
			EventTime: timestamppb.Now(), IngestedAt: timestamppb.Now(),
			Explanation: &cwv1.Explanation{RuleId: "outflow.large", Observed: "150000.00", Threshold: "100000", Unit: "EUR"}}, topics.Signals, "C1")
	}
	token := keys.Token(t, "rm-1", auth.RoleManager, "")
	cursorFile := filepath.Join(t.TempDir(), "watch.cursor")
	run := func(ctx context.Context, out io.Writer, args ...string) (int, string) {
		var errb bytes.Buffer
		env := &Env{Stdout: out, Stderr: &errb, Getenv: func(k string) string {
			return map[string]string{"CHURNWATCH_ALERTS_ADDR": addr, "CHURNWATCH_TOKEN": token}[k]
		}}
		return Main(ctx, env, args), errb.String()
	}

	// watch from the start, as a background process would.
	wctx, stopWatch := context.WithCancel(context.Background())
	watchOut := &lockedBuffer{}
	watchDone := make(chan int, 1)
	go func() { c, _ := run(wctx, watchOut, "watch", "--json", "--cursor-file", cursorFile); watchDone <- c }()

	signal("s1", 85)
	var alert *cwv1.Alert
	waitUntil(t, "alerts list shows the alert", func() bool {
		var out bytes.Buffer
		if code, _ := run(context.Background(), &out, "alerts", "list", "--state", "open", "--json"); code != 0 {
			return false
		}
		line := strings.TrimSpace(out.String())
		if line == "" {
			return false
		}
		alert = &cwv1.Alert{}
		if err := protojson.Unmarshal([]byte(line), alert); err != nil {
			t.Fatalf("alerts list --json line is not a cwv1.Alert: %v: %s", err, line)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil || raw["alertId"] == nil || raw["customerId"] != "C1" {
			t.Fatalf("want camelCase protojson, got %s", line)
		}
		return true
	})
	{
		var out bytes.Buffer
		if code, e := run(context.Background(), &out, "alerts", "list", "--manager", "rm-1", "--sort", "severity"); code != 0 || !strings.Contains(out.String(), alert.AlertId) {
			t.Errorf("alerts list --manager rm-1 --sort severity: %d %s %s", code, out.String(), e)
		}
		out.Reset()
		if code, _ := run(context.Background(), &out, "alerts", "list", "--overdue", "--sort", "due"); code != 0 || strings.Contains(out.String(), alert.AlertId) {
			t.Errorf("alerts list --overdue lists an alert within its SLA: %d %s", code, out.String())
		}
		if code, _ := run(context.Background(), &out, "alerts", "list", "--sort", "newest"); code == 0 {
			t.Error("--sort newest accepted")
		}
	}
	if alert.Severity != cwv1.Severity_SEVERITY_CRITICAL || !strings.Contains(alert.RecommendedAction, "4 h") {
		t.Fatalf("alert: %v", alert)
	}
	waitUntil(t, "watch prints the alert", func() bool { return strings.Contains(watchOut.String(), alert.AlertId) })
	stopWatch()
	if c := <-watchDone; c != 0 {
		t.Fatalf("watch exit %d", c)
	}

	var out bytes.Buffer
	if code, errs := run(context.Background(), &out, "alerts", "ack", alert.AlertId, "--note", "calling now"); code != 0 || !strings.Contains(out.String(), "ACKNOWLEDGED") {
		t.Fatalf("ack: %d %s %s", code, out.String(), errs)
	}
	out.Reset()
	if code, errs := run(context.Background(), &out, "alerts", "snooze", alert.AlertId, "--until", "48h"); code != 0 || !strings.Contains(out.String(), "SNOOZED") {
		t.Fatalf("snooze: %d %s %s", code, out.String(), errs)
	}
	out.Reset()
	if code, _ := run(context.Background(), &out, "alerts", "resolve", alert.AlertId, "--note", "x"); code != ExitUsage {
		t.Fatalf("resolve without outcome: exit %d", code)
	}
	if code, errs := run(context.Background(), &out, "alerts", "resolve", alert.AlertId, "--outcome", "retained", "--note", "matched the rate"); code != 0 || !strings.Contains(out.String(), "RETAINED") {
		t.Fatalf("resolve: %d %s %s", code, out.String(), errs)
	}
	out.Reset()
	if code, _ := run(context.Background(), &out, "alerts", "get", alert.AlertId); code != 0 ||
		!strings.Contains(out.String(), "observed 150000.00 vs threshold 100000 EUR") || !strings.Contains(out.String(), "RESOLVED") {
		t.Fatalf("get: %s", out.String())
	}

	// A restarted watch resumes after its cursor: the ack, snooze and resolve
	// it missed, and not the creation it already printed.
	signal("s2", 45) // a new alert, after the resolve
	wctx, stopWatch = context.WithCancel(context.Background())
	defer stopWatch()
	watchOut = &lockedBuffer{}
	go func() { c, _ := run(wctx, watchOut, "watch", "--json", "--cursor-file", cursorFile); watchDone <- c }()
	waitUntil(t, "resumed watch shows what it missed", func() bool { return strings.Count(watchOut.String(), "\n") >= 4 })
	stopWatch()
	<-watchDone
	var changes []string
	for _, l := range strings.Split(strings.TrimSpace(watchOut.String()), "\n") {
		u := &cwv1.AlertUpdate{}
		if err := protojson.Unmarshal([]byte(l), u); err != nil {
			t.Fatalf("watch line: %v: %s", err, l)
		}
		changes = append(changes, strings.TrimPrefix(u.Change.String(), "ALERT_CHANGE_"))
	}
	if strings.Join(changes[:4], ",") != "ACKNOWLEDGED,SNOOZED,RESOLVED,CREATED" {
		t.Fatalf("resumed watch: %v", changes)
	}

	// Reassigning the new open alert: refused for a manager, done by ops.
	var open *cwv1.Alert
	waitUntil(t, "the second alert is listed", func() bool {
		var out bytes.Buffer
		if code, _ := run(context.Background(), &out, "alerts", "list", "--state", "open", "--json"); code != 0 || strings.TrimSpace(out.String()) == "" {
			return false
		}
		open = &cwv1.Alert{}
		return protojson.Unmarshal([]byte(strings.TrimSpace(strings.Split(out.String(), "\n")[0])), open) == nil
	})
	if code, e := run(context.Background(), io.Discard, "alerts", "reassign", open.AlertId, "--to", "rm-2", "--note", "covering"); code == 0 || !strings.Contains(strings.ToLower(e), "permission") {
		t.Fatalf("a manager reassigned: exit %d %s", code, e)
	}
	if code, _ := run(context.Background(), io.Discard, "alerts", "reassign", open.AlertId, "--note", "x"); code != ExitUsage {
		t.Fatalf("reassign without --to: exit %d", code)
	}
	token = keys.Token(t, "ops-1", auth.RoleOps, "")
	var rout bytes.Buffer
	if code, e := run(context.Background(), &rout, "alerts", "reassign", open.AlertId, "--to", "rm-2", "--note", "covering"); code != 0 || !strings.Contains(rout.String(), "reassigned to rm-2") {
		t.Fatalf("ops reassign: exit %d %s %s", code, rout.String(), e)
	}
}

func TestParseSnoozeUntil(t *testing.T) {
	now := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	if got, err := parseSnoozeUntil("48h", now); err != nil || !got.Equal(now.Add(48*time.Hour)) {
		t.Fatalf("48h: %v %v", got, err)
	}
	if got, err := parseSnoozeUntil("2025-03-05T10:00:00+01:00", now); err != nil || got.UTC().Hour() != 9 {
		t.Fatalf("rfc3339: %v %v", got, err)
	}
	for _, bad := range []string{"", "tomorrow", "-1h"} {
		if _, err := parseSnoozeUntil(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if s := watchTokenSubject("x." + "eyJzdWIiOiJybS0wMDEifQ" + ".y"); s != "rm-001" {
		t.Errorf("subject: %q", s)
	}
}
