package app

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// FuzzLenientCodec: whatever bytes arrive, decoding an IngestService
// request never panics, and a request that decodes carries only valid
// UTF-8 (protobuf would refuse to re-encode it otherwise).
func FuzzLenientCodec(f *testing.F) {
	good, _ := proto.Marshal(&cwv1.PublishEventsRequest{Events: []*cwv1.IncomingEvent{
		{EventId: "t-1", CustomerId: "CZZ1", Type: "DEPOSIT", Amount: "5.00"}, {EventId: "t-2", CounterpartyBank: "BANK"},
	}, AllOrNothing: true})
	f.Add(good)
	f.Add(bytes.ReplaceAll(good, []byte("ZZ"), []byte("\xff\xfe")))
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0xff})
	codec := encoding.GetCodecV2("proto")
	if _, ok := codec.(lenientCodec); !ok {
		f.Fatalf("the proto codec is %T, not the lenient one", codec)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []proto.Message{&cwv1.PublishEventsRequest{}, &cwv1.StreamEventsRequest{}, &cwv1.UpsertCustomersRequest{}} {
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m); err != nil {
				continue
			}
			if _, err := proto.Marshal(m); err != nil {
				t.Fatalf("decoded %v cannot be encoded: %v", m, err)
			}
		}
	})
}
