package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

func at(i int, customer string, when time.Time) *cwv1.IncomingEvent {
	ev := event(i, customer)
	ev.OccurredAt = when.Format(time.RFC3339)
	return ev
}

// SPEC §2: an event older than its partition's clock minus the allowed
// lateness is reported late (and dead-lettered), never accepted; an id
// accepted before is reported duplicate even when it would now be late;
// accepted events carry the clock they were judged by.
func TestLateEventsAreReportedLateNotAccepted(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	// One customer, so one partition.
	first := at(1, "C1", day)
	resp, err := cl.PublishEvents(ctxT(t), mustReq([]*cwv1.IncomingEvent{first, at(2, "C1", day.AddDate(0, 0, 30))}))
	if err != nil || resp.Accepted != 2 {
		t.Fatalf("in time: %v %v", resp, err)
	}
	late := at(3, "C1", day.AddDate(0, 0, 22)) // 8 days behind
	inTime := at(4, "C1", day.AddDate(0, 0, 24))
	resp, err = cl.PublishEvents(ctxT(t), mustReq([]*cwv1.IncomingEvent{late, inTime, first}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Late != 1 || resp.Accepted != 1 || resp.Duplicates != 1 {
		t.Fatalf("late batch: %v", resp)
	}
	if r := resp.Results[0]; r.Status != cwv1.RecordStatus_RECORD_STATUS_LATE || !strings.Contains(r.Reason, "DLQ") {
		t.Fatalf("late event: %v", r)
	}
	if r := resp.Results[2]; r.Status != cwv1.RecordStatus_RECORD_STATUS_DUPLICATE {
		t.Fatalf("an accepted id, now late, must come back duplicate: %v", r)
	}
	// A retry of the late one is late again, and dead-lettered once.
	resp, err = cl.PublishEvents(ctxT(t), mustReq([]*cwv1.IncomingEvent{late}))
	if err != nil || resp.Late != 1 {
		t.Fatalf("retry of a late event: %v %v", resp, err)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1.dlq"); n != 1 {
		t.Fatalf("%d on the DLQ, want 1", n)
	}
	// The dead letter is the event's CloudEvent plus its reason headers.
	for _, ms := range readRecords(t, s.brokers, "churnwatch.events.v1.dlq") {
		for _, m := range ms {
			checkCloudEvent(t, m, "com.churnwatch.account_event", late.EventId, "churnwatch.v1.AccountEvent")
			if kafkaHeader(m, "cw-reason-class") != "too_late" || kafkaHeader(m, "cw-source-topic") != "churnwatch.events.v1" || kafkaHeader(m, "traceparent") == "" {
				t.Fatalf("dead letter headers: %v", m.Headers)
			}
		}
	}
	var got []*cwv1.AccountEvent
	for _, evs := range readEvents(t, s.brokers, "churnwatch.events.v1") {
		got = append(got, evs...)
	}
	if len(got) != 3 {
		t.Fatalf("%d events on the topic, want 3", len(got))
	}
	for _, ev := range got {
		c := ev.GetAcceptedClock()
		if c == nil || ev.GetOccurredAt().AsTime().Before(c.AsTime().Add(-7*24*time.Hour)) {
			t.Fatalf("event %s: accepted clock %v does not admit occurredAt %v", ev.EventId, c, ev.GetOccurredAt())
		}
	}
	if c := got[2].GetAcceptedClock().AsTime(); !c.Equal(day.AddDate(0, 0, 30)) {
		t.Fatalf("third event judged by clock %v, want %v", c, day.AddDate(0, 0, 30))
	}

	// A business-day close moves the intake clocks too.
	if _, err := cl.CloseBusinessDay(ctxT(t), &cwv1.CloseBusinessDayRequest{Date: "2025-05-01"}); err != nil {
		t.Fatal(err)
	}
	resp, err = cl.PublishEvents(ctxT(t), mustReq([]*cwv1.IncomingEvent{at(5, "C77", day.AddDate(0, 0, 40))}))
	if err != nil || resp.Late != 1 {
		t.Fatalf("after closing 2025-05-01, an April event must be late on every partition: %v %v", resp, err)
	}
}

// A request that died holding claims (kill -9 of an ingester, or Redis
// lost under it) must not block, reject or delay the retry: its claims
// are taken over as soon as its lease is gone.
func TestClaimsOfADeadRequestAreTakenOver(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	cfg.InFlightWait = 300 * time.Millisecond
	a := start(t, cfg)
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr})
	defer rdb.Close()
	ctx := context.Background()
	batch := events(0, 50)
	// Claims of a request whose lease is gone, as a crash leaves them.
	for _, ev := range batch[:20] {
		if err := rdb.Set(ctx, "ingest:event:"+ev.EventId, "p:dead", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	resp, err := cl.PublishEvents(ctxT(t), mustReq(batch))
	if err != nil || resp.Accepted != 50 {
		t.Fatalf("retry after a crash: %v %v", resp, err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("taking over dead claims took %s", took)
	}

	// Claims of a request still running: not rejected, not reported; the
	// call fails UNAVAILABLE (retry) once it wrote what it could.
	batch = events(100, 10)
	if err := rdb.Set(ctx, "ingest:req:p:alive", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "ingest:event:"+batch[3].EventId, "p:alive", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = cl.PublishEvents(ctxT(t), mustReq(batch))
	wantCode(t, err, codes.Unavailable)
	if err := rdb.Del(ctx, "ingest:req:p:alive").Err(); err != nil {
		t.Fatal(err)
	}
	resp, err = cl.PublishEvents(ctxT(t), mustReq(batch))
	if err != nil || resp.Accepted != 1 || resp.Duplicates != 9 {
		t.Fatalf("retry once the other request ended: %v %v", resp, err)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 60 {
		t.Fatalf("%d on the topic, want 60", n)
	}
}

// A customer profile accepted before an event is the one the event is
// scored with: it goes onto the customer's events partition too.
func TestProfilesGoOntoTheEventsTopicInOrder(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	if resp, err := cl.UpsertCustomers(ctxT(t), &cwv1.UpsertCustomersRequest{Customers: []*cwv1.IncomingCustomer{
		{CustomerId: "C0001", Tier: "HIGH_NET_WORTH", ManagerId: "rm-001", BranchId: "br-01"}}}); err != nil || resp.Accepted != 1 {
		t.Fatalf("upsert: %v %v", resp, err)
	}
	if resp, err := cl.PublishEvents(ctxT(t), mustReq(events(1, 1))); err != nil || resp.Accepted != 1 {
		t.Fatalf("publish: %v %v", resp, err)
	}
	var evs []*cwv1.AccountEvent
	for _, p := range readEvents(t, s.brokers, "churnwatch.events.v1") {
		evs = append(evs, p...)
	}
	if len(evs) != 2 || evs[0].Type != cwv1.EventType_EVENT_TYPE_PROFILE_UPDATED || evs[0].GetProfile().GetTier() != cwv1.Tier_TIER_HIGH_NET_WORTH ||
		evs[0].CustomerId != "C0001" || evs[1].CustomerId != "C0001" || evs[1].Type != cwv1.EventType_EVENT_TYPE_TRANSFER_OUT {
		t.Fatalf("events partition: %v", evs)
	}
}
