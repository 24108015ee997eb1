package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

func outflow(id, customer string, at time.Time, amount int64) kafka.Message {
	bal := int64(100000000)
	return eventMsg(&cwv1.AccountEvent{EventId: id, CustomerId: customer, AccountId: customer + "-01", OccurredAt: timestamppb.New(at),
		Type: cwv1.EventType_EVENT_TYPE_TRANSFER_OUT, AmountMinor: amount, Currency: "EUR", CounterpartyBank: "OTHERBANK",
		BalanceAfterMinor: &bal, IngestedAt: timestamppb.Now()})
}

// waitSignal polls the signals topic for a signal matching ok.
func (s *stack) waitSignal(within time.Duration, ok func(*cwv1.RiskSignal) bool) *cwv1.RiskSignal {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, m := range s.readAll(s.topics.Signals) {
			var sg cwv1.RiskSignal
			if proto.Unmarshal(m.Value, &sg) == nil && ok(&sg) {
				return &sg
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatal("no matching signal within", within)
	return nil
}

func code(err error) codes.Code { return status.Code(err) }

func TestThresholdsLive(t *testing.T) {
	s := newStack(t, 3)
	cfg := s.config(100)
	app := s.start(cfg)
	ctx := context.Background()
	adminC := cwv1.NewRulesAdminServiceClient(s.dial(app.app.GRPCAddr(), "admin-1", auth.RoleAdmin, ""))
	opsC := cwv1.NewRulesAdminServiceClient(s.dial(app.app.GRPCAddr(), "ops-1", auth.RoleOps, ""))
	mgrC := cwv1.NewRulesAdminServiceClient(s.dial(app.app.GRPCAddr(), "rm-001", auth.RoleManager, ""))

	got, err := opsC.GetThresholds(ctx, &cwv1.GetThresholdsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetThresholds().GetVersion() != 1 || len(got.GetThresholds().GetSettings()) == 0 {
		t.Fatalf("initial thresholds: %v", got)
	}
	if v := setting(got.GetThresholds(), "outflow.large.amount.MASS"); v != "10000" {
		t.Fatalf("default MASS large outflow %q", v)
	}

	// Before the change a 600 EUR external outflow is nothing for MASS.
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	s.produce(s.topics.Events, outflow("o-1", "U1", t0, 60000))
	s.waitCaughtUp(cfg.Group, s.topics.Events, 60*time.Second)

	upd := &cwv1.UpdateThresholdsRequest{ExpectedVersion: 1, Reason: "pilot: smaller MASS outflows",
		Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.MASS", Value: "500"}}}
	if _, err := mgrC.UpdateThresholds(ctx, upd); code(err) != codes.PermissionDenied {
		t.Fatalf("manager update: %v, want PermissionDenied", err)
	}
	if _, err := opsC.UpdateThresholds(ctx, upd); code(err) != codes.PermissionDenied {
		t.Fatalf("ops update: %v, want PermissionDenied", err)
	}
	if _, err := mgrC.GetThresholds(ctx, &cwv1.GetThresholdsRequest{}); code(err) != codes.PermissionDenied {
		t.Fatalf("manager read: %v, want PermissionDenied", err)
	}
	if _, err := adminC.UpdateThresholds(ctx, &cwv1.UpdateThresholdsRequest{ExpectedVersion: 1, Settings: upd.Settings}); code(err) != codes.InvalidArgument {
		t.Fatalf("update without reason: %v, want InvalidArgument", err)
	}
	if _, err := adminC.UpdateThresholds(ctx, &cwv1.UpdateThresholdsRequest{ExpectedVersion: 1, Reason: "x",
		Settings: []*cwv1.ThresholdSetting{{Key: "outflow.large.amount.NOPE", Value: "1"}}}); code(err) != codes.InvalidArgument {
		t.Fatalf("update of unknown key: %v, want InvalidArgument", err)
	}
	res, err := adminC.UpdateThresholds(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	if res.GetThresholds().GetVersion() != 2 || setting(res.GetThresholds(), "outflow.large.amount.MASS") != "500" {
		t.Fatalf("after update: %v", res.GetThresholds())
	}
	if _, err := adminC.UpdateThresholds(ctx, upd); code(err) != codes.FailedPrecondition {
		t.Fatalf("stale update: %v, want FailedPrecondition", err)
	}

	hist, err := opsC.ListThresholdChanges(ctx, &cwv1.ListThresholdChangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.GetChanges()) != 1 {
		t.Fatalf("history: %v", hist)
	}
	h := hist.GetChanges()[0]
	if h.GetActor() != "admin-1" || h.GetReason() != upd.Reason || h.GetVersion() != 2 || h.GetPreviousVersion() != 1 ||
		len(h.GetChanges()) != 1 || h.GetChanges()[0].GetKey() != "outflow.large.amount.MASS" ||
		h.GetChanges()[0].GetOldValue() != "10000" || h.GetChanges()[0].GetNewValue() != "500" || h.GetChangedAt() == nil {
		t.Fatalf("audit entry: %v", h)
	}

	// A second instance picks the change up from Redis within 5 s (its
	// poll), without restart; the signal names the new version.
	cfg2 := cfg
	other := s.start(cfg2)
	_ = other
	s.produce(s.topics.Events, outflow("o-2", "U1", t0.Add(time.Hour), 60000))
	sg := s.waitSignal(5*time.Second, func(sg *cwv1.RiskSignal) bool { return sg.GetRuleId() == "outflow.large" })
	e := sg.GetExplanation()
	if e.GetThresholdVersion() != 2 || e.GetThreshold() != "500.00" || len(e.GetEventIds()) == 0 || e.GetEventIds()[0] != "o-2" {
		t.Fatalf("signal after the change: %v", sg)
	}
	if sg.GetTier() != cwv1.Tier_TIER_MASS || !sg.GetUnknownCustomer() {
		t.Fatalf("unknown customer must score as MASS and be flagged: %v", sg)
	}
	if sg.GetIngestedAt() == nil || sg.GetSourceOffset() < 0 {
		t.Fatalf("signal source fields: %v", sg)
	}
}

func setting(set *cwv1.ThresholdSet, key string) string {
	for _, kv := range set.GetSettings() {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return ""
}

func TestDLQ(t *testing.T) {
	s := newStack(t, 3)
	cfg := s.config(100)
	app := s.start(cfg)
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	s.produce(s.topics.Events, outflow("e-1", "D1", t0, 1000))
	s.closeDay(t0.AddDate(0, 0, 10))
	late := outflow("e-late", "D2", t0.Add(time.Hour), 1000)
	s.produce(s.topics.Events, late, kafka.Message{Key: []byte("D3"), Value: []byte{0xff, 0x01, 0x02}},
		eventMsg(&cwv1.AccountEvent{EventId: "e-bad", CustomerId: "D4", Type: cwv1.EventType_EVENT_TYPE_LOGIN}))
	s.waitCaughtUp(cfg.Group, s.topics.Events, 60*time.Second)

	reasons := map[string]kafka.Message{}
	for _, m := range s.readAll(s.topics.DLQ) {
		reasons[header(m, "cw-reason")] = m
	}
	m, ok := reasons["too late"]
	if !ok {
		t.Fatalf("no too-late record on the DLQ: %v", keys(reasons))
	}
	if string(m.Key) != "D2" || string(m.Value) != string(late.Value) || header(m, "cw-source-topic") != s.topics.Events ||
		header(m, "cw-source-partition") == "" || header(m, "cw-source-offset") == "" || header(m, "traceparent") == "" {
		t.Fatalf("too-late DLQ record: key %q headers %v", m.Key, m.Headers)
	}
	// Dead letters keep the original CloudEvents headers; a record that
	// had none (written by someone else) gets a dead-letter identity.
	if header(m, "ce_id") != "e-late" || header(m, "ce_source") != "churnwatch/ingester" || header(m, "content-type") != "application/protobuf; messageType=churnwatch.v1.AccountEvent" {
		t.Fatalf("too-late DLQ record lost its CloudEvents headers: %v", m.Headers)
	}
	for r, m := range reasons {
		if header(m, "ce_specversion") != "1.0" || header(m, "ce_id") == "" || header(m, "ce_type") == "" || header(m, "ce_source") == "" {
			t.Fatalf("DLQ record %q without CloudEvents headers: %v", r, m.Headers)
		}
		if string(m.Key) == "D3" && (header(m, "ce_type") != "com.churnwatch.dead_letter" || header(m, "ce_id") != s.topics.Events+"/"+header(m, "cw-source-partition")+"/"+header(m, "cw-source-offset")) {
			t.Fatalf("foreign record's dead letter: %v", m.Headers)
		}
	}
	var decode, invalid bool
	for r := range reasons {
		decode = decode || strings.HasPrefix(r, "decode: ") && strings.Contains(r, "proto")
		invalid = invalid || strings.HasPrefix(r, "decode: ") && strings.Contains(r, "occurred_at")
	}
	if !decode || !invalid {
		t.Fatalf("undecodable and invalid records must reach the DLQ: %v", keys(reasons))
	}

	// Metrics: DLQ by reason class, and promtool-clean names.
	body := httpGet(t, "http://"+app.app.HTTPAddr()+"/metrics")
	for _, want := range []string{`churnwatch_dlq_records_total{reason="too_late"} 1`, `churnwatch_dlq_records_total{reason="decode"} 1`,
		`churnwatch_rules_events_total{result="applied"}`, `churnwatch_rules_batch_duration_seconds_bucket`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(body, `churnwatch_consumer_lag{group="churnwatch-rules",partition="0",topic="churnwatch.events.v1"} 0`) {
		if time.Now().After(deadline) {
			t.Fatalf("no consumer lag gauge:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond)
		body = httpGet(t, "http://"+app.app.HTTPAddr()+"/metrics")
	}
}

func header(m kafka.Message, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestCustomerRiskAndStatus(t *testing.T) {
	s := newStack(t, 3)
	cfg := s.config(500)
	app := s.start(cfg)
	b := newBank(14, testSeed)
	s.loadCustomers(b, cfg)
	s.produce(s.topics.Events, b.eventMsgs()...)
	s.waitCaughtUp(cfg.Group, s.topics.Events, 60*time.Second)
	s.closeDay(finalClose)
	s.waitCaughtUp(cfg.Group, s.topics.Events, 60*time.Second)
	ctx := context.Background()
	addr := app.app.GRPCAddr()

	// C001 stops in May: churned by the final close, with live signals.
	ops := cwv1.NewRulesAdminServiceClient(s.dial(addr, "ops-1", auth.RoleOps, ""))
	r, err := ops.GetCustomerRisk(ctx, &cwv1.GetCustomerRiskRequest{CustomerId: "C001"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetStage() != cwv1.Stage_STAGE_CHURNED || r.GetScore() == 0 || len(r.GetLiveSignals()) == 0 || !r.GetKnownCustomer() ||
		r.GetTier() != cwv1.Tier_TIER_HIGH_NET_WORTH || r.GetPartitionClock() == nil || r.GetLastActivity() == nil || r.GetThresholdVersion() != 1 {
		t.Fatalf("risk of C001: %v", r)
	}
	if !r.GetPartitionClock().AsTime().Equal(finalClose) {
		t.Fatalf("partition clock %v, want %v", r.GetPartitionClock().AsTime(), finalClose)
	}
	for _, sg := range r.GetLiveSignals() {
		if sg.GetExplanation().GetRuleId() == "" || sg.GetExplanation().GetThresholdVersion() != 1 {
			t.Fatalf("live signal without explanation: %v", sg)
		}
	}
	// C001's manager is rm-1 (index % 3), branch br-1.
	if _, err := cwv1.NewRulesAdminServiceClient(s.dial(addr, "rm-1", auth.RoleManager, "")).GetCustomerRisk(ctx,
		&cwv1.GetCustomerRiskRequest{CustomerId: "C001"}); err != nil {
		t.Fatalf("own manager: %v", err)
	}
	if _, err := cwv1.NewRulesAdminServiceClient(s.dial(addr, "rm-2", auth.RoleManager, "")).GetCustomerRisk(ctx,
		&cwv1.GetCustomerRiskRequest{CustomerId: "C001"}); code(err) != codes.PermissionDenied {
		t.Fatalf("other manager: %v, want PermissionDenied", err)
	}
	if _, err := cwv1.NewRulesAdminServiceClient(s.dial(addr, "bh", auth.RoleBranchHead, "br-1")).GetCustomerRisk(ctx,
		&cwv1.GetCustomerRiskRequest{CustomerId: "C001"}); err != nil {
		t.Fatalf("branch head of the branch: %v", err)
	}
	if _, err := cwv1.NewRulesAdminServiceClient(s.dial(addr, "ing", auth.RoleIngest, "")).GetCustomerRisk(ctx,
		&cwv1.GetCustomerRiskRequest{CustomerId: "C001"}); code(err) != codes.PermissionDenied {
		t.Fatalf("ingest role: %v, want PermissionDenied", err)
	}
	if _, err := ops.GetCustomerRisk(ctx, &cwv1.GetCustomerRiskRequest{CustomerId: "NOPE"}); code(err) != codes.NotFound {
		t.Fatalf("unknown customer: %v, want NotFound", err)
	}

	// The daily series for the console's chart: 180 days up to the clock.
	if d := r.GetDaily(); len(d) != 180 || d[179].GetDate() != "2026-09-30" || d[0].GetDate() != "2026-04-04" {
		t.Fatalf("C001 daily series: %d days, %v … %v", len(d), d[0], d[len(d)-1])
	}
	// StatusService is for ops and admin (SPEC §6).
	if _, err := cwv1.NewStatusServiceClient(s.dial(addr, "rm-1", auth.RoleManager, "")).GetStatus(ctx, &cwv1.GetStatusRequest{}); code(err) != codes.PermissionDenied {
		t.Fatalf("manager read the status: %v", err)
	}
	st, err := cwv1.NewStatusServiceClient(s.dial(addr, "ops-1", auth.RoleOps, "")).GetStatus(ctx, &cwv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetService() != "rules" || !st.GetReady() || len(st.GetConsumers()) != 2 { // events (profiles come in event order) and the KPIs' alert facts
		t.Fatalf("status: %v", st)
	}
	ev := st.GetConsumers()[0]
	if ev.GetGroup() != cfg.Group || ev.GetTotalLag() != 0 || !ev.GetIdle() || len(ev.GetPartitions()) != 3 {
		t.Fatalf("events consumer status: %v", ev)
	}
	for _, p := range ev.GetPartitions() {
		if p.GetClock() == nil || !p.GetClock().AsTime().Equal(finalClose) {
			t.Fatalf("partition %d clock %v", p.GetPartition(), p.GetClock())
		}
	}

	// A customer active after the close: its days, counts and balances.
	day0 := finalClose.Add(time.Second) // 2026-10-01T00:00:00Z
	var msgs []kafka.Message
	for i, n := range []int{2, 0, 3} { // transactions on Oct 1, 2, 3
		for k := range n {
			bal := int64(100000 - 1000*(10*i+k))
			msgs = append(msgs, eventMsg(&cwv1.AccountEvent{EventId: fmt.Sprintf("d-%d-%d", i, k), CustomerId: "D1", AccountId: "D1-01",
				OccurredAt: timestamppb.New(day0.Add(time.Duration(24*i+k+1) * time.Hour)), Type: cwv1.EventType_EVENT_TYPE_CARD_PAYMENT,
				AmountMinor: 1000, Currency: "EUR", BalanceAfterMinor: &bal, IngestedAt: timestamppb.Now()}))
		}
	}
	s.produce(s.topics.Events, msgs...)
	s.waitCaughtUp(cfg.Group, s.topics.Events, 60*time.Second)
	d1, err := ops.GetCustomerRisk(ctx, &cwv1.GetCustomerRiskRequest{CustomerId: "D1"})
	if err != nil {
		t.Fatal(err)
	}
	days := d1.GetDaily()
	if len(days) != 180 {
		t.Fatalf("D1: %d days", len(days))
	}
	type dayWant struct {
		date string
		txns int32
		bal  int64 // -1: none
	}
	got := []dayWant{}
	for _, d := range days[176:] {
		b := int64(-1)
		if d.BalanceMinor != nil {
			b = d.GetBalanceMinor()
			if d.GetCurrency() != "EUR" {
				t.Fatalf("D1 %s currency %q", d.GetDate(), d.GetCurrency())
			}
		}
		got = append(got, dayWant{d.GetDate(), d.GetTransactions(), b})
	}
	want := []dayWant{{"2026-09-30", 0, -1}, {"2026-10-01", 2, 99000}, {"2026-10-02", 0, 99000}, {"2026-10-03", 3, 78000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("D1 last days %v\nwant %v", got, want)
	}
}
