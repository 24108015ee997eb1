package app_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// rawCodec sends bytes exactly as given, as a client with a broken
// encoder (or a hostile one) would: protobuf's own marshaller refuses
// invalid UTF-8, so no Go client could produce the request below.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// withInvalidUTF8 marshals m and replaces every "\x00XX" placeholder of
// the same length: lengths stay right, the bytes become invalid UTF-8.
func withInvalidUTF8(t testing.TB, m proto.Message, placeholder, bad string) []byte {
	t.Helper()
	if len(placeholder) != len(bad) {
		t.Fatal("placeholder and bad bytes must have the same length")
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(placeholder)) {
		t.Fatal("placeholder not in the encoding")
	}
	return bytes.ReplaceAll(b, []byte(placeholder), []byte(bad))
}

func invokeRaw(t testing.TB, conn *grpc.ClientConn, method string, req []byte, resp proto.Message) error {
	t.Helper()
	var out []byte
	if err := conn.Invoke(ctxT(t), method, req, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return err
	}
	return proto.Unmarshal(out, resp)
}

// Issue 14: invalid UTF-8 in one record of a gRPC batch failed the whole
// batch INTERNAL ("grpc: error unmarshalling request"); now that record
// alone is rejected, naming its field, and the rest are published.
func TestGRPCInvalidUTF8RejectsOnlyThatRecord(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	conn := s.dial(t, a.GRPCAddr(), s.keys.Token(t, "core-banking", auth.RoleIngest, ""))

	evs := events(0, 3)
	evs[1].CustomerId = "CZZ1"
	evs[2].CounterpartyBank = "OTHERZZ"
	req := withInvalidUTF8(t, &cwv1.PublishEventsRequest{Events: evs}, "ZZ", "\xff\xfe")
	var resp cwv1.PublishEventsResponse
	if err := invokeRaw(t, conn, cwv1.IngestService_PublishEvents_FullMethodName, req, &resp); err != nil {
		t.Fatalf("PublishEvents with one invalid record: %v", err)
	}
	if resp.Accepted != 1 || resp.Rejected != 2 {
		t.Fatalf("%v", &resp)
	}
	for i, want := range []string{"", "customerId: not valid UTF-8", "counterpartyBank: not valid UTF-8"} {
		r := resp.Results[i]
		if want == "" && r.Status != cwv1.RecordStatus_RECORD_STATUS_ACCEPTED || want != "" && !strings.HasPrefix(r.Reason, want) {
			t.Errorf("result %d: %v, want %q", i, r, want)
		}
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 1 {
		t.Fatalf("%d on the topic, want 1", n)
	}

	// A stream batch likewise.
	sevs := events(10, 2)
	sevs[0].EventId = "s-\x00Q"
	sreq := withInvalidUTF8(t, &cwv1.StreamEventsRequest{Events: sevs}, "\x00Q", "\xc3(")
	stream, err := conn.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true}, cwv1.IngestService_StreamEvents_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(sreq); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := stream.RecvMsg(&out); err != nil {
		t.Fatalf("StreamEvents: %v", err)
	}
	var sresp cwv1.StreamEventsResponse
	if err := proto.Unmarshal(out, &sresp); err != nil {
		t.Fatal(err)
	}
	if sresp.Accepted != 1 || sresp.Rejected != 1 || len(sresp.Results) != 1 || !strings.HasPrefix(sresp.Results[0].Reason, "eventId: not valid UTF-8") {
		t.Fatalf("stream: %v", &sresp)
	}

	// And a customer profile.
	creq := withInvalidUTF8(t, &cwv1.UpsertCustomersRequest{Customers: []*cwv1.IncomingCustomer{
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang ZZ."}, {CustomerId: "C2", Tier: "MASS", DisplayName: "Li M."},
	}}, "ZZ", "\xe2\x82")
	var cresp cwv1.UpsertCustomersResponse
	if err := invokeRaw(t, conn, cwv1.IngestService_UpsertCustomers_FullMethodName, creq, &cresp); err != nil {
		t.Fatalf("UpsertCustomers: %v", err)
	}
	if cresp.Accepted != 1 || cresp.Rejected != 1 || !strings.HasPrefix(cresp.Results[0].Reason, "displayName: not valid UTF-8") {
		t.Fatalf("customers: %v", &cresp)
	}
}

// Issue 14 over gRPC: bidi controls, signed amounts and placeholder dates.
func TestGRPCRejectsHostileRecords(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	evs := events(0, 5)
	evs[0].Amount = "+10.00"
	evs[1].EventId = "t-\u202e000001"
	evs[2].OccurredAt = "0000-01-01T00:00:00Z"
	evs[3].OccurredAt = "1900-01-01T00:00:00Z"
	resp, err := cl.PublishEvents(ctxT(t), &cwv1.PublishEventsRequest{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"amount: has a + sign", "eventId: contains an invisible or bidi control character (U+202E",
		"occurredAt: before 1970-01-01", "occurredAt: before 1970-01-01", ""} {
		r := resp.Results[i]
		if want == "" && r.Status != cwv1.RecordStatus_RECORD_STATUS_ACCEPTED ||
			want != "" && (r.Status != cwv1.RecordStatus_RECORD_STATUS_REJECTED || !strings.HasPrefix(r.Reason, want)) {
			t.Errorf("result %d: %v, want %q", i, r, want)
		}
	}
	// Nothing went to the DLQ: a placeholder date is refused, not
	// accepted and then dead-lettered.
	if n := topicCount(t, s.brokers, "churnwatch.events.v1.dlq"); n != 0 {
		t.Fatalf("%d on the DLQ", n)
	}
}

// Issue 14 over HTTP: the duplicate key that was published as 999,999.00.
func TestHTTPRejectsHostileRecords(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	tok := s.keys.Token(t, "core-banking", auth.RoleIngest, "")
	rec := func(id, extra string) string {
		return `{"eventId":"` + id + `","customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"DEPOSIT","currency":"EUR"` + extra + "}\n"
	}
	body := rec("d-1", `,"amount":"5.00","amount":"999999.00"`) +
		rec("d-2", `,"amount":"+10.00"`) +
		rec("d-3\u202e", `,"amount":"1.00"`) +
		`{"eventId":"d-4","customerId":"C1","accountId":"A1","occurredAt":"0000-01-01T00:00:00Z","type":"LOGIN"}` + "\n" +
		rec("d-5", `,"amount":"1.00","counterpartyBank":"BAD`+"\xff"+`"`) +
		rec("d-6", `,"amount":"5.00"`)
	code, _, b := post(t, "http://"+a.HTTPAddr()+"/v1/events", tok, "application/x-ndjson", []byte(body))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	r := decode(t, b)
	for i, want := range []string{"amount: key given twice", "amount: has a + sign", "eventId: contains an invisible",
		"occurredAt: before 1970-01-01", "counterpartyBank: not valid UTF-8", ""} {
		got := r.Results[i]
		if want == "" && got.Status != "accepted" || want != "" && (got.Status != "rejected" || !strings.HasPrefix(got.Reason, want)) {
			t.Errorf("result %d: %+v, want %q", i, got, want)
		}
	}
	if r.Accepted != 1 || r.Rejected != 5 {
		t.Fatalf("%s", b)
	}
	for _, evs := range readEvents(t, s.brokers, "churnwatch.events.v1") {
		for _, ev := range evs {
			if ev.AmountMinor != 500 {
				t.Fatalf("published %v", ev)
			}
		}
	}
	code, _, b = post(t, "http://"+a.HTTPAddr()+"/v1/customers", tok, "application/x-ndjson",
		[]byte(`{"customerId":"C1","tier":"MASS","displayName":"Wang \u202eL."}`+"\n"+`{"customerId":"C2","tier":"MASS","tier":"HIGH_NET_WORTH"}`+"\n"))
	if r := decode(t, b); code != 200 || r.Rejected != 2 || !strings.HasPrefix(r.Results[0].Reason, "displayName: contains an invisible") ||
		!strings.HasPrefix(r.Results[1].Reason, "tier: key given twice") {
		t.Fatalf("customers: %d %s", code, b)
	}
}

func loginBody(prefix string, n int) []byte {
	var body bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&body, `{"eventId":"%s-%d","customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"LOGIN"}`+"\n", prefix, i)
	}
	return body.Bytes()
}

// Issue 14: a body larger than the burst was answered 429 after its
// first chunks were published, without their results. Now later chunks
// wait for the rate limit and every record gets its result.
func TestHTTPBodyLargerThanBurstCompletes(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	cfg.RateLimit, cfg.RateBurst = 20000, 10000
	cfg.HTTPMaxBody = 8 << 20
	a := start(t, cfg)
	tok := s.keys.Token(t, "core-banking", auth.RoleIngest, "")
	started := time.Now()
	code, _, b := post(t, "http://"+a.HTTPAddr()+"/v1/events", tok, "application/x-ndjson", loginBody("big", 25000))
	if code != 200 {
		t.Fatalf("%d %.300s", code, b)
	}
	r := decode(t, b)
	if r.Accepted != 25000 || len(r.Results) != 25000 {
		t.Fatalf("accepted %d of %d results", r.Accepted, len(r.Results))
	}
	// 15,000 records over the burst at 20,000/s: the limiter held it back.
	if d := time.Since(started); d < 500*time.Millisecond {
		t.Fatalf("took %s: the rate limit did not apply", d)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 25000 {
		t.Fatalf("%d on the topic", n)
	}
}

// When the wait for a later chunk would be too long, the rest of the body
// is reported rejected (not published, send again), and the published
// chunks keep their results.
func TestHTTPBodyOverTheRateReportsTheRest(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	cfg.RateLimit, cfg.RateBurst = 1, 10000
	cfg.HTTPMaxBody = 8 << 20
	a := start(t, cfg)
	tok := s.keys.Token(t, "core-banking", auth.RoleIngest, "")
	code, _, b := post(t, "http://"+a.HTTPAddr()+"/v1/events", tok, "application/x-ndjson", loginBody("slow", 15000))
	if code != 200 {
		t.Fatalf("%d %.300s", code, b)
	}
	r := decode(t, b)
	if r.Accepted != 10000 || r.Rejected != 5000 || len(r.Results) != 15000 {
		t.Fatalf("accepted %d rejected %d", r.Accepted, r.Rejected)
	}
	if got := r.Results[10000]; got.Status != "rejected" || !strings.Contains(got.Reason, "rate limit exceeded") || !strings.Contains(got.Reason, "send again from record 10000") {
		t.Fatalf("%+v", got)
	}
}
