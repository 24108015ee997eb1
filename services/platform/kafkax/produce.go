package kafkax

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"
)

// ProtoMessage encodes v as a record keyed by key, carrying the trace
// context of ctx in its headers (W3C traceparent) and ev's CloudEvents
// attributes (ev.Data defaults to v).
func ProtoMessage(ctx context.Context, prop propagation.TextMapPropagator, key string, v proto.Message, ev CloudEvent) (kafka.Message, error) {
	b, err := proto.Marshal(v)
	if err != nil {
		return kafka.Message{}, err
	}
	m := kafka.Message{Key: []byte(key), Value: b}
	prop.Inject(ctx, HeaderCarrier{Headers: &m.Headers})
	if ev.Data == nil {
		ev.Data = v
	}
	ev.Stamp(&m)
	return m, nil
}

// Extract returns ctx with the trace context carried by m.
func Extract(ctx context.Context, prop propagation.TextMapPropagator, m *kafka.Message) context.Context {
	return prop.Extract(ctx, HeaderCarrier{Headers: &m.Headers})
}
