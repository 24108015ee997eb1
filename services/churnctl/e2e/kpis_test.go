package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"io"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	alertsapp "github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/money"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
	rulesapp "github.com/churnwatch/churnwatch/services/rules/app"
)

// secondInstances starts another rules and another alerts instance on the
// stack's broker and Redis: they join the consumer groups (partitions move
// to them mid-stream) and, when stop is called, shut down (the partitions
// move back), as a rolling restart does.
func secondInstances(t *testing.T, st *devstack.Stack) (stop func()) {
	t.Helper()
	env := st.Env()
	env["CHURNWATCH_GRPC_ADDR"], env["CHURNWATCH_HTTP_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	rcfg, err := rulesapp.LoadConfig(config.FromMap(env))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rulesapp.New(ctx, rcfg, rulesapp.WithLogOutput(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	acfg, err := alertsapp.LoadConfig(config.FromMap(env))
	if err != nil {
		t.Fatal(err)
	}
	a, err := alertsapp.New(ctx, acfg, alertsapp.WithLogOutput(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- r.Run(ctx) }()
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("second instance: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

// restartEach restarts the named services of the stack in place, one after
// the other, and logs how long each took.
func restartEach(ctx context.Context, t *testing.T, st *devstack.Stack, names ...string) error {
	for _, name := range names {
		began := time.Now()
		if err := st.Restart(ctx, name); err != nil {
			return err
		}
		t.Logf("%s restarted in %s", name, time.Since(began).Round(time.Millisecond))
	}
	return nil
}

// waitGroup waits until each of groups has n members, every one of them
// assigned at least one partition.
func waitGroup(ctx context.Context, t *testing.T, st *devstack.Stack, n int, groups ...string) {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(st.Brokers...)}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: groups})
		var gs []kafka.DescribeGroupsResponseGroup
		if err == nil {
			gs = resp.Groups
		}
		ok := err == nil && len(gs) == len(groups)
		for _, g := range gs {
			ok = ok && g.Error == nil && len(g.Members) == n
			for _, m := range g.Members {
				parts := 0
				for _, tp := range m.MemberAssignments.Topics {
					parts += len(tp.Partitions)
				}
				ok = ok && parts > 0
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer groups %v did not settle on %d members with partitions each: %+v %v", groups, n, gs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bookFigures are the independent customer KPIs of one month and group.
type bookFigures struct {
	stages           [4]int64 // ACTIVE, DECLINING, CHURNED, WON_BACK at the month's end
	notChurnedStart  int64
	enteredChurned   int64
	winBacks         int64
	balanceMinor     int64 // EUR
	balanceKnownOnce bool
}

// independentKPIs computes the customer KPIs of SPEC §9 straight from the
// simulated bank's events and profiles, without the engine: a customer
// exists from its first event; DECLINING 90 days and CHURNED 180 days after
// its last customer-initiated activity (or its first event); activity takes
// DECLINING back to ACTIVE and CHURNED to WON_BACK. Balances: each
// account's last balanceAfter (0 once closed), summed per customer.
// Result: month → group ("*", "t:TIER", "b:BRANCH") → figures.
func independentKPIs(t *testing.T, bank *simulate.Bank, months []time.Time) map[string]map[string]*bookFigures {
	t.Helper()
	const day = 24 * time.Hour
	initiated := map[string]bool{"DEPOSIT": true, "WITHDRAWAL": true, "TRANSFER_IN": true, "TRANSFER_OUT": true, "CARD_PAYMENT": true, "SALARY": true}
	profile := map[string]simulate.Customer{}
	for _, c := range bank.Customers {
		profile[c.CustomerID] = c
	}
	byCustomer := map[string][]simulate.Event{}
	for _, e := range bank.Events {
		byCustomer[e.CustomerID] = append(byCustomer[e.CustomerID], e)
	}
	out := map[string]map[string]*bookFigures{}
	get := func(month, group string) *bookFigures {
		if out[month] == nil {
			out[month] = map[string]*bookFigures{}
		}
		if out[month][group] == nil {
			out[month][group] = &bookFigures{}
		}
		return out[month][group]
	}
	for id, evs := range byCustomer {
		p := profile[id]
		groups := []string{"*", "t:" + p.Tier, "b:" + p.BranchID}
		type transition struct {
			at       time.Time
			from, to int
		}
		var trans []transition
		stage := 0 // ACTIVE
		first, err := time.Parse(time.RFC3339, evs[0].OccurredAt)
		if err != nil {
			t.Fatal(err)
		}
		anchor, declFired, churnFired, lastAct := first, false, false, time.Time{}
		fire := func(until time.Time) {
			if at := anchor.Add(90 * day); !declFired && !at.After(until) {
				declFired = true
				if stage != 2 {
					trans = append(trans, transition{at, stage, 1})
					stage = 1
				}
			}
			if at := anchor.Add(180 * day); !churnFired && !at.After(until) {
				churnFired = true
				trans = append(trans, transition{at, stage, 2})
				stage = 2
			}
		}
		balances := map[string]int64{}
		type balanceAt struct {
			at  time.Time
			sum int64
		}
		var bal []balanceAt
		for _, e := range evs {
			at, err := time.Parse(time.RFC3339, e.OccurredAt)
			if err != nil {
				t.Fatal(err)
			}
			fire(at)
			if initiated[e.Type] && at.After(lastAct) {
				lastAct, anchor, declFired, churnFired = at, at, false, false
				switch stage {
				case 1:
					trans = append(trans, transition{at, 1, 0})
					stage = 0
				case 2:
					trans = append(trans, transition{at, 2, 3})
					stage = 3
				}
			}
			if e.BalanceAfter != "" || e.Type == "ACCOUNT_CLOSED" {
				v := int64(0)
				if e.BalanceAfter != "" {
					if v, err = money.ParseMinor(e.BalanceAfter, "EUR"); err != nil {
						t.Fatal(err)
					}
				}
				balances[e.AccountID] = v
				sum := int64(0)
				for _, b := range balances {
					sum += b
				}
				bal = append(bal, balanceAt{at, sum})
			}
		}
		fire(months[len(months)-1].AddDate(0, 1, 0).Add(-time.Nanosecond))
		for _, m := range months {
			start, end := m, m.AddDate(0, 1, 0)
			if !first.Before(end) {
				continue // not a customer yet
			}
			stageAt := func(before time.Time) (int, bool) {
				if !first.Before(before) {
					return 0, false
				}
				s := 0
				for _, tr := range trans {
					if tr.at.Before(before) {
						s = tr.to
					}
				}
				return s, true
			}
			endStage, _ := stageAt(end)
			startStage, existed := stageAt(start)
			var entered, won int64
			for _, tr := range trans {
				if !tr.at.Before(start) && tr.at.Before(end) {
					if tr.to == 2 {
						entered++
					}
					if tr.from == 2 && tr.to == 3 {
						won++
					}
				}
			}
			var held int64
			known := false
			for _, b := range bal {
				if b.at.Before(end) {
					held, known = b.sum, true
				}
			}
			for _, g := range groups {
				f := get(m.Format("2006-01"), g)
				f.stages[endStage]++
				if existed && startStage != 2 {
					f.notChurnedStart++
				}
				f.enteredChurned += entered
				f.winBacks += won
				if known {
					f.balanceMinor += held
					f.balanceKnownOnce = true
				}
			}
		}
	}
	return out
}

// TestKPIsAgreeWithTheBank streams a simulated bank through the whole
// pipeline, works a few alerts, and checks KpiService against an
// independent computation from the bank's own events (customers by stage,
// churn rate, win-backs, balances held — by month, tier and branch) and
// from the alerts as ListAlerts shows them; then that a branch head sees
// their branch only, that managers are refused, and that churnctl report
// prints the RPC's figures.
func TestKPIsAgreeWithTheBank(t *testing.T) {
	kpisAgreeWithTheBank(t, startStack(t))
}

// TestKPIsAgreeWithTheBankOnRealKafka is the same on three real Kafka
// brokers: the second instances, the restarts and the group hand-overs go
// through a real group coordinator.
func TestKPIsAgreeWithTheBankOnRealKafka(t *testing.T) {
	k := testkit.RealKafka(t, 3)
	kpisAgreeWithTheBank(t, startStackOn(t, map[string]string{"CHURNWATCH_KAFKA_BROKERS": strings.Join(k.Brokers, ",")}))
}

func kpisAgreeWithTheBank(t *testing.T, st *devstack.Stack) {
	const customers, months, seed = 600, 12, 5
	bank, err := simulate.Generate(simulate.Config{Customers: customers, Months: months, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := simfeed.FromBank(bank)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ing := cwv1.NewIngestServiceClient(dial(t, st, st.Ingester.GRPCAddr(), "core", auth.RoleIngest, ""))
	var profiles []*cwv1.IncomingCustomer
	for _, r := range in.Customers {
		profiles = append(profiles, r.Value)
	}
	if resp, err := ing.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: profiles}); err != nil || int(resp.Accepted) != len(profiles) {
		t.Fatalf("upsert customers: %v %v", resp, err)
	}
	if err := demo.WaitCaughtUp(ctx, st, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// A second rules and alerts instance joins after a third of the
	// events and leaves after two thirds: partitions are handed over twice
	// mid-stream, as in a rolling restart. At half of the events the
	// ingester, the rules service and the alerts service are restarted in
	// place, one after the other, while ingest goes on (retrying while the
	// ingester is unavailable, as churnctl does).
	var stop func()
	var restarts chan error
	restarting, duringRestarts, unavailable := false, 0, 0
	for i := 0; i < len(in.Events); i += 5000 {
		switch {
		case stop == nil && i >= len(in.Events)/3:
			stop = secondInstances(t, st)
			waitGroup(ctx, t, st, 2, "churnwatch-rules", "churnwatch-rules-kpi", "churnwatch-alerts")
		case restarts == nil && i >= len(in.Events)/2:
			restarts, restarting = make(chan error, 1), true
			go func() { restarts <- restartEach(ctx, t, st, "ingester", "rules", "alerts") }()
		case stop != nil && restarts != nil && i >= 2*len(in.Events)/3:
			if restarting {
				if err := <-restarts; err != nil {
					t.Fatal(err)
				}
				restarting = false
			}
			stop()
			stop = func() {}
			waitGroup(ctx, t, st, 1, "churnwatch-rules", "churnwatch-rules-kpi", "churnwatch-alerts")
		}
		if restarting {
			select {
			case err := <-restarts:
				if err != nil {
					t.Fatal(err)
				}
				restarting = false
			default:
				duringRestarts++
			}
		}
		var batch []*cwv1.IncomingEvent
		for _, r := range in.Events[i:min(i+5000, len(in.Events))] {
			batch = append(batch, r.Value)
		}
		var resp *cwv1.PublishEventsResponse
		err := retrying(ctx, func(ctx context.Context) (err error) {
			resp, err = publish(ctx, ing, batch)
			if status.Code(err) == codes.Unavailable {
				unavailable++
			}
			return err
		})
		if err != nil || int(resp.Accepted+resp.Duplicates) != len(batch) {
			t.Fatalf("publish: %v %v", err, resp)
		}
	}
	if restarts == nil || restarting || duringRestarts == 0 {
		t.Fatalf("restarts began %v, still running %v, %d batches published while they ran: want them begun, done, and overlapping ingest", restarts != nil, restarting, duringRestarts)
	}
	t.Logf("%d batches of 5000 events published while the three services restarted; %d calls answered Unavailable and were retried", duringRestarts, unavailable)
	lastEvent, _ := time.Parse(time.RFC3339, bank.Events[len(bank.Events)-1].OccurredAt)
	if _, err := ing.CloseBusinessDay(ctx, &cwv1.CloseBusinessDayRequest{Date: lastEvent.Format("2006-01-02")}); err != nil {
		t.Fatal(err)
	}
	if err := demo.WaitCaughtUp(ctx, st, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	// Work some alerts: acknowledge every third, resolve every fifth
	// (outcomes in turn), as RMs would.
	alertsC := cwv1.NewAlertServiceClient(dial(t, st, st.Alerts.GRPCAddr(), "ops-1", auth.RoleOps, ""))
	all := listAlerts(ctx, t, alertsC)
	if len(all) < 20 {
		t.Fatalf("only %d alerts: the alert figures would prove little", len(all))
	}
	outcomes := []cwv1.Outcome{cwv1.Outcome_OUTCOME_RETAINED, cwv1.Outcome_OUTCOME_CHURNED, cwv1.Outcome_OUTCOME_FALSE_ALARM, cwv1.Outcome_OUTCOME_UNREACHABLE}
	acked, resolved := 0, map[cwv1.Outcome]int64{}
	for i, a := range all {
		if i%3 == 0 && a.State == cwv1.AlertState_ALERT_STATE_OPEN {
			if _, err := alertsC.AcknowledgeAlert(ctx, &cwv1.AcknowledgeAlertRequest{AlertId: a.AlertId}); err != nil {
				t.Fatalf("acknowledge: %v", err)
			}
			acked++
		}
		if i%5 == 0 && a.State != cwv1.AlertState_ALERT_STATE_RESOLVED {
			o := outcomes[(i/5)%len(outcomes)]
			if _, err := alertsC.ResolveAlert(ctx, &cwv1.ResolveAlertRequest{AlertId: a.AlertId, Outcome: o, Note: "kpi test"}); err != nil {
				t.Fatalf("resolve: %v", err)
			}
			resolved[o]++
		}
	}
	if err := demo.WaitCaughtUp(ctx, st, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The months that ended before the last event: every deadline in them
	// has passed every partition clock.
	first, _ := time.Parse(time.RFC3339, bank.Events[0].OccurredAt)
	var ms []time.Time
	for m := time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC); !m.AddDate(0, 1, 0).After(lastEvent); m = m.AddDate(0, 1, 0) {
		ms = append(ms, m)
	}
	want := independentKPIs(t, bank, ms)
	kpis := cwv1.NewKpiServiceClient(dial(t, st, st.Rules.GRPCAddr(), "ops-1", auth.RoleOps, ""))
	last := ms[len(ms)-1].Format("2006-01")
	called := time.Now()
	resp, err := kpis.GetKpis(ctx, &cwv1.GetKpisRequest{Month: last, MonthsBack: int32(len(ms))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GetKpis of %d months for %d customers and %d alerts answered in %s", len(ms), customers, len(all), time.Since(called).Round(time.Microsecond))
	if len(resp.Months) != len(ms) {
		t.Fatalf("%d months, want %d", len(resp.Months), len(ms))
	}
	var churnedSeen, wonSeen int64
	for _, mk := range resp.Months {
		if !mk.Closed {
			t.Errorf("%s: not closed although every partition clock passed it", mk.Month)
		}
		check := func(group string, f *cwv1.Figures) {
			t.Helper()
			w := want[mk.Month][group]
			if w == nil {
				w = &bookFigures{}
			}
			s := f.GetCustomersByStage()
			got := [4]int64{s.GetActive(), s.GetDeclining(), s.GetChurned(), s.GetWonBack()}
			if got != w.stages {
				t.Errorf("%s %s: customers by stage %v, independently %v", mk.Month, group, got, w.stages)
			}
			if f.NotChurnedAtStart != w.notChurnedStart || f.EnteredChurned != w.enteredChurned || f.WinBacks != w.winBacks {
				t.Errorf("%s %s: not churned at start %d, entering CHURNED %d, win-backs %d; independently %d, %d, %d", mk.Month, group,
					f.NotChurnedAtStart, f.EnteredChurned, f.WinBacks, w.notChurnedStart, w.enteredChurned, w.winBacks)
			}
			rate := 0.0
			if w.notChurnedStart > 0 {
				rate = float64(w.enteredChurned) / float64(w.notChurnedStart)
			}
			if math.Abs(f.ChurnRate-rate) > 1e-9 || math.Abs(f.RetentionRate-(1-rate)) > 1e-9 {
				t.Errorf("%s %s: churn rate %v, retention %v; independently %v", mk.Month, group, f.ChurnRate, f.RetentionRate, rate)
			}
			var held int64
			for _, b := range f.Balances {
				if b.Currency == "EUR" {
					held = b.HeldMinor
				}
			}
			if held != w.balanceMinor {
				t.Errorf("%s %s: balances held %d, independently %d", mk.Month, group, held, w.balanceMinor)
			}
		}
		check("*", mk.Total)
		for _, tf := range mk.Tiers {
			check("t:"+strings.TrimPrefix(tf.Tier.String(), "TIER_"), tf.Figures)
		}
		for _, bf := range mk.Branches {
			check("b:"+bf.BranchId, bf.Figures)
		}
		if len(mk.Tiers) == 0 || len(mk.Branches) == 0 {
			t.Errorf("%s: no tier or branch figures", mk.Month)
		}
		churnedSeen += mk.Total.EnteredChurned
		wonSeen += mk.Total.WinBacks
	}
	if churnedSeen == 0 {
		t.Fatal("no customer churned in the simulated year: the comparison would prove little")
	}
	t.Logf("%d months compared; %d customers entered CHURNED, %d won back", len(ms), churnedSeen, wonSeen)

	// Alerts raised: in the month of their first signal (event time), so
	// the simulated year's alerts land in its months, not in today's.
	raisedIn := map[string]int64{}
	for _, a := range all {
		raisedIn[a.FirstSignalAt.AsTime().UTC().Format("2006-01")]++
	}
	var raisedSeen int64
	for _, mk := range resp.Months {
		if mk.Alerts.Raised != raisedIn[mk.Month] {
			t.Errorf("%s: %d alerts raised, ListAlerts has %d with a first signal in it", mk.Month, mk.Alerts.Raised, raisedIn[mk.Month])
		}
		raisedSeen += mk.Alerts.Raised
	}
	if raisedSeen == 0 {
		t.Error("no alert raised in any simulated month")
	}

	// Acknowledged and resolved now (wall clock: people did it today).
	now := time.Now().UTC().Format("2006-01")
	cur, err := kpis.GetKpis(ctx, &cwv1.GetKpisRequest{Month: now, MonthsBack: 1})
	if err != nil {
		t.Fatal(err)
	}
	af := cur.Months[0].Alerts
	raisedNow := raisedIn[now]
	var resolvedAll int64
	gotResolved := map[cwv1.Outcome]int64{}
	for _, o := range af.ResolvedByOutcome {
		gotResolved[o.Outcome] = o.Alerts
	}
	for _, n := range resolved {
		resolvedAll += n
	}
	if af.Raised != raisedNow || af.Acknowledged != int64(acked) || af.Resolved != resolvedAll {
		t.Errorf("alerts: raised %d, acknowledged %d, resolved %d; ListAlerts and the test: %d, %d, %d",
			af.Raised, af.Acknowledged, af.Resolved, raisedNow, acked, resolvedAll)
	}
	for o, n := range resolved {
		if gotResolved[o] != n {
			t.Errorf("resolved %s: %d, want %d", o, gotResolved[o], n)
		}
	}
	if af.AcknowledgedWithinSla != int64(acked) {
		t.Errorf("acknowledged within the SLA %d, want all %d (acknowledged right away)", af.AcknowledgedWithinSla, acked)
	}
	var precisionAlerts int64
	for _, p := range af.Precision {
		precisionAlerts += p.Retained + p.Churned + p.Unreachable + p.FalseAlarm
	}
	if precisionAlerts < resolvedAll {
		t.Errorf("precision counts %d resolutions, want at least %d (one per rule of each)", precisionAlerts, resolvedAll)
	}

	// A branch head sees their branch, whatever they ask for; another
	// branch is refused; managers and ingest are refused.
	branches := map[string]bool{}
	for _, c := range bank.Customers {
		branches[c.BranchID] = true
	}
	var names []string
	for b := range branches {
		names = append(names, b)
	}
	sort.Strings(names)
	br := names[0]
	head := cwv1.NewKpiServiceClient(dial(t, st, st.Rules.GRPCAddr(), "bh-1", auth.RoleBranchHead, br))
	own, err := head.GetKpis(ctx, &cwv1.GetKpisRequest{Month: last, MonthsBack: 1})
	if err != nil {
		t.Fatal(err)
	}
	w := want[last]["b:"+br]
	s := own.Months[0].Total.CustomersByStage
	if own.BranchId != br || [4]int64{s.Active, s.Declining, s.Churned, s.WonBack} != w.stages || len(own.Months[0].Branches) != 1 {
		t.Errorf("branch head of %s: %v, want stages %v", br, own.Months[0].Total, w.stages)
	}
	if len(names) > 1 {
		if _, err := head.GetKpis(ctx, &cwv1.GetKpisRequest{Month: last, BranchId: names[1]}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("branch head asking for another branch: %v, want PermissionDenied", err)
		}
	}
	for _, role := range []auth.Role{auth.RoleManager, auth.RoleIngest} {
		c := cwv1.NewKpiServiceClient(dial(t, st, st.Rules.GRPCAddr(), "x-1", role, ""))
		if _, err := c.GetKpis(ctx, &cwv1.GetKpisRequest{Month: last}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", role, err)
		}
	}
	if _, err := kpis.GetKpis(ctx, &cwv1.GetKpisRequest{Month: "2025/03"}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(status.Convert(err).Message(), "YYYY-MM") {
		t.Errorf("bad month: %v, want InvalidArgument naming the format", err)
	}

	// churnctl report prints the RPC's figures.
	tok, err := st.Token("ops-1", auth.RoleOps, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	env := st.Env()
	env["CHURNWATCH_TOKEN"] = tok
	lastFig := resp.Months[len(resp.Months)-1].Total
	var stdout, stderr bytes.Buffer
	if code := cli.Main(ctx, &cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }},
		[]string{"report", "--month", last, "--json"}); code != 0 || strings.Count(stdout.String(), "\n") != 1 ||
		!strings.Contains(stdout.String(), `"month":"`+last+`"`) {
		t.Errorf("report --json: exit %d, %q %s", code, stdout.String(), stderr.String())
	}
	for _, format := range []string{"md", "csv", "html"} {
		var stdout, stderr bytes.Buffer
		code := cli.Main(ctx, &cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }},
			[]string{"report", "--month", last, "--format", format})
		if code != 0 {
			t.Fatalf("report --format %s: exit %d: %s", format, code, stderr.String())
		}
		cells := []string{fmt.Sprintf("%.2f%%", 100*lastFig.ChurnRate), fmt.Sprintf("%d", lastFig.CustomersByStage.Churned), "Overdue alerts by RM"}
		if format == "csv" {
			cells[2] = "section,row,column,value" // empty sections have no cells
		}
		for _, cell := range cells {
			if !strings.Contains(stdout.String(), cell) {
				t.Errorf("report --format %s lacks %q", format, cell)
			}
		}
	}
}
