package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/chaos"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// shadowSettings make detection more eager, so that the shadow set alerts
// customers the live set does not: a leak of shadow alerts would show.
var shadowSettings = []string{"activity.drop.p.MASS=0.2", "activity.drop.ratio.MASS=0.70", "outflow.large.amount.MASS=3000"}

// TestShadowEqualsBacktest runs a shadow threshold set beside the live one
// while a simulated bank streams through the real pipeline, and checks:
// `shadow report`'s alerts of the set equal `churnctl backtest
// --thresholds` of the proposed set over the same events, the live alerts
// equal the back-test of the live set, and no shadow-only customer reaches
// ListAlerts or Subscribe.
func TestShadowEqualsBacktest(t *testing.T) {
	const customers, months, seed = 300, 12, 11
	bank, err := simulate.Generate(simulate.Config{Customers: customers, Months: months, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := bank.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	thFile := filepath.Join(dir, "proposed.txt")
	if err := os.WriteFile(thFile, []byte(strings.Join(shadowSettings, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	noEnv := map[string]string{}
	wantLive := backtestCLI(ctx, t, noEnv, "--customers", filepath.Join(dir, "customers.ndjson"), "--events", filepath.Join(dir, "events.ndjson"), "--json")
	wantShadow := backtestCLI(ctx, t, noEnv, "--customers", filepath.Join(dir, "customers.ndjson"), "--events", filepath.Join(dir, "events.ndjson"),
		"--thresholds", thFile, "--json")
	liveCust := map[string]bool{}
	for _, a := range wantLive {
		liveCust[a.CustomerId] = true
	}
	shadowOnly := map[string]bool{}
	for _, a := range wantShadow {
		if !liveCust[a.CustomerId] {
			shadowOnly[a.CustomerId] = true
		}
	}
	if len(wantLive) < 20 || len(shadowOnly) < 5 {
		t.Fatalf("back-tests: live %d alerts, proposed %d, %d customers only the proposed set alerts: the comparison would prove little",
			len(wantLive), len(wantShadow), len(shadowOnly))
	}

	st := startStack(t)
	tok, err := st.Token("ops-1", auth.RoleOps, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	env := st.Env()
	env["CHURNWATCH_TOKEN"] = tok
	if out := runCLI(ctx, t, env, append(append([]string{"thresholds", "shadow"}, shadowSettings...), "--name", "eager", "--reason", "try more eager detection")...); !strings.Contains(out, "eager") {
		t.Fatalf("thresholds shadow: %q", out)
	}
	if out := runCLI(ctx, t, env, "thresholds", "shadow", "--list"); !strings.Contains(out, "eager  running") || !strings.Contains(out, "outflow.large.amount.MASS") {
		t.Fatalf("thresholds shadow --list: %q", out)
	}

	// Everything the admin's Subscribe stream carries while the bank streams.
	alerts := cwv1.NewAlertServiceClient(dial(t, st, st.Alerts.GRPCAddr(), "admin-1", auth.RoleAdmin, ""))
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	sub, err := alerts.Subscribe(subCtx, &cwv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	subscribed := map[string]bool{}
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for {
			m, err := sub.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			subscribed[m.GetUpdate().GetAlert().GetCustomerId()] = true
			mu.Unlock()
		}
	}()

	in, _ := simfeed.FromBank(bank)
	ing := cwv1.NewIngestServiceClient(dial(t, st, st.Ingester.GRPCAddr(), "core", auth.RoleIngest, ""))
	var custs []*cwv1.IncomingCustomer
	for _, r := range in.Customers {
		custs = append(custs, r.Value)
	}
	if resp, err := ing.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: custs}); err != nil || int(resp.Accepted) != len(custs) {
		t.Fatalf("upsert customers: %v %v", resp, err)
	}
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(in.Events); i += 5000 {
		var batch []*cwv1.IncomingEvent
		for _, r := range in.Events[i:min(i+5000, len(in.Events))] {
			batch = append(batch, r.Value)
		}
		resp, err := publish(ctx, ing, batch)
		if err != nil || int(resp.Accepted+resp.Duplicates) != len(batch) {
			t.Fatalf("publish: %v %v", err, resp)
		}
	}
	last := bank.Events[len(bank.Events)-1].OccurredAt[:10]
	if _, err := ing.CloseBusinessDay(ctx, &cwv1.CloseBusinessDayRequest{Date: last}); err != nil {
		t.Fatalf("close day %s: %v", last, err)
	}
	if err := demo.WaitCaughtUp(ctx, st, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	live := listAlerts(ctx, t, alerts)
	for i, d := range chaos.CompareAlerts(live, wantLive) {
		if i == 10 {
			t.Error("… more live differences")
			break
		}
		t.Error("live: " + d)
	}
	report, err := cwv1.NewShadowServiceClient(dial(t, st, st.Rules.GRPCAddr(), "ops-1", auth.RoleOps, "")).
		GetShadowReport(ctx, &cwv1.GetShadowReportRequest{Name: "eager"})
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Sets) != 2 || !report.Sets[0].Live || report.Sets[1].Name != "eager" {
		t.Fatalf("report sets: %v", report.Sets)
	}
	got := report.Sets[1].ShadowAlerts
	for i, d := range chaos.CompareAlerts(got, wantShadow) {
		if i == 10 {
			t.Error("… more shadow differences")
			break
		}
		t.Error("shadow: " + d)
	}
	if len(report.Sets[0].Alerts) != len(live) {
		t.Errorf("report's live set: %d alerts, ListAlerts %d", len(report.Sets[0].Alerts), len(live))
	}
	if n := len(report.Sets[1].OnlyThisSet); n != len(shadowOnly) {
		t.Errorf("report: %d customers only the shadow set alerted, back-tests say %d", n, len(shadowOnly))
	}

	stopSub()
	<-subDone
	for _, a := range live {
		if shadowOnly[a.CustomerId] {
			t.Errorf("shadow-only customer %s has a live alert", a.CustomerId)
		}
	}
	mu.Lock()
	if len(subscribed) == 0 {
		t.Error("Subscribe carried nothing: the leak check would prove nothing")
	}
	for c := range shadowOnly {
		if subscribed[c] {
			t.Errorf("shadow-only customer %s reached Subscribe", c)
		}
	}
	mu.Unlock()

	// Precision comes in as RMs resolve live alerts: one churned (true),
	// one false alarm (false). The shadow set is judged on those of the two
	// customers it alerted too.
	shadowCust := map[string]bool{}
	for _, a := range got {
		shadowCust[a.CustomerId] = true
	}
	var judgedInShadow int32
	for i, o := range []cwv1.Outcome{cwv1.Outcome_OUTCOME_CHURNED, cwv1.Outcome_OUTCOME_FALSE_ALARM} {
		if _, err := alerts.ResolveAlert(ctx, &cwv1.ResolveAlertRequest{AlertId: live[i].AlertId, Outcome: o, Note: "shadow test"}); err != nil {
			t.Fatalf("resolve %s: %v", live[i].AlertId, err)
		}
		if shadowCust[live[i].CustomerId] {
			judgedInShadow++
		}
	}
	shadowClient := cwv1.NewShadowServiceClient(dial(t, st, st.Rules.GRPCAddr(), "ops-1", auth.RoleOps, ""))
	deadline := time.Now().Add(30 * time.Second)
	for {
		report, err = shadowClient.GetShadowReport(ctx, &cwv1.GetShadowReportRequest{Name: "eager"})
		if err != nil {
			t.Fatal(err)
		}
		if report.Sets[0].Judged == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if l, s := report.Sets[0], report.Sets[1]; l.Judged != 2 || l.Correct != 1 || s.Judged != judgedInShadow || s.Correct > s.Judged || judgedInShadow == 0 {
		t.Errorf("precision after two outcomes: live %d of %d, shadow %d of %d (want live 1 of 2, shadow of %d)", l.Correct, l.Judged, s.Correct, s.Judged, judgedInShadow)
	}

	// Bad requests say what is wrong.
	for _, tc := range []struct {
		req  *cwv1.StartShadowRequest
		code codes.Code
		want string
	}{
		{&cwv1.StartShadowRequest{Name: "eager", Reason: "again", Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "2000"}}}, codes.AlreadyExists, "choose another name"},
		{&cwv1.StartShadowRequest{Name: "Bad Name", Reason: "x", Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "2000"}}}, codes.InvalidArgument, "a-z"},
		{&cwv1.StartShadowRequest{Name: "same", Reason: "x", Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "10000"}}}, codes.InvalidArgument, "differs"},
		{&cwv1.StartShadowRequest{Name: "why", Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "2000"}}}, codes.InvalidArgument, "reason"},
	} {
		_, err := shadowClient.StartShadow(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("StartShadow %v: %v, want %s naming %q", tc.req, err, tc.code, tc.want)
		}
	}
	if _, err := cwv1.NewShadowServiceClient(dial(t, st, st.Rules.GRPCAddr(), "rm-001", auth.RoleManager, "")).
		ListShadows(ctx, &cwv1.ListShadowsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a manager listing shadow sets: %v, want PermissionDenied", err)
	}

	// churnctl shadow report prints the same figures.
	var sets []struct {
		Name      string   `json:"name"`
		Alerts    int      `json:"alerts"`
		Precision *float64 `json:"precision"`
	}
	if err := json.Unmarshal([]byte(runCLI(ctx, t, env, "shadow", "report", "--json")), &sets); err != nil || len(sets) != 2 ||
		sets[0].Alerts != len(live) || sets[1].Alerts != len(wantShadow) {
		t.Fatalf("shadow report --json: %v %+v", err, sets)
	}
	if out := runCLI(ctx, t, env, "shadow", "report"); !strings.Contains(out, "eager: ") || !strings.Contains(out, "only this set alerted") {
		t.Errorf("shadow report: %q", out)
	}
	if out := runCLI(ctx, t, env, "thresholds", "shadow", "--stop", "eager"); !strings.Contains(out, "stopped") {
		t.Errorf("--stop: %q", out)
	}
	// A purge right after the stop is refused, saying when it can run
	// (the purge itself: services/rules/internal/store TestPurgeShadow).
	var stdout, stderr bytes.Buffer
	code := cli.Main(ctx, &cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }},
		[]string{"thresholds", "shadow", "--purge", "eager"})
	t.Logf("--purge right after --stop: exit %d: %s", code, strings.TrimSpace(stderr.String()))
	if code == 0 || !strings.Contains(stderr.String(), "less than five minutes ago") {
		t.Errorf("--purge right after --stop: exit %d: %s", code, stderr.String())
	}
	t.Logf("live %d alerts, shadow %d, %d only in shadow", len(live), len(got), len(shadowOnly))
}

func runCLI(ctx context.Context, t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := cli.Main(ctx, &cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}, args); code != 0 {
		t.Fatalf("churnctl %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String()
}

// backtestCLI runs churnctl backtest --json and returns its alerts (every
// line but the summary).
func backtestCLI(ctx context.Context, t *testing.T, env map[string]string, args ...string) []*cwv1.Alert {
	t.Helper()
	out := runCLI(ctx, t, env, append([]string{"backtest"}, args...)...)
	var alerts []*cwv1.Alert
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for _, l := range lines[:max(0, len(lines)-1)] {
		a := &cwv1.Alert{}
		if err := protojson.Unmarshal([]byte(l), a); err != nil {
			t.Fatalf("backtest alert line %q: %v", l, err)
		}
		alerts = append(alerts, a)
	}
	return alerts
}
