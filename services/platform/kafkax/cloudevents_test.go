package kafkax

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func headers(m kafka.Message) map[string]string {
	out := map[string]string{}
	for _, h := range m.Headers {
		out[h.Key] = string(h.Value)
	}
	return out
}

func TestCloudEventStamp(t *testing.T) {
	shared := []kafka.Header{{Key: "traceparent", Value: []byte("00-abc-def-01")}}
	at := time.Date(2025, 3, 1, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	a := kafka.Message{Headers: shared}
	b := kafka.Message{Headers: shared}
	CloudEvent{Type: TypeAccountEvent, Source: Source("ingester"), ID: "t-1", Time: at, Subject: "C1", Data: timestamppb.Now()}.Stamp(&a)
	CloudEvent{Type: TypeAccountEvent, Source: Source("ingester"), ID: "t-2"}.Stamp(&b)
	ha, hb := headers(a), headers(b)
	want := map[string]string{
		"traceparent":    "00-abc-def-01",
		"ce_specversion": "1.0",
		"ce_type":        "com.churnwatch.account_event",
		"ce_source":      "churnwatch/ingester",
		"ce_id":          "t-1",
		"ce_time":        "2025-03-01T08:30:00Z",
		"ce_subject":     "C1",
		"content-type":   "application/protobuf; messageType=google.protobuf.Timestamp",
	}
	for k, v := range want {
		if ha[k] != v {
			t.Errorf("%s = %q, want %q", k, ha[k], v)
		}
	}
	if len(ha) != len(want) {
		t.Errorf("headers %v", ha)
	}
	if hb["ce_id"] != "t-2" || hb["ce_time"] != "" || hb["ce_subject"] != "" || hb["content-type"] != "" {
		t.Errorf("second record's headers leaked or wrong: %v", hb)
	}
	if len(shared) != 1 || cap(shared) != 1 {
		t.Errorf("shared header slice changed: %v", shared)
	}

	// Stamping again replaces, never duplicates.
	CloudEvent{Type: TypeRiskSignal, Source: Source("rules"), ID: "s-1", Data: timestamppb.Now()}.Stamp(&a)
	n := 0
	for _, h := range a.Headers {
		if h.Key == "ce_id" {
			n++
		}
	}
	if n != 1 || headers(a)["ce_id"] != "s-1" || headers(a)["ce_time"] != "" {
		t.Errorf("restamped: %v", a.Headers)
	}
	if got := AlertType("ALERT_CHANGE_SEVERITY_RAISED"); got != "com.churnwatch.alert.severity_raised" {
		t.Errorf("AlertType = %q", got)
	}
}

func TestDeadLetterKeepsCloudEvent(t *testing.T) {
	m := kafka.Message{Topic: "churnwatch.events.v1", Partition: 2, Offset: 7}
	CloudEvent{Type: TypeAccountEvent, Source: Source("ingester"), ID: "t-1", Data: timestamppb.Now()}.Stamp(&m)
	h := headers(DeadLetter(&m, "", "decode", "bad"))
	if h["ce_id"] != "t-1" || h["ce_source"] != "churnwatch/ingester" || h["content-type"] == "" || h[HeaderReasonClass] != "decode" {
		t.Errorf("dead letter of a churnwatch record: %v", h)
	}
	// A record written by someone else gets a dead-letter identity.
	foreign := kafka.Message{Topic: "churnwatch.events.v1", Partition: 2, Offset: 7, Value: []byte("garbage")}
	h = headers(DeadLetter(&foreign, "", "decode", "bad"))
	if h["ce_specversion"] != "1.0" || h["ce_type"] != TypeDeadLetter || h["ce_id"] != "churnwatch.events.v1/2/7" || h[HeaderSourceOffset] != "7" {
		t.Errorf("dead letter of a foreign record: %v", h)
	}
}
