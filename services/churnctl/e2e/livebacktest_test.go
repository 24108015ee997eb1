package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/chaos"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
)

// TestLiveEqualsBacktest streams a simulated bank through the real
// pipeline (ingester → Kafka → rules with Redis state and partition-clock
// sweeps → Kafka → alerts) and checks that the alerts equal the offline
// back-test's customer by customer: same customers, alert ids, stage,
// score and severity, and per reason the same rule, observed value,
// threshold, unit and triggering events. That is what makes a back-test a
// promise about production rather than an estimate.
func TestLiveEqualsBacktest(t *testing.T) {
	const customers, months, seed = 300, 12, 11
	bank, err := simulate.Generate(simulate.Config{Customers: customers, Months: months, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := simfeed.FromBank(bank)
	want, err := backtest.Run(in, backtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Alerts) < 20 {
		t.Fatalf("the back-test raised only %d alerts: the comparison would prove little", len(want.Alerts))
	}

	st := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ing := cwv1.NewIngestServiceClient(dial(t, st, st.Ingester.GRPCAddr(), "core", auth.RoleIngest, ""))
	start := time.Now()

	// Profiles first, and seen by both consumers, so no event is scored as
	// an unknown customer.
	for i := 0; i < len(in.Customers); i += 5000 {
		var batch []*cwv1.IncomingCustomer
		for _, r := range in.Customers[i:min(i+5000, len(in.Customers))] {
			batch = append(batch, r.Value)
		}
		resp, err := ing.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: batch})
		if err != nil || int(resp.Accepted) != len(batch) {
			t.Fatalf("upsert customers: %v %v", resp, err)
		}
	}
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Events in event-time order, as churnctl ingest sends them.
	accepted := 0
	for i := 0; i < len(in.Events); i += 5000 {
		var batch []*cwv1.IncomingEvent
		for _, r := range in.Events[i:min(i+5000, len(in.Events))] {
			batch = append(batch, r.Value)
		}
		resp, err := publish(ctx, ing, batch)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		// A retried batch reports what reached the topic before as duplicate.
		if int(resp.Accepted+resp.Duplicates) != len(batch) {
			t.Fatalf("publish: %d of %d accepted: %v", resp.Accepted, len(batch), firstProblem(resp))
		}
		accepted += len(batch)
	}
	last := bank.Events[len(bank.Events)-1].OccurredAt[:10]
	if _, err := ing.CloseBusinessDay(ctx, &cwv1.CloseBusinessDayRequest{Date: last}); err != nil {
		t.Fatalf("close day %s: %v", last, err)
	}
	if err := demo.WaitCaughtUp(ctx, st, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d customers, %d events through the pipeline in %s", len(bank.Customers), accepted, time.Since(start).Round(time.Millisecond))

	live := listAlerts(ctx, t, cwv1.NewAlertServiceClient(dial(t, st, st.Alerts.GRPCAddr(), "ops", auth.RoleOps, "")))

	diffs := chaos.CompareAlerts(live, want.Alerts)
	for i, d := range diffs {
		if i == 15 {
			t.Errorf("… %d more differences", len(diffs)-i)
			break
		}
		t.Error(d)
	}
	t.Logf("live %d alerts, back-test %d alerts, %d differences", len(live), len(want.Alerts), len(diffs))
}

// listAlerts reads every alert the caller sees, page by page.
func listAlerts(ctx context.Context, t *testing.T, alerts cwv1.AlertServiceClient) []*cwv1.Alert {
	t.Helper()
	var out []*cwv1.Alert
	for tok := ""; ; {
		resp, err := alerts.ListAlerts(ctx, &cwv1.ListAlertsRequest{PageSize: 500, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp.Alerts...)
		if tok = resp.NextPageToken; tok == "" {
			return out
		}
	}
}

// publish sends one batch as a well-behaved core-banking client does: it
// backs off while the ingester rate-limits (ResourceExhausted) and retries
// the whole batch, which the ingester's dedupe makes safe.
func publish(ctx context.Context, ing cwv1.IngestServiceClient, batch []*cwv1.IncomingEvent) (*cwv1.PublishEventsResponse, error) {
	backoff := 20 * time.Millisecond
	for {
		resp, err := ing.PublishEvents(ctx, &cwv1.PublishEventsRequest{Events: batch})
		if status.Code(err) != codes.ResourceExhausted {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func firstProblem(resp *cwv1.PublishEventsResponse) string {
	for _, r := range resp.Results {
		if r.Status != cwv1.RecordStatus_RECORD_STATUS_ACCEPTED {
			return fmt.Sprintf("%s %s: %s", r.Id, r.Status, r.Reason)
		}
	}
	return ""
}
