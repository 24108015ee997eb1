package app

import (
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped below, before this package's init
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// Invalid UTF-8 in one record of an IngestService batch must reject that
// record only (SPEC §2). Protobuf refuses a string field with invalid
// UTF-8 while decoding, before any handler runs, so the whole batch would
// fail INTERNAL. The codec below wraps gRPC's proto codec: when a request
// of IngestService fails to decode, it replaces the invalid bytes of its
// string fields with U+FFFD and decodes again; validation then rejects
// exactly the records holding U+FFFD (validate.CodeBadUTF8), naming the
// field. Every other message, and every request that decodes, goes the
// standard way unchanged.
//
// gRPC looks codecs up by name for the whole process; platform/service
// builds the server, so the codec is registered here rather than forced
// per server. It changes nothing for other services in the same process
// (churnwatch dev): their messages never take the second path.
func init() {
	encoding.RegisterCodecV2(lenientCodec{base: encoding.GetCodecV2("proto")})
}

// lenientRequests are the messages decoded leniently.
var lenientRequests = map[protoreflect.FullName]bool{
	(&cwv1.PublishEventsRequest{}).ProtoReflect().Descriptor().FullName():   true,
	(&cwv1.StreamEventsRequest{}).ProtoReflect().Descriptor().FullName():    true,
	(&cwv1.UpsertCustomersRequest{}).ProtoReflect().Descriptor().FullName(): true,
}

type lenientCodec struct{ base encoding.CodecV2 }

func (c lenientCodec) Name() string { return c.base.Name() }

func (c lenientCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok || !lenientRequests[m.ProtoReflect().Descriptor().FullName()] {
		return err
	}
	fixed, changed := replaceInvalidUTF8(nil, data.Materialize(), m.ProtoReflect().Descriptor())
	if !changed {
		return err
	}
	return proto.Unmarshal(fixed, m)
}

// replaceInvalidUTF8 appends to dst the wire encoding b of a message of
// type md with every invalid UTF-8 sequence in its string fields (nested
// messages included) replaced by U+FFFD. changed is false when nothing
// was replaced or b is not a well-formed encoding.
func replaceInvalidUTF8(dst, b []byte, md protoreflect.MessageDescriptor) (out []byte, changed bool) {
	out = dst
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst, false
		}
		tag := b[:n]
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return dst, false
			}
			out = append(append(out, tag...), b[:m]...)
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return dst, false
		}
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			out = protowire.AppendBytes(append(out, tag...), []byte(toValidUTF8(v)))
			changed = true
		case fd.Kind() == protoreflect.MessageKind:
			inner, ch := replaceInvalidUTF8(nil, v, fd.Message())
			if ch {
				out = protowire.AppendBytes(append(out, tag...), inner)
				changed = true
			} else {
				out = append(append(out, tag...), b[:m]...)
			}
		default:
			out = append(append(out, tag...), b[:m]...)
		}
		b = b[m:]
	}
	return out, changed
}

// toValidUTF8 replaces each invalid byte of v with U+FFFD.
func toValidUTF8(v []byte) string {
	out := make([]rune, 0, len(v))
	for len(v) > 0 {
		r, n := utf8.DecodeRune(v)
		out = append(out, r)
		v = v[n:]
	}
	return string(out)
}
