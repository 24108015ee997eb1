package app

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// major is minor units as the ingester's input has them ("-1234.05").
func major(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// incoming is the bank as `churnctl backtest` files hold it, with only
// the events from from on.
func (b *bank) incoming(from time.Time) backtest.Input {
	var in backtest.Input
	for i, c := range b.customers {
		in.Customers = append(in.Customers, backtest.Record[*cwv1.IncomingCustomer]{Line: i + 1, Value: &cwv1.IncomingCustomer{
			CustomerId: c.GetCustomerId(), Tier: strings.TrimPrefix(c.GetTier().String(), "TIER_"), ManagerId: c.GetManagerId(), BranchId: c.GetBranchId()}})
	}
	for i, ev := range b.events {
		if ev.GetOccurredAt().AsTime().Before(from) {
			continue
		}
		ie := &cwv1.IncomingEvent{EventId: ev.GetEventId(), CustomerId: ev.GetCustomerId(), AccountId: ev.GetAccountId(),
			OccurredAt: ev.GetOccurredAt().AsTime().Format(time.RFC3339), Type: strings.TrimPrefix(ev.GetType().String(), "EVENT_TYPE_"),
			Currency: ev.GetCurrency(), CounterpartyBank: ev.GetCounterpartyBank()}
		if ev.GetAmountMinor() > 0 {
			ie.Amount = major(ev.GetAmountMinor())
		}
		if ev.BalanceAfterMinor != nil {
			ie.BalanceAfter = major(ev.GetBalanceAfterMinor())
		}
		if ev.Sentiment != nil {
			ie.Sentiment = fmt.Sprint(ev.GetSentiment())
		}
		in.Events = append(in.Events, backtest.Record[*cwv1.IncomingEvent]{Line: i + 1, Value: ie})
	}
	return in
}

// resolved is an alert update on the alerts topic: the alert of customer
// raised at created, resolved with outcome.
func resolved(id, customer string, tier cwv1.Tier, created time.Time, outcome cwv1.Outcome) kafka.Message {
	at := timestamppb.New(created.Add(48 * time.Hour))
	u := &cwv1.AlertUpdate{At: at, Alert: &cwv1.Alert{AlertId: id, CustomerId: customer, Version: 3, Tier: tier,
		CreatedAt: timestamppb.New(created), UpdatedAt: at, ResolvedAt: at, Outcome: outcome,
		Reasons: []*cwv1.Explanation{{RuleId: "dormancy.declining"}}}}
	b, err := proto.Marshal(u)
	if err != nil {
		panic(err)
	}
	return kafka.Message{Key: []byte(customer), Value: b}
}

// TestServerBacktest: a proposal without a client back-test gets the
// rules service's, read from its events topic (real broker, real
// redis-server) over the configured window; it equals what the churnctl
// back-test engine computes from the same events given as files
// (validation and all), per rule and tier; precision and recall before and
// after come from the alert outcomes recorded on the alerts topic, matched
// by customer within 30 days of the alert.
func TestServerBacktest(t *testing.T) {
	s := newStack(t, 3)
	cfg := s.config(500)
	cfg.BacktestDays = 400 // the bank's year; the 1-day window is checked below
	app := s.start(cfg)
	ctx := context.Background()
	b := newBank(28, 13)
	// The profiles as if accepted at the start of the year (record
	// timestamps), the events now: a window starting later skips the
	// profile records and takes the profiles from Redis.
	profiles := b.profileMsgs()
	for i := range profiles {
		profiles[i].Time = yearStart
	}
	s.produce(s.topics.Events, profiles...)
	s.produce(s.topics.Events, b.eventMsgs()...)
	s.waitCaughtUp(cfg.Group, s.topics.Events, 120*time.Second)

	newest := b.events[len(b.events)-1].GetOccurredAt().AsTime()
	from := newest.Add(-400 * 24 * time.Hour)
	change := []*cwv1.ThresholdSetting{{Key: "dormancy.declining.days", Value: "35"}, {Key: "complaints.count", Value: "3"}}

	// The independent computation: the churnctl back-test over files.
	live := engine.DefaultThresholds()
	live.Version = 1
	next := live
	for _, kv := range change {
		if err := next.Set(kv.GetKey(), kv.GetValue()); err != nil {
			t.Fatal(err)
		}
	}
	in := b.incoming(from)
	before, err := backtest.Run(in, backtest.Options{Thresholds: &live})
	if err != nil {
		t.Fatal(err)
	}
	after, err := backtest.Run(in, backtest.Options{Thresholds: &next})
	if err != nil {
		t.Fatal(err)
	}
	wantRules := backtest.Compare(before, after)
	moved := 0
	for _, r := range wantRules {
		moved += int(r.GetAdded() + r.GetRemoved())
	}
	if before.Counts.Rejected != 0 || len(before.Alerts) == 0 || moved == 0 {
		t.Fatalf("test bank: %d rejected, %d alerts before, %d after, %d rule lines moved; want a change that moves alerts",
			before.Counts.Rejected, len(before.Alerts), len(after.Alerts), moved)
	}

	// Outcomes recorded so far: three alerted customers real (RETAINED,
	// CHURNED), one a false alarm, one real risk the live rules missed,
	// one outcome too far in time from any back-test alert of its customer.
	alerted := before.Alerts
	if len(alerted) < 5 {
		t.Fatalf("test bank: %d alerts before, want ≥ 5", len(alerted))
	}
	notAlerted := ""
	for _, c := range b.customers {
		if !hasAlert(before.Alerts, c.GetCustomerId()) && !hasAlert(after.Alerts, c.GetCustomerId()) {
			notAlerted = c.GetCustomerId()
			break
		}
	}
	if notAlerted == "" {
		t.Fatal("test bank: every customer alerted")
	}
	at := func(a *cwv1.Alert) time.Time { return a.GetCreatedAt().AsTime() }
	outcomes := []struct {
		customer string
		created  time.Time
		outcome  cwv1.Outcome
	}{
		{alerted[0].GetCustomerId(), at(alerted[0]).Add(2 * time.Hour), cwv1.Outcome_OUTCOME_RETAINED},
		{alerted[1].GetCustomerId(), at(alerted[1]), cwv1.Outcome_OUTCOME_CHURNED},
		{alerted[2].GetCustomerId(), at(alerted[2]).Add(-24 * time.Hour), cwv1.Outcome_OUTCOME_RETAINED},
		{alerted[3].GetCustomerId(), at(alerted[3]), cwv1.Outcome_OUTCOME_FALSE_ALARM},
		{notAlerted, newest.Add(-10 * 24 * time.Hour), cwv1.Outcome_OUTCOME_CHURNED},
		{alerted[4].GetCustomerId(), at(alerted[4]).Add(-45 * 24 * time.Hour), cwv1.Outcome_OUTCOME_FALSE_ALARM},
	}
	var msgs []kafka.Message
	for i, o := range outcomes {
		msgs = append(msgs, resolved(fmt.Sprintf("al-%d", i), o.customer, cwv1.Tier_TIER_MASS, o.created, o.outcome))
	}
	s.produce(s.topics.Alerts, msgs...)
	s.waitCaughtUp(cfg.KPIGroup, s.topics.Alerts, 60*time.Second)
	// Expected detection, counted here from the outcomes above.
	expect := func(alerts []*cwv1.Alert) (precision, recall float64) {
		var matched, real int
		realCustomers := map[string]bool{}
		for _, o := range outcomes {
			if o.outcome != cwv1.Outcome_OUTCOME_FALSE_ALARM {
				realCustomers[o.customer] = true
			}
		}
		for _, a := range alerts {
			var m, r bool
			for _, o := range outcomes {
				d := o.created.Sub(at(a))
				if o.customer == a.GetCustomerId() && d <= 30*24*time.Hour && d >= -30*24*time.Hour {
					m, r = true, r || o.outcome != cwv1.Outcome_OUTCOME_FALSE_ALARM
				}
			}
			if m {
				matched++
			}
			if r {
				real++
			}
		}
		return float64(real) / float64(matched), float64(real) / float64(len(realCustomers))
	}
	pb, rb := expect(before.Alerts)
	pa, ra := expect(after.Alerts)
	if pb != 0.75 || rb != 0.75 {
		t.Fatalf("test outcomes: precision %v recall %v before, want 0.75 0.75", pb, rb)
	}

	ops1 := cwv1.NewRulesAdminServiceClient(s.dial(app.app.GRPCAddr(), "ops-1", auth.RoleOps, ""))
	resp, err := ops1.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Settings: change,
		Reason: "earlier dormancy warning, fewer complaint alerts"})
	if err != nil {
		t.Fatalf("propose without a back-test: %v", err)
	}
	bt := resp.GetProposal().GetBacktest()
	if bt.GetComputedBy() != "rules service" || bt.GetBaselineVersion() != 1 ||
		!strings.Contains(bt.GetHistory(), s.topics.Events) || !strings.Contains(bt.GetHistory(), "400 days") {
		t.Fatalf("server back-test header: %v", bt)
	}
	if bt.GetCustomers() != int64(len(b.customers)) || bt.GetEventsAccepted() != int64(before.Counts.Accepted) ||
		!bt.GetStart().AsTime().Equal(before.Start) || !bt.GetEnd().AsTime().Equal(before.End) {
		t.Fatalf("server back-test: %d customers, %d events, %s … %s; want %d, %d, %s … %s", bt.GetCustomers(), bt.GetEventsAccepted(),
			bt.GetStart().AsTime(), bt.GetEnd().AsTime(), len(b.customers), before.Counts.Accepted, before.Start, before.End)
	}
	if int(bt.GetAlertsBefore()) != len(before.Alerts) || int(bt.GetAlertsAfter()) != len(after.Alerts) {
		t.Fatalf("server back-test alerts %d → %d, churnctl's %d → %d", bt.GetAlertsBefore(), bt.GetAlertsAfter(), len(before.Alerts), len(after.Alerts))
	}
	if len(bt.GetRules()) != len(wantRules) {
		t.Fatalf("server back-test rules %v, churnctl's %v", bt.GetRules(), wantRules)
	}
	for i, w := range wantRules {
		if !proto.Equal(bt.GetRules()[i], w) {
			t.Fatalf("rule line %d: server %v, churnctl %v", i, bt.GetRules()[i], w)
		}
	}
	db, da := bt.GetDetectionBefore(), bt.GetDetectionAfter()
	if db.GetPrecision() != pb || db.GetRecall() != rb || da.GetPrecision() != pa || da.GetRecall() != ra ||
		db.GetLabelledCustomers() != 6 || da.GetLabelledCustomers() != 6 {
		t.Fatalf("detection before %v after %v; want precision/recall %v/%v → %v/%v on 6 customers", db, da, pb, rb, pa, ra)
	}

	// The window is the setting: 1 day back from the newest event holds
	// only that day's events.
	short := cfg
	short.BacktestDays = 1
	other := s.start(short)
	ops2 := cwv1.NewRulesAdminServiceClient(s.dial(other.app.GRPCAddr(), "ops-2", auth.RoleOps, ""))
	r2, err := ops2.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Settings: change, Reason: "short window"})
	if err != nil {
		t.Fatal(err)
	}
	var lastDay int64
	for _, ev := range b.events {
		if !ev.GetOccurredAt().AsTime().Before(newest.Add(-24 * time.Hour)) {
			lastDay++
		}
	}
	if got := r2.GetProposal().GetBacktest().GetEventsAccepted(); got != lastDay || got == 0 {
		t.Fatalf("1-day window: %d events, want %d", got, lastDay)
	}
	// 90 days: the profile records lie before the window's first offset, so
	// every customer's profile is the one the rules service holds; the
	// alerts per rule and tier still equal churnctl's with the profiles
	// given as files.
	mid := cfg
	mid.BacktestDays = 90
	fourth := s.start(mid)
	ops4 := cwv1.NewRulesAdminServiceClient(s.dial(fourth.app.GRPCAddr(), "ops-2", auth.RoleOps, ""))
	r4, err := ops4.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Settings: change, Reason: "90 days"})
	if err != nil {
		t.Fatal(err)
	}
	in90 := b.incoming(newest.Add(-90 * 24 * time.Hour))
	b90, err := backtest.Run(in90, backtest.Options{Thresholds: &live})
	if err != nil {
		t.Fatal(err)
	}
	a90, err := backtest.Run(in90, backtest.Options{Thresholds: &next})
	if err != nil {
		t.Fatal(err)
	}
	withEvents := map[string]bool{}
	for _, r := range in90.Events {
		withEvents[r.Value.GetCustomerId()] = true
	}
	bt4, want4 := r4.GetProposal().GetBacktest(), backtest.Compare(b90, a90)
	if bt4.GetCustomers() != int64(len(withEvents)) || bt4.GetEventsAccepted() != int64(b90.Counts.Accepted) || len(bt4.GetRules()) != len(want4) ||
		len(want4) == 0 {
		t.Fatalf("90-day back-test %v; churnctl %v over %d customers with events", bt4, want4, len(withEvents))
	}
	for i, w := range want4 {
		if !proto.Equal(bt4.GetRules()[i], w) {
			t.Fatalf("90-day rule line %d: server %v, churnctl %v", i, bt4.GetRules()[i], w)
		}
	}

	// A cap below the window's events refuses, naming the settings.
	capped := cfg
	capped.BacktestMaxEvents = 10
	third := s.start(capped)
	ops3 := cwv1.NewRulesAdminServiceClient(s.dial(third.app.GRPCAddr(), "ops-2", auth.RoleOps, ""))
	_, err = ops3.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Settings: change, Reason: "capped"})
	if code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "CHURNWATCH_THRESHOLDS_BACKTEST_MAX_EVENTS") {
		t.Fatalf("over the cap: %v", err)
	}
}

func hasAlert(alerts []*cwv1.Alert, customer string) bool {
	for _, a := range alerts {
		if a.GetCustomerId() == customer {
			return true
		}
	}
	return false
}

// TestProposalExpiryRPC: with the service's clock moved past a proposal's
// expiry, it lists as EXPIRED and approving it is refused; one decided
// before expiry stays decided.
func TestProposalExpiryRPC(t *testing.T) {
	s := newStack(t, 3)
	cfg := s.config(100)
	cfg.ProposalTTL = time.Hour
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	set := func(t time.Time) { clock.Store(t.UnixNano()) }
	set(now)
	app := s.start(cfg, WithClock(func() time.Time { return time.Unix(0, clock.Load()).UTC() }))
	ctx := context.Background()
	ops1 := cwv1.NewRulesAdminServiceClient(s.dial(app.app.GRPCAddr(), "ops-1", auth.RoleOps, ""))
	ops2 := cwv1.NewRulesAdminServiceClient(s.dial(app.app.GRPCAddr(), "ops-2", auth.RoleOps, ""))
	p, err := ops1.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Reason: "expires",
		Settings: []*cwv1.ThresholdSetting{{Key: "complaints.count", Value: "3"}}, Backtest: testBacktest(1)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := ops1.ProposeThresholdChange(ctx, &cwv1.ProposeThresholdChangeRequest{ExpectedVersion: 1, Reason: "rejected in time",
		Settings: []*cwv1.ThresholdSetting{{Key: "complaints.count", Value: "4"}}, Backtest: testBacktest(1)})
	if err != nil {
		t.Fatal(err)
	}
	if !p.GetProposal().GetExpiresAt().AsTime().Equal(now.Add(time.Hour)) {
		t.Fatalf("expires_at %v, want proposed_at + 1h", p.GetProposal().GetExpiresAt().AsTime())
	}
	if _, err := ops2.RejectThresholdChange(ctx, &cwv1.RejectThresholdChangeRequest{ProposalId: q.GetProposal().GetId(), Reason: "no"}); err != nil {
		t.Fatal(err)
	}
	set(now.Add(59 * time.Minute))
	l, err := ops2.ListThresholdProposals(ctx, &cwv1.ListThresholdProposalsRequest{ProposalId: p.GetProposal().GetId()})
	if err != nil || l.GetProposals()[0].GetState() != cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_PENDING {
		t.Fatalf("before expiry: %v %v", l, err)
	}
	set(now.Add(time.Hour))
	l, err = ops2.ListThresholdProposals(ctx, &cwv1.ListThresholdProposalsRequest{State: cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_EXPIRED})
	if err != nil || len(l.GetProposals()) != 1 || l.GetProposals()[0].GetId() != p.GetProposal().GetId() {
		t.Fatalf("expired list: %v %v", l, err)
	}
	_, err = ops2.ApproveThresholdChange(ctx, &cwv1.ApproveThresholdChangeRequest{ProposalId: p.GetProposal().GetId()})
	if code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "expired") {
		t.Fatalf("approving an expired proposal: %v", err)
	}
	if cur, err := ops2.GetThresholds(ctx, &cwv1.GetThresholdsRequest{}); err != nil || cur.GetThresholds().GetVersion() != 1 {
		t.Fatalf("an expired proposal went live: %v %v", cur, err)
	}
	l, err = ops2.ListThresholdProposals(ctx, &cwv1.ListThresholdProposalsRequest{ProposalId: q.GetProposal().GetId()})
	if err != nil || l.GetProposals()[0].GetState() != cwv1.ThresholdProposalState_THRESHOLD_PROPOSAL_STATE_REJECTED {
		t.Fatalf("a rejected proposal after the ttl: %v %v", l, err)
	}
}
