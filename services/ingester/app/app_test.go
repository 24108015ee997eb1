package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

func TestPublishEventsAcceptsGoodAndNamesWhatIsWrong(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)

	good := events(0, 3)
	bad := []struct {
		mutate func(*cwv1.IncomingEvent)
		reason string
	}{
		{func(e *cwv1.IncomingEvent) { e.EventId = "" }, "eventId: missing"},
		{func(e *cwv1.IncomingEvent) { e.EventId = strings.Repeat("x", 129) }, "eventId: 129 characters, at most 128"},
		{func(e *cwv1.IncomingEvent) { e.CustomerId = "C 1" }, "customerId: character 2"},
		{func(e *cwv1.IncomingEvent) { e.AccountId = strings.Repeat("a", 65) }, "accountId: 65 characters"},
		{func(e *cwv1.IncomingEvent) { e.OccurredAt = "2025-03-01 09:30" }, "occurredAt: \"2025-03-01 09:30\" is not an RFC 3339"},
		{func(e *cwv1.IncomingEvent) { e.OccurredAt = "2025-03-01T09:30:00" }, "occurredAt: "},
		{func(e *cwv1.IncomingEvent) { e.OccurredAt = time.Now().Add(time.Hour).UTC().Format(time.RFC3339) }, "occurredAt: more than 5 minutes in the future"},
		{func(e *cwv1.IncomingEvent) { e.Type = "BRIBE" }, "type: unknown type \"BRIBE\""},
		{func(e *cwv1.IncomingEvent) { e.Type = "BUSINESS_DAY_CLOSED" }, "type: unknown type"},
		{func(e *cwv1.IncomingEvent) { e.Amount = "12,500.00" }, "amount: not a decimal number"},
		{func(e *cwv1.IncomingEvent) { e.Amount = "1.001" }, "amount: more than 2 decimals, the most EUR allows"},
		{func(e *cwv1.IncomingEvent) { e.Currency = "JPY"; e.Amount = "100.5"; e.BalanceAfter = "" }, "amount: more than 0 decimals, the most JPY allows"},
		{func(e *cwv1.IncomingEvent) { e.Currency = "XXX" }, "currency: unknown ISO 4217 currency \"XXX\""},
		{func(e *cwv1.IncomingEvent) { e.Amount = "0.00" }, "amount: must be greater than 0"},
		{func(e *cwv1.IncomingEvent) { e.Amount = "-5" }, "amount: must be greater than 0"},
		{func(e *cwv1.IncomingEvent) { e.Amount = "" }, "amount: missing (required for TRANSFER_OUT)"},
		{func(e *cwv1.IncomingEvent) { e.Currency = "" }, "currency: missing (required with amount)"},
		{func(e *cwv1.IncomingEvent) { e.Type = "LOGIN"; e.BalanceAfter = "" }, "amount: not allowed on LOGIN events"},
		{func(e *cwv1.IncomingEvent) { e.Type = "LOGIN"; e.Amount = ""; e.BalanceAfter = "" }, "currency: given without amount"},
		{func(e *cwv1.IncomingEvent) { e.Channel = "PIGEON" }, "channel: unknown channel \"PIGEON\""},
		{func(e *cwv1.IncomingEvent) { e.Sentiment = "-0.5" }, "sentiment: only allowed on COMPLAINT events"},
		{func(e *cwv1.IncomingEvent) {
			e.Type, e.Amount, e.Currency, e.BalanceAfter, e.Sentiment = "COMPLAINT", "", "", "", "-1.5"
		}, "sentiment: out of range -1.0 … 1.0"},
		{func(e *cwv1.IncomingEvent) {
			e.Type, e.Amount, e.Currency, e.BalanceAfter, e.Sentiment = "COMPLAINT", "", "", "", "1e0"
		}, "sentiment: not a decimal number"},
		{func(e *cwv1.IncomingEvent) { e.BalanceAfter = "abc" }, "balanceAfter: not a decimal number"},
	}
	req := &cwv1.PublishEventsRequest{Events: good}
	for i, b := range bad {
		ev := event(100+i, "C9000")
		b.mutate(ev)
		req.Events = append(req.Events, ev)
	}
	// A duplicate inside the request: reported, not published twice.
	req.Events = append(req.Events, event(0, good[0].CustomerId))

	resp, err := cl.PublishEvents(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 3 || resp.Rejected != int32(len(bad)) || resp.Duplicates != 1 {
		t.Fatalf("accepted %d rejected %d duplicates %d", resp.Accepted, resp.Rejected, resp.Duplicates)
	}
	if len(resp.Results) != len(req.Events) {
		t.Fatalf("%d results for %d records", len(resp.Results), len(req.Events))
	}
	for i, b := range bad {
		r := resp.Results[3+i]
		if r.Index != int32(3+i) || r.Status != cwv1.RecordStatus_RECORD_STATUS_REJECTED || !strings.Contains(r.Reason, b.reason) {
			t.Errorf("bad record %d: %v %q, want rejected %q", i, r.Status, r.Reason, b.reason)
		}
	}
	last := resp.Results[len(resp.Results)-1]
	if last.Status != cwv1.RecordStatus_RECORD_STATUS_DUPLICATE || !strings.Contains(last.Reason, "record 0") {
		t.Errorf("in-request duplicate: %v %q", last.Status, last.Reason)
	}

	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 3 {
		t.Fatalf("%d records on the topic, want 3", n)
	}
	got := map[string]*cwv1.AccountEvent{}
	for _, evs := range readEvents(t, s.brokers, "churnwatch.events.v1") {
		for _, ev := range evs {
			got[ev.EventId] = ev
		}
	}
	ev := got["t-000000"]
	if ev == nil || ev.AmountMinor != 1250000 || ev.Currency != "EUR" || ev.GetBalanceAfterMinor() != 30000 ||
		ev.Type != cwv1.EventType_EVENT_TYPE_TRANSFER_OUT || ev.Channel != cwv1.Channel_CHANNEL_MOBILE ||
		ev.CounterpartyBank != "OTHERBANK" || ev.IngestedAt == nil || time.Since(ev.IngestedAt.AsTime()) > time.Minute ||
		!ev.OccurredAt.AsTime().Equal(time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)) {
		t.Fatalf("published event: %v", ev)
	}
}

func TestPublishEventsExactlyOnceAcrossRequestsAndRestarts(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	a := start(t, cfg)
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	batch := events(0, 500)
	resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: batch})
	if err != nil || resp.Accepted != 500 {
		t.Fatalf("first: %v %v", resp, err)
	}
	again, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: batch})
	if err != nil || again.Duplicates != 500 || again.Accepted != 0 {
		t.Fatalf("second: %d accepted %d duplicates, %v", again.GetAccepted(), again.GetDuplicates(), err)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 500 {
		t.Fatalf("%d records on the topic, want 500", n)
	}

	// A new instance on the same Redis remembers.
	a.stop()
	b := start(t, cfg)
	cl = s.ingestClient(t, b.GRPCAddr(), auth.RoleIngest)
	mixed := append(events(400, 200), batch[:10]...)
	resp, err = cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: mixed})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 100 || resp.Duplicates != 110 {
		t.Fatalf("after restart: %d accepted %d duplicates", resp.Accepted, resp.Duplicates)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 600 {
		t.Fatalf("%d records on the topic, want 600", n)
	}
	// And so does Redis after its own restart (append-only file).
	if s.redis == nil {
		return // a Cluster's nodes are not restarted here
	}
	if err := s.redis.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "duplicates after a Redis restart", func() error {
		resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: batch[:50]})
		if err != nil {
			return err
		}
		if resp.Duplicates != 50 {
			t.Fatalf("after Redis restart: %d duplicates", resp.Duplicates)
		}
		return nil
	})
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 600 {
		t.Fatalf("%d records on the topic, want 600", n)
	}
}

func TestPublishEventsConcurrentSameIDsLandOnce(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	batch := events(0, 300)
	const callers = 4
	errs := make(chan error, callers)
	accepted := make(chan int32, callers)
	for i := 0; i < callers; i++ {
		cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
		go func() {
			resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: batch})
			if err == nil && resp.Rejected != 0 {
				err = errors.New("rejections: " + resp.Results[0].Reason)
			}
			errs <- err
			accepted <- resp.GetAccepted()
		}()
	}
	var total int32
	for i := 0; i < callers; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		total += <-accepted
	}
	if total != 300 {
		t.Fatalf("%d accepted over %d concurrent callers, want 300", total, callers)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 300 {
		t.Fatalf("%d records on the topic, want 300", n)
	}
}

func TestPublishEventsAllOrNothingAndLimits(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	evs := events(0, 5)
	evs[3].Amount = "oops"
	resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: evs, AllOrNothing: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Rejected != 5 || resp.Accepted != 0 || !strings.Contains(resp.Results[0].Reason, "all-or-nothing and record 3") ||
		!strings.Contains(resp.Results[3].Reason, "amount:") {
		t.Fatalf("all or nothing: %v", resp)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 0 {
		t.Fatalf("%d records on the topic, want 0", n)
	}
	// Nothing was claimed: fixed, the batch goes through.
	evs[3].Amount = "1.00"
	resp, err = cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: evs, AllOrNothing: true})
	if err != nil || resp.Accepted != 5 {
		t.Fatalf("fixed batch: %v %v", resp, err)
	}

	_, err = cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(0, 10001)})
	wantCode(t, err, codes.InvalidArgument)
}

func TestIngestPolicy(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	for _, role := range []auth.Role{auth.RoleManager, auth.RoleOps} {
		_, err := s.ingestClient(t, a.GRPCAddr(), role).PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(0, 1)})
		wantCode(t, err, codes.PermissionDenied)
	}
	_, err := s.ingestClient(t, a.GRPCAddr(), auth.RoleAdmin).PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(0, 1)})
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	_, err = cwv1.NewIngestServiceClient(s.dial(t, a.GRPCAddr(), "")).PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{})
	wantCode(t, err, codes.Unauthenticated)
	// Status is for ops and admin (SPEC §6): not the ingest role, not managers.
	for _, r := range []auth.Role{auth.RoleIngest, auth.RoleManager} {
		_, err := cwv1.NewStatusServiceClient(s.dial(t, a.GRPCAddr(), s.keys.Token(t, "x-1", r, ""))).GetStatus(ctxT(t), &cwv1.GetStatusRequest{})
		wantCode(t, err, codes.PermissionDenied)
	}
	st, err := cwv1.NewStatusServiceClient(s.dial(t, a.GRPCAddr(), s.keys.Token(t, "ops-1", auth.RoleOps, ""))).
		GetStatus(ctxT(t), &cwv1.GetStatusRequest{})
	if err != nil || st.Service != "ingester" || !st.Ready {
		t.Fatalf("status: %v %v", st, err)
	}
}

func TestStreamEvents(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	stream, err := cl.StreamEvents(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	b1 := events(0, 100)
	b2 := events(100, 100)
	b2[7].Type = "NOPE"
	b3 := events(150, 100) // 50 already sent in b2
	for _, b := range [][]*cwv1.IncomingEvent{b1, b2, b3} {
		if err := stream.Send(&cwv1.StreamEventsRequest{Events: b}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 249 || resp.Rejected != 1 || resp.Duplicates != 50 || len(resp.Results) != 51 {
		t.Fatalf("stream: %d accepted %d rejected %d duplicates %d results", resp.Accepted, resp.Rejected, resp.Duplicates, len(resp.Results))
	}
	if r := resp.Results[0]; r.Index != 107 || r.Id != "t-000107" || !strings.Contains(r.Reason, "type:") {
		t.Fatalf("rejection numbered across the stream: %v", r)
	}
	if r := resp.Results[1]; r.Index != 200 || r.Status != cwv1.RecordStatus_RECORD_STATUS_DUPLICATE {
		t.Fatalf("duplicate numbered across the stream: %v", r)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 249 {
		t.Fatalf("%d records on the topic, want 249", n)
	}
}

func TestUpsertCustomers(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	resp, err := cl.UpsertCustomers(ctxT(t), &cwv1.UpsertCustomersRequest{Customers: []*cwv1.IncomingCustomer{
		{CustomerId: "C1001", Tier: "HIGH_NET_WORTH", ManagerId: "rm-001", BranchId: "br-01", DisplayName: "Wang L."},
		{CustomerId: "C1002", Tier: "MASS", BranchId: "br-01"},
		{CustomerId: "C1003", Tier: "GOLD"},
		{CustomerId: "C1004", Tier: "BASIC", ManagerId: "rm 7"},
		{Tier: "BASIC"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 2 || resp.Rejected != 3 {
		t.Fatalf("customers: %v", resp)
	}
	for i, want := range map[int]string{2: "tier: unknown tier \"GOLD\"", 3: "managerId: character 3", 4: "customerId: missing"} {
		if r := resp.Results[i]; r.Status != cwv1.RecordStatus_RECORD_STATUS_REJECTED || !strings.Contains(r.Reason, want) {
			t.Errorf("customer %d: %v %q, want %q", i, r.Status, r.Reason, want)
		}
	}
	if n := topicCount(t, s.brokers, "churnwatch.customers.v1"); n != 2 {
		t.Fatalf("%d customers on the topic, want 2", n)
	}
	// Both records of a profile update are one CloudEvent: the customers
	// topic's and the events topic's (PROFILE_UPDATED) share their ce_id.
	ids := map[string]bool{}
	for _, evs := range readEvents(t, s.brokers, "churnwatch.events.v1") {
		for _, ev := range evs {
			ids[ev.EventId] = ev.Type == cwv1.EventType_EVENT_TYPE_PROFILE_UPDATED
		}
	}
	n := 0
	for _, ms := range readRecords(t, s.brokers, "churnwatch.customers.v1") {
		for _, m := range ms {
			id := kafkaHeader(m, "ce_id")
			checkCloudEvent(t, m, "com.churnwatch.customer_profile", id, "churnwatch.v1.CustomerProfile")
			if !ids[id] || kafkaHeader(m, "ce_subject") != string(m.Key) || kafkaHeader(m, "ce_time") == "" {
				t.Fatalf("customer record %s: ce_id %q (profile records on the events topic: %v), ce_subject %q", m.Key, id, ids, kafkaHeader(m, "ce_subject"))
			}
			n++
		}
	}
	if n != 2 {
		t.Fatalf("read %d customer records, want 2", n)
	}
}

func TestCloseBusinessDayWritesOneMarkerPerPartition(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleAdmin)
	resp, err := cl.CloseBusinessDay(ctxT(t), &cwv1.CloseBusinessDayRequest{Date: "2025-03-01"})
	if err != nil {
		t.Fatal(err)
	}
	wantClock := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	if resp.Partitions != testkit.Partitions || !resp.Clock.AsTime().Equal(wantClock) {
		t.Fatalf("close day: %v", resp)
	}
	parts := readEvents(t, s.brokers, "churnwatch.events.v1")
	for p := 0; p < testkit.Partitions; p++ {
		if len(parts[p]) != 1 {
			t.Fatalf("partition %d holds %d records, want one marker", p, len(parts[p]))
		}
		m := parts[p][0]
		if m.Type != cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED || m.CustomerId != "" || !m.OccurredAt.AsTime().Equal(wantClock) {
			t.Fatalf("partition %d marker: %v", p, m)
		}
	}
	for _, date := range []string{"2025-3-1", "yesterday", "2025-02-30", time.Now().AddDate(0, 0, 2).Format(time.DateOnly)} {
		_, err := cl.CloseBusinessDay(ctxT(t), &cwv1.CloseBusinessDayRequest{Date: date})
		wantCode(t, err, codes.InvalidArgument)
	}
	bh := cwv1.NewIngestServiceClient(s.dial(t, a.GRPCAddr(), s.keys.Token(t, "bh-01", auth.RoleBranchHead, "br-01")))
	_, err = bh.CloseBusinessDay(ctxT(t), &cwv1.CloseBusinessDayRequest{Date: "2025-03-01"})
	wantCode(t, err, codes.PermissionDenied)
}

func TestBrokerDownFailsUnavailableThenLandsExactlyOnce(t *testing.T) {
	r := testkit.Redis(t)
	k := newRestartableKafka(t)
	s := &stack{rt: testkit.RedisTarget{Node: r}, redis: r, brokers: k.Brokers, keys: testkit.NewKeys(t)}
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	if resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(0, 100)}); err != nil || resp.Accepted != 100 {
		t.Fatalf("before the outage: %v %v", resp, err)
	}

	k.Stop()
	batch := events(100, 200)
	began := time.Now()
	_, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: batch})
	wantCode(t, err, codes.Unavailable)
	if took := time.Since(began); took > 15*time.Second {
		t.Fatalf("failing took %s: not bounded", took)
	}
	if !strings.Contains(status.Convert(err).Message(), "retry") {
		t.Fatalf("UNAVAILABLE without advice: %v", err)
	}
	// Nothing is marked published. What may have been written stays
	// claimed by a request whose lease has ended, so the retry below takes
	// it over at once instead of waiting for the claim to expire.
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	for _, id := range []string{"ingest:event:t-000100", "ingest:event:t-000299"} {
		v, err := rdb.Get(context.Background(), id).Result()
		if err == nil && !strings.HasPrefix(v, "p:") {
			t.Fatalf("dedup mark %s = %q after a failed write", id, v)
		}
		if err == nil {
			if n, _ := rdb.Exists(context.Background(), "ingest:req:"+v).Result(); n != 0 {
				t.Fatalf("claim %s of a finished request still has a live lease", id)
			}
		}
	}

	k.Start()
	waitFor(t, 30*time.Second, "publish after the broker is back", func() error {
		resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: batch})
		if err != nil {
			return err
		}
		if resp.Accepted+resp.Duplicates != 200 || resp.Rejected != 0 {
			t.Fatalf("retry: %v", resp)
		}
		return nil
	})
	// Retrying once more changes nothing.
	resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: batch})
	if err != nil || resp.Duplicates != 200 {
		t.Fatalf("second retry: %v %v", resp, err)
	}
	ids := map[string]int{}
	for _, evs := range readEvents(t, k.Brokers, "churnwatch.events.v1") {
		for _, ev := range evs {
			ids[ev.EventId]++
		}
	}
	if len(ids) != 300 {
		t.Fatalf("%d distinct events on the topic, want 300", len(ids))
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("%s on the topic %d times", id, n)
		}
	}
}

func TestRedisDownFailsUnavailable(t *testing.T) {
	s := newSingleNodeStack(t) // it stops the server
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	s.redis.Stop()
	_, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(0, 10)})
	wantCode(t, err, codes.Unavailable)
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 0 {
		t.Fatalf("%d records on the topic while Redis was down", n)
	}
}

func TestRateLimitPerPrincipal(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	cfg.RateLimit, cfg.RateBurst = 1, 10000
	a := start(t, cfg)
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	if _, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(0, 9990)}); err != nil {
		t.Fatal(err)
	}
	_, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(9990, 20)})
	wantCode(t, err, codes.ResourceExhausted)
	// Another principal has its own bucket.
	other := cwv1.NewIngestServiceClient(s.dial(t, a.GRPCAddr(), s.keys.Token(t, "card-system", auth.RoleIngest, "")))
	if _, err := other.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: events(9990, 20)}); err != nil {
		t.Fatalf("other principal: %v", err)
	}
}
