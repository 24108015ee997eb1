package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/churnwatch/churnwatch/services/ingester/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

func post(t testing.TB, url, token, contentType string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func decode(t testing.TB, b []byte) app.HTTPResponse {
	t.Helper()
	var r app.HTTPResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return r
}

const ndjsonBody = `{"eventId":"h-1","customerId":"C1001","accountId":"A1001-01","occurredAt":"2025-03-01T09:30:00Z","type":"TRANSFER_OUT","amount":"12500.00","currency":"EUR","counterpartyBank":"OTHERBANK","balanceAfter":"300.00","channel":"MOBILE"}
{"eventId":"h-2","customerId":"C1001","accountId":"A1001-01","occurredAt":"2025-03-01T10:00:00+01:00","type":"SALARY","amount":3100,"currency":"EUR"}

this is not json
{"eventId":"h-3","customerId":"C1002","accountId":"A1002-01","occurredAt":"2025-03-01T10:00:00Z","type":"DEPOSIT","amount":"1.234","currency":"EUR"}
{"eventId":"h-4","customerId":"C1002","accountId":"A1002-01","occurredAt":"2025-03-01T10:00:00Z","type":"LOGIN","channel":true}
{"eventId":"h-1","customerId":"C1001","accountId":"A1001-01","occurredAt":"2025-03-01T09:30:00Z","type":"LOGIN"}
`

func TestHTTPIntake(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	cfg.HTTPMaxBody = 64 << 10
	a := start(t, cfg)
	url := "http://" + a.HTTPAddr()
	tok := s.keys.Token(t, "core-banking", auth.RoleIngest, "")

	code, _, body := post(t, url+"/v1/events", tok, "application/x-ndjson", []byte(ndjsonBody))
	if code != 200 {
		t.Fatalf("ndjson: %d %s", code, body)
	}
	r := decode(t, body)
	if r.Accepted != 2 || r.Rejected != 3 || r.Duplicates != 1 || len(r.Results) != 6 {
		t.Fatalf("ndjson: %s", body)
	}
	want := []struct {
		line           int
		status, reason string
	}{
		{1, "accepted", ""}, {2, "accepted", ""}, {4, "rejected", "not valid JSON"},
		{5, "rejected", "amount: more than 2 decimals"}, {6, "rejected", "channel: must be a string"},
		{7, "duplicate", "same eventId as record 0"},
	}
	for i, w := range want {
		got := r.Results[i]
		if got.Index != i || got.Line != w.line || got.Status != w.status || !strings.Contains(got.Reason, w.reason) {
			t.Errorf("result %d: %+v, want line %d %s %q", i, got, w.line, w.status, w.reason)
		}
	}

	// A JSON array; h-1 is already published.
	arr := `[{"eventId":"h-1","customerId":"C1001","accountId":"A1001-01","occurredAt":"2025-03-01T09:30:00Z","type":"LOGIN"},
	 {"eventId":"h-9","customerId":"C1003","accountId":"A1003-01","occurredAt":"2025-03-02T09:30:00Z","type":"COMPLAINT","sentiment":"-0.8"},
	 42]`
	code, _, body = post(t, url+"/v1/events", tok, "application/json; charset=utf-8", []byte(arr))
	if code != 200 {
		t.Fatalf("array: %d %s", code, body)
	}
	r = decode(t, body)
	if r.Accepted != 1 || r.Duplicates != 1 || r.Rejected != 1 || r.Results[2].Reason != "not a JSON object" {
		t.Fatalf("array: %s", body)
	}
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 3 {
		t.Fatalf("%d on the topic, want 3", n)
	}

	code, _, body = post(t, url+"/v1/events", tok, "application/json", []byte(`{"eventId":"x"}`))
	if code != 400 || !strings.Contains(string(body), "not a JSON array") {
		t.Fatalf("object instead of array: %d %s", code, body)
	}
	code, _, body = post(t, url+"/v1/customers", tok, "application/x-ndjson",
		[]byte(`{"customerId":"C1001","tier":"HIGH_NET_WORTH","managerId":"rm-001","branchId":"br-01","displayName":"Wang L."}`+"\n"+`{"customerId":"C1002","tier":"PLATINUM"}`))
	if r := decode(t, body); code != 200 || r.Accepted != 1 || r.Rejected != 1 || r.Results[0].CustomerID != "C1001" || !strings.Contains(r.Results[1].Reason, "tier:") {
		t.Fatalf("customers: %d %s", code, body)
	}

	for name, c := range map[string]struct {
		token, contentType string
		body               []byte
		want               int
	}{
		"no token":       {"", "application/x-ndjson", []byte(ndjsonBody), 401},
		"bad token":      {"not-a-jwt", "application/x-ndjson", []byte(ndjsonBody), 401},
		"manager":        {s.keys.Token(t, "rm-001", auth.RoleManager, ""), "application/x-ndjson", []byte(ndjsonBody), 403},
		"ops":            {s.keys.Token(t, "ops-1", auth.RoleOps, ""), "application/json", []byte(`[]`), 403},
		"text/csv":       {tok, "text/csv", []byte("event_id\n"), 415},
		"no type":        {tok, "", []byte(ndjsonBody), 415},
		"too large":      {tok, "application/x-ndjson", bytes.Repeat([]byte(ndjsonBody), 200), 413},
		"admin is fine":  {s.keys.Token(t, "admin-1", auth.RoleAdmin, ""), "application/json", []byte(`[]`), 200},
		"broken array":   {tok, "application/json", []byte(`[{"eventId":"a"`), 400},
		"customers, 415": {tok, "text/plain", []byte(`{}`), 415},
	} {
		path := "/v1/events"
		if strings.HasPrefix(name, "customers") {
			path = "/v1/customers"
		}
		if code, _, body := post(t, url+path, c.token, c.contentType, c.body); code != c.want {
			t.Errorf("%s: %d %s, want %d", name, code, body, c.want)
		}
	}
	// 3 events and the accepted profile in event order.
	if n := topicCount(t, s.brokers, "churnwatch.events.v1"); n != 4 {
		t.Fatalf("%d on the topic after refused requests, want 4", n)
	}
}

func TestHTTPRateLimit(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t)
	cfg.RateLimit, cfg.RateBurst = 1, 10000
	a := start(t, cfg)
	tok := s.keys.Token(t, "core-banking", auth.RoleIngest, "")
	var body bytes.Buffer
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&body, `{"eventId":"r-%d","customerId":"C1","accountId":"A1","occurredAt":"2025-03-01T09:30:00Z","type":"LOGIN"}`+"\n", i)
	}
	if code, _, b := post(t, "http://"+a.HTTPAddr()+"/v1/events", tok, "application/x-ndjson", body.Bytes()); code != 200 {
		t.Fatalf("first: %d %.200s", code, b)
	}
	code, hdr, b := post(t, "http://"+a.HTTPAddr()+"/v1/events", tok, "application/x-ndjson", []byte(`{"eventId":"r-x"}`))
	if code != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d %s %v", code, b, hdr)
	}
}

func TestKcatReadsAcceptedEvents(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat not found on PATH: install it (Debian package kcat; `make test` installs it)")
	}
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	if _, err := cl.PublishEvents(ctxT(t), mustReq(events(0, 30))); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kcat, "-b", s.brokers[0], "-C", "-t", "churnwatch.events.v1", "-e", "-q", "-f", "%k\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v %s", err, exitStderr(err))
	}
	keys := strings.Fields(string(out))
	if len(keys) != 30 {
		t.Fatalf("kcat read %d records, want 30: %q", len(keys), out)
	}
	var want []string
	for _, e := range events(0, 30) {
		want = append(want, e.CustomerId)
	}
	sort.Strings(keys)
	sort.Strings(want)
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Fatalf("kcat keys %v, want %v", keys, want)
	}
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func TestMetrics(t *testing.T) {
	s := newStack(t)
	a := start(t, s.config(t))
	cl := s.ingestClient(t, a.GRPCAddr(), auth.RoleIngest)
	evs := events(0, 4)
	evs[1].Amount = "x"
	if _, err := cl.PublishEvents(ctxT(t), mustReq(append(evs, evs[0]))); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for _, want := range []string{
		`churnwatch_ingest_records_total{result="accepted"} 3`,
		`churnwatch_ingest_records_total{result="rejected"} 1`,
		`churnwatch_ingest_records_total{result="duplicate"} 1`,
		`churnwatch_ingest_rejections_total{reason="bad_decimal"} 1`,
		`churnwatch_ingest_kafka_write_duration_seconds_count{outcome="ok",topic="churnwatch.events.v1"} 1`,
		`churnwatch_ingest_batch_size_bucket{kind="events",le="10"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grep(text, "churnwatch_"))
	}
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
