package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/ingester/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

type ingestStack struct {
	brokers []string
	cfg     app.Config
	env     map[string]string
}

// runIngester runs an ingester app in-process until stop or the test's end.
func runIngester(t *testing.T, cfg app.Config) (addr string, stop func()) {
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
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ingester: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("ingester did not stop")
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		hctx, hc := context.WithTimeout(ctx, time.Second)
		err := client.CheckHealth(hctx, a.GRPCAddr(), client.TLS{})
		hc()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingester not SERVING: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a.GRPCAddr(), stop
}

func newIngestStack(t *testing.T) *ingestStack {
	t.Helper()
	r := testkit.Redis(t)
	k := testkit.Kafka(t)
	keys := testkit.NewKeys(t)
	cfg, _ := app.LoadConfig(config.FromMap(nil))
	cfg.Common = testkit.Common("ingester", keys, k.Brokers, r.Addr)
	addr, _ := runIngester(t, cfg)
	return &ingestStack{brokers: k.Brokers, cfg: cfg, env: map[string]string{
		"CHURNWATCH_INGESTER_ADDR": addr,
		"CHURNWATCH_TOKEN":         keys.Token(t, "core-banking", auth.RoleIngest, ""),
	}}
}

// churnctl runs the CLI in-process and returns exit code, stdout, stderr.
func churnctl(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := cli.Main(ctx, e, args)
	return code, out.String(), errOut.String()
}

func summary(t *testing.T, out string) cli.IngestSummary {
	t.Helper()
	var s cli.IngestSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	return s
}

func topicCount(t *testing.T, brokers []string, topic string) int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	reqs := make([]kafka.OffsetRequest, testkit.Partitions)
	for p := range reqs {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	resp, err := cl.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range resp.Topics[topic] {
		n += p.LastOffset
	}
	return n
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func evLine(id, customer, at, typ, amount string) string {
	cur := ""
	if amount != "" {
		cur = "EUR"
	}
	return fmt.Sprintf(`{"eventId":%q,"customerId":%q,"accountId":"A-%s","occurredAt":%q,"type":%q,"amount":%q,"currency":%q}`,
		id, customer, customer, at, typ, amount, cur)
}

func TestIngestFileGoodAndBadLines(t *testing.T) {
	s := newIngestStack(t)
	file := strings.Join([]string{
		evLine("e-1", "C1", "2025-03-05T10:00:00Z", "DEPOSIT", "100.00"),
		evLine("e-2", "C1", "2025-03-01T10:00:00Z", "WITHDRAWAL", "1.005"), // line 2: too many decimals
		"",
		`{"eventId": "e-3", oops}`, // line 4: not JSON
		evLine("e-4", "C2", "2025-03-02T10:00:00Z", "TRANSFER_OUT", "2500.00"),
		evLine("e-5", "C2", "2025-03-03T10:00:00Z", "TELEPORT", ""), // line 6: unknown type
		evLine("e-6", "C3", "2025-03-01T08:00:00Z", "LOGIN", ""),
	}, "\n") + "\n"
	path := writeFile(t, "events.ndjson", file)

	code, out, errOut := churnctl(t, s.env, "", "ingest", path)
	if code != cli.ExitRejected {
		t.Fatalf("exit %d, want 3; stderr %s", code, errOut)
	}
	sum := summary(t, out)
	if sum.Accepted != 3 || sum.Duplicates != 0 || sum.Rejected != 3 || len(sum.Errors) != 3 {
		t.Fatalf("summary %s", out)
	}
	want := []cli.LineError{
		{Line: 2, EventID: "e-2", Reason: "amount: more than 2 decimals, the most EUR allows"},
		{Line: 4, Reason: "not valid JSON"},
		{Line: 6, EventID: "e-5", Reason: `type: unknown type "TELEPORT"`},
	}
	for i, w := range want {
		g := sum.Errors[i]
		if g.Line != w.Line || g.EventID != w.EventID || !strings.HasPrefix(g.Reason, w.Reason) {
			t.Errorf("error %d: %+v, want %+v", i, g, w)
		}
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 3 {
		t.Fatalf("%d on the topic, want 3", n)
	}

	// Again: everything good is a duplicate, nothing new on the topic.
	code, out, _ = churnctl(t, s.env, "", "ingest", path)
	if sum := summary(t, out); code != cli.ExitRejected || sum.Accepted != 0 || sum.Duplicates != 3 || sum.Rejected != 3 {
		t.Fatalf("second run: exit %d %s", code, out)
	}
	// And after an ingester restart on the same Redis.
	addr, _ := runIngester(t, s.cfg)
	env := map[string]string{"CHURNWATCH_INGESTER_ADDR": addr, "CHURNWATCH_TOKEN": s.env["CHURNWATCH_TOKEN"]}
	code, out, _ = churnctl(t, env, "", "ingest", path, "--no-sort")
	if sum := summary(t, out); code != cli.ExitRejected || sum.Accepted != 0 || sum.Duplicates != 3 {
		t.Fatalf("after restart: exit %d %s", code, out)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 3 {
		t.Fatalf("%d on the topic after re-ingesting, want 3", n)
	}
}

func TestIngestCSVFromStdinAllGood(t *testing.T) {
	s := newIngestStack(t)
	csv := "event_id,customer_id,account_id,occurred_at,type,amount,currency,counterparty_bank,balance_after,channel,sentiment\n" +
		"c-1,C1,A1,2025-03-01T09:30:00Z,TRANSFER_OUT,12500.00,EUR,OTHERBANK,300.00,MOBILE,\n" +
		"c-2,C1,A1,2025-03-02T09:30:00Z,COMPLAINT,,,,,PHONE,-0.7\n"
	code, out, errOut := churnctl(t, s.env, csv, "ingest", "-", "--batch", "1")
	if code != cli.ExitOK {
		t.Fatalf("exit %d %s %s", code, out, errOut)
	}
	if out != `{"accepted":2,"duplicates":0,"rejected":0,"late":0,"errors":[]}`+"\n" {
		t.Fatalf("summary %q", out)
	}
	// A bad CSV line is rejected with its file line (the header is line 1).
	code, out, _ = churnctl(t, s.env, csv+"c-3,C1,A1\n", "ingest", "-")
	if sum := summary(t, out); code != cli.ExitRejected || sum.Duplicates != 2 || len(sum.Errors) != 1 || sum.Errors[0].Line != 4 {
		t.Fatalf("bad csv line: exit %d %s", code, out)
	}
}

func TestIngestUnreachable(t *testing.T) {
	path := writeFile(t, "e.ndjson", evLine("e-1", "C1", "2025-03-05T10:00:00Z", "LOGIN", "")+"\n")
	code, out, errOut := churnctl(t, map[string]string{"CHURNWATCH_INGESTER_ADDR": "127.0.0.1:1", "CHURNWATCH_TOKEN": "x"}, "", "ingest", path, "--retry", "0s")
	if code != cli.ExitFailure || out != "" || !strings.Contains(errOut, "unreachable") {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
	}
	if code, _, _ := churnctl(t, nil, "", "ingest"); code != cli.ExitUsage {
		t.Fatalf("no file: exit %d", code)
	}
}

func TestCustomersImportAndCloseDay(t *testing.T) {
	s := newIngestStack(t)
	nd := `{"customerId":"C1001","tier":"HIGH_NET_WORTH","managerId":"rm-001","branchId":"br-01","displayName":"Wang L."}` + "\n" +
		`{"customerId":"C1002","tier":"VIP"}` + "\n"
	code, out, _ := churnctl(t, s.env, nd, "customers", "import", "-")
	sum := summary(t, out)
	if code != cli.ExitRejected || sum.Accepted != 1 || sum.Rejected != 1 || sum.Errors[0].Line != 2 || sum.Errors[0].CustomerID != "C1002" {
		t.Fatalf("customers import: exit %d %s", code, out)
	}
	if n := topicCount(t, s.brokers, "churnwatch.customers.v1"); n != 1 {
		t.Fatalf("%d customers on the topic", n)
	}

	code, out, errOut := churnctl(t, s.env, "", "close-day", "2025-03-01")
	if code != cli.ExitOK || !strings.Contains(out, `"partitions":3`) || !strings.Contains(out, `"clock":"2025-03-02T00:00:00Z"`) {
		t.Fatalf("close-day: exit %d %s %s", code, out, errOut)
	}
	// One marker per partition, and the accepted profile in event order.
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != testkit.Partitions+1 {
		t.Fatalf("%d records, want one marker per partition and one profile", n)
	}
	if code, _, _ := churnctl(t, s.env, "", "close-day", "01/03/2025"); code != cli.ExitUsage {
		t.Fatalf("bad date: exit %d", code)
	}
}
