package app

import (
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// alertCloudEvent is the CloudEvents identity of an outbox entry's
// AlertUpdate (already known to decode): ce_id alertId.vN, what a consumer
// dedupes by (exactly once per alert version).
func alertCloudEvent(update []byte) kafkax.CloudEvent {
	u := &cwv1.AlertUpdate{}
	_ = proto.Unmarshal(update, u) // the caller has decoded it once already
	a := u.GetAlert()
	var at time.Time
	if u.GetAt() != nil {
		at = u.GetAt().AsTime()
	}
	return kafkax.CloudEvent{
		Type:    kafkax.AlertType(u.GetChange().String()),
		Source:  kafkax.Source("alerts"),
		ID:      a.GetAlertId() + ".v" + strconv.FormatInt(a.GetVersion(), 10),
		Time:    at,
		Subject: a.GetCustomerId(),
		Data:    u,
	}
}
