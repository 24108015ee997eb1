package kafkax

import (
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
)

// CloudEvents Kafka protocol binding, binary content mode: the record value
// is the event data (a protobuf message), the attributes travel as headers.
// Every record churnwatch produces carries them (SPEC §1), so that any
// consumer can route and decode a record without knowing the topic.
const (
	HeaderCESpecVersion = "ce_specversion"
	HeaderCEType        = "ce_type"
	HeaderCESource      = "ce_source"
	HeaderCEID          = "ce_id"
	HeaderCETime        = "ce_time"
	HeaderCESubject     = "ce_subject"
	HeaderContentType   = "content-type"

	CESpecVersion = "1.0"
)

// Event types (ce_type). The type says what happened; the content-type's
// messageType says how to decode the value.
const (
	TypeAccountEvent      = "com.churnwatch.account_event"
	TypeBusinessDayClosed = "com.churnwatch.business_day_closed"
	TypeCustomerProfile   = "com.churnwatch.customer_profile"
	TypeRiskSignal        = "com.churnwatch.risk_signal"
	// TypeAlertPrefix is followed by the change: com.churnwatch.alert.created.
	TypeAlertPrefix = "com.churnwatch.alert."
	// TypeDeadLetter is the type of a dead letter whose original record
	// carried no CloudEvents attributes (written by someone else).
	TypeDeadLetter = "com.churnwatch.dead_letter"
)

// Source returns the ce_source of a churnwatch service: churnwatch/<service>.
func Source(service string) string { return "churnwatch/" + service }

// ContentType is the content-type header of a record whose value is v.
func ContentType(v proto.Message) string {
	return "application/protobuf; messageType=" + string(v.ProtoReflect().Descriptor().FullName())
}

// CloudEvent is the set of CloudEvents attributes of one record.
type CloudEvent struct {
	Type    string    // ce_type, one of the Type constants
	Source  string    // ce_source, Source(service)
	ID      string    // ce_id: unique per event; a redelivery repeats it
	Time    time.Time // ce_time (RFC 3339), left out when zero
	Subject string    // ce_subject (the customer id), left out when empty
	// Data is the record's value, for the content-type's messageType. When
	// nil, the content-type header is left as the record has it.
	Data proto.Message
}

// Stamp sets ev's headers on m, replacing any CloudEvents headers m had and
// keeping the others (traceparent, cw-*). m.Headers is copied first: a
// batch's records often share one header slice.
func (ev CloudEvent) Stamp(m *kafka.Message) {
	contentType := headerValue(m.Headers, HeaderContentType)
	if ev.Data != nil {
		contentType = ContentType(ev.Data)
	}
	hs := make([]kafka.Header, 0, len(m.Headers)+7)
	for _, h := range m.Headers {
		if !isCloudEventHeader(h.Key) {
			hs = append(hs, h)
		}
	}
	hs = append(hs,
		kafka.Header{Key: HeaderCESpecVersion, Value: []byte(CESpecVersion)},
		kafka.Header{Key: HeaderCEType, Value: []byte(ev.Type)},
		kafka.Header{Key: HeaderCESource, Value: []byte(ev.Source)},
		kafka.Header{Key: HeaderCEID, Value: []byte(ev.ID)},
	)
	if !ev.Time.IsZero() {
		hs = append(hs, kafka.Header{Key: HeaderCETime, Value: []byte(ev.Time.UTC().Format(time.RFC3339Nano))})
	}
	if ev.Subject != "" {
		hs = append(hs, kafka.Header{Key: HeaderCESubject, Value: []byte(ev.Subject)})
	}
	if contentType != "" {
		hs = append(hs, kafka.Header{Key: HeaderContentType, Value: []byte(contentType)})
	}
	m.Headers = hs
}

// AlertType is the ce_type of an alert update with change, the enum
// value's name without its prefix: ALERT_CHANGE_SEVERITY_RAISED →
// com.churnwatch.alert.severity_raised.
func AlertType(change string) string {
	return TypeAlertPrefix + strings.ToLower(strings.TrimPrefix(change, "ALERT_CHANGE_"))
}

func isCloudEventHeader(key string) bool {
	return strings.HasPrefix(key, "ce_") || strings.EqualFold(key, HeaderContentType)
}

func headerValue(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// deadLetterEvent gives a dead letter whose original record had no
// CloudEvents attributes its own: the record's place is its identity.
func deadLetterEvent(m *kafka.Message, topic string) CloudEvent {
	return CloudEvent{
		Type:   TypeDeadLetter,
		Source: topic, // the topic it was read from
		ID:     topic + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10),
	}
}
