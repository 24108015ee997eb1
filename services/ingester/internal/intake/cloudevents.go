package intake

import (
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"google.golang.org/protobuf/proto"
)

// source is the ce_source of every record the ingester writes.
var source = kafkax.Source("ingester")

// eventCloudEvent is the CloudEvents identity of an events-topic record:
// its eventId, at its event time. Business-day markers have a type of
// their own (and no customer).
func eventCloudEvent(ev *cwv1.AccountEvent) kafkax.CloudEvent {
	typ := kafkax.TypeAccountEvent
	if ev.GetType() == cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED {
		typ = kafkax.TypeBusinessDayClosed
	}
	return kafkax.CloudEvent{Type: typ, Source: source, ID: ev.GetEventId(), Time: timeOf(ev.GetOccurredAt()),
		Subject: ev.GetCustomerId(), Data: ev}
}

// profileCloudEvent is the CloudEvents identity of a profile update, on
// the customers topic (data: the CustomerProfile) and in event order on
// the events topic (data: an AccountEvent of type PROFILE_UPDATED). Both
// records are the same occurrence, so they share ce_id (the events-topic
// record's eventId).
func profileCloudEvent(p *cwv1.CustomerProfile, data proto.Message) kafkax.CloudEvent {
	return kafkax.CloudEvent{Type: kafkax.TypeCustomerProfile, Source: source,
		ID:   "profile:" + p.GetCustomerId() + ":" + strconv.FormatInt(p.GetUpdatedAt().AsTime().UnixNano(), 10),
		Time: timeOf(p.GetUpdatedAt()), Subject: p.GetCustomerId(), Data: data}
}

// timeOf is t, or the zero time (no ce_time) when t is not set.
func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}
