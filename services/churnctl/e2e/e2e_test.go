// Package e2e drives the composed churnwatch stack (kfake + a real
// redis-server + the three services in-process) through its public APIs
// only, the way a bank would, and checks it with independent real tools
// (grpcurl, kcat, promtool).
package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	return startStackOn(t, nil)
}

// startStackOn starts the stack with env (nil: the embedded broker).
func startStackOn(t *testing.T, env map[string]string) *devstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{Dir: t.TempDir(), AnyPort: true, Env: env})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("stop stack: %v", err)
		}
	})
	return st
}

func dial(t *testing.T, st *devstack.Stack, addr, sub string, role auth.Role, branch string) *clientConn {
	t.Helper()
	tok, err := st.Token(sub, role, branch, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(addr, tok, client.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH: run scripts/setup.sh (make test does)", name)
	}
	return p
}

// TestLargeOutflowAlertReachesManager is the walking skeleton: a customer
// profile and an external outflow over the MASS threshold go in through the
// ingester; the manager's Subscribe stream shows the alert within 5 s with
// the right customer, rule, observed value and threshold. An outflow under
// the threshold yields nothing.
func TestLargeOutflowAlertReachesManager(t *testing.T) {
	walkingSkeleton(t, startStack(t))
}

// The same walking skeleton on a real three-broker Apache Kafka cluster
// (scripts/kafka.sh; topics with replication 3 and min.insync.replicas 2).
func TestLargeOutflowAlertReachesManagerOnRealKafka(t *testing.T) {
	k := testkit.RealKafka(t, 3)
	walkingSkeleton(t, startStackOn(t, map[string]string{"CHURNWATCH_KAFKA_BROKERS": strings.Join(k.Brokers, ",")}))
}

func walkingSkeleton(t *testing.T, st *devstack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ing := cwv1.NewIngestServiceClient(dial(t, st, st.Ingester.GRPCAddr(), "core", auth.RoleIngest, ""))
	var cresp *cwv1.UpsertCustomersResponse
	err := retrying(ctx, func(ctx context.Context) (err error) {
		cresp, err = ing.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: []*cwv1.IncomingCustomer{
			{CustomerId: "C1001", Tier: "MASS", ManagerId: "rm-001", BranchId: "br-01", DisplayName: "Wang L."},
			{CustomerId: "C1002", Tier: "MASS", ManagerId: "rm-001", BranchId: "br-01", DisplayName: "Li P."},
		}})
		return err
	})
	if err != nil || cresp.Accepted != 2 {
		t.Fatalf("upsert customers: %v %v", cresp, err)
	}

	alerts := cwv1.NewAlertServiceClient(dial(t, st, st.Alerts.GRPCAddr(), "rm-001", auth.RoleManager, ""))
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := alerts.Subscribe(sctx, &cwv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	updates := make(chan *cwv1.AlertUpdate, 16)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(updates)
				return
			}
			updates <- r.Update
		}
	}()

	// Give the profile a moment to reach both consumers: wait on lag, not time.
	waitCaughtUp(t, st)

	now := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	var resp *cwv1.PublishEventsResponse
	err = retrying(ctx, func(ctx context.Context) (err error) {
		resp, err = ing.PublishEvents(ctx, &cwv1.PublishEventsRequest{Events: []*cwv1.IncomingEvent{
			{EventId: "t-under", CustomerId: "C1002", AccountId: "A1002-01", OccurredAt: now, Type: "TRANSFER_OUT", Amount: "9999.99", Currency: "EUR", CounterpartyBank: "OTHERBANK", BalanceAfter: "50000.00", Channel: "MOBILE"},
			{EventId: "t-over", CustomerId: "C1001", AccountId: "A1001-01", OccurredAt: now, Type: "TRANSFER_OUT", Amount: "12500.00", Currency: "EUR", CounterpartyBank: "OTHERBANK", BalanceAfter: "50000.00", Channel: "MOBILE"},
		}})
		return err
	})
	if err != nil || resp.Accepted != 2 {
		t.Fatalf("publish: %v %v", resp, err)
	}
	sent := time.Now()

	var got *cwv1.AlertUpdate
	deadline := time.After(5 * time.Second)
	for got == nil {
		select {
		case u, ok := <-updates:
			if !ok {
				t.Fatal("subscribe stream ended")
			}
			if u.Change == cwv1.AlertChange_ALERT_CHANGE_CREATED {
				got = u
			}
		case <-deadline:
			t.Fatal("no alert on the manager's stream within 5 s")
		}
	}
	t.Logf("alert after %s", time.Since(sent))
	a := got.Alert
	if a.CustomerId != "C1001" || a.ManagerId != "rm-001" || len(a.Reasons) == 0 {
		t.Fatalf("alert = %v", a)
	}
	r := a.Reasons[0]
	if r.RuleId != "outflow.large" || r.Observed != "12500.00" || r.Threshold != "10000.00" || r.Unit != "EUR" {
		t.Fatalf("explanation = %v", r)
	}
	if got.Cursor == "" {
		t.Fatal("update carries no cursor")
	}

	// The outflow under the threshold raised nothing.
	waitCaughtUp(t, st)
	list, err := alerts.ListAlerts(ctx, &cwv1.ListAlertsRequest{CustomerId: "C1002"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Alerts) != 0 {
		t.Fatalf("outflow under the threshold raised %v", list.Alerts)
	}
}

func waitCaughtUp(t *testing.T, st *devstack.Stack) {
	t.Helper()
	if err := demo.WaitCaughtUp(context.Background(), st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestDevStackWithRealTools checks the running stack with grpcurl, kcat and
// promtool: the services list over reflection, health SERVING everywhere,
// the topics on the broker, /metrics in valid Prometheus format.
func TestDevStackWithRealTools(t *testing.T) {
	st := startStack(t)
	grpcurl, kcat, promtool := tool(t, "grpcurl"), tool(t, "kcat"), tool(t, "promtool")
	want := map[string]string{st.Ingester.GRPCAddr(): "churnwatch.v1.IngestService", st.Rules.GRPCAddr(): "churnwatch.v1.RulesAdminService", st.Alerts.GRPCAddr(): "churnwatch.v1.AlertService"}
	for addr, svc := range want {
		out, err := exec.Command(grpcurl, "-plaintext", addr, "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), svc) || !strings.Contains(string(out), "grpc.health.v1.Health") {
			t.Fatalf("grpcurl list %s: %v\n%s", addr, err, out)
		}
		out, err = exec.Command(grpcurl, "-plaintext", addr, "grpc.health.v1.Health/Check").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SERVING") {
			t.Fatalf("health %s: %v\n%s", addr, err, out)
		}
	}
	out, err := exec.Command(kcat, "-b", st.Brokers[0], "-L").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	for _, topic := range []string{"churnwatch.events.v1", "churnwatch.customers.v1", "churnwatch.signals.v1", "churnwatch.alerts.v1", "churnwatch.events.v1.dlq"} {
		if !strings.Contains(string(out), `topic "`+topic+`" with 3 partitions`) {
			t.Fatalf("kcat -L does not list %s with 3 partitions:\n%s", topic, out)
		}
	}
	for _, h := range []string{st.Ingester.HTTPAddr(), st.Rules.HTTPAddr(), st.Alerts.HTTPAddr()} {
		resp, err := http.Get("http://" + h + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics %s: %v\n%s", h, err, out)
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			r, err := http.Get("http://" + h + p)
			if err != nil || r.StatusCode != 200 {
				t.Fatalf("%s%s: %v %v", h, p, r, err)
			}
			r.Body.Close()
		}
	}
}
