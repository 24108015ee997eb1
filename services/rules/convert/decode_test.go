package convert_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/convert"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// wire builds records by hand, for what proto.Marshal never writes:
// repeated fields, foreign wire types, unknown fields, broken bytes.
type wire []byte

func (w wire) str(num protowire.Number, s string) wire {
	return protowire.AppendString(protowire.AppendTag(w, num, protowire.BytesType), s)
}

func (w wire) bytes(num protowire.Number, b []byte) wire {
	return protowire.AppendBytes(protowire.AppendTag(w, num, protowire.BytesType), b)
}

func (w wire) varint(num protowire.Number, v uint64) wire {
	return protowire.AppendVarint(protowire.AppendTag(w, num, protowire.VarintType), v)
}

func (w wire) fixed64(num protowire.Number, v uint64) wire {
	return protowire.AppendFixed64(protowire.AppendTag(w, num, protowire.Fixed64Type), v)
}

func (w wire) fixed32(num protowire.Number, v uint32) wire {
	return protowire.AppendFixed32(protowire.AppendTag(w, num, protowire.Fixed32Type), v)
}

func (w wire) tag(num protowire.Number, typ protowire.Type) wire {
	return protowire.AppendTag(w, num, typ)
}

func (w wire) raw(b ...byte) wire { return append(w, b...) }

func (w wire) stamp(num protowire.Number, secs int64, nanos int32) wire {
	return w.bytes(num, wire{}.varint(1, uint64(secs)).varint(2, uint64(int64(nanos))))
}

func marshal(t testing.TB, ev *cwv1.AccountEvent) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var occurred = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

// transferOut is a typical record of the events topic.
func transferOut() *cwv1.AccountEvent {
	return &cwv1.AccountEvent{
		EventId:           "7f0e2c1a-6b1d-4c55-9b8e-3f2a9d1e4c70",
		CustomerId:        "C-00042137",
		AccountId:         "DE89370400440532013000",
		OccurredAt:        timestamppb.New(occurred),
		Type:              cwv1.EventType_EVENT_TYPE_TRANSFER_OUT,
		AmountMinor:       1250000,
		Currency:          "EUR",
		CounterpartyBank:  "COBADEFFXXX",
		BalanceAfterMinor: proto.Int64(310000),
		Channel:           cwv1.Channel_CHANNEL_MOBILE,
		IngestedAt:        timestamppb.New(occurred.Add(40 * time.Millisecond)),
	}
}

// minimal is the least a scoreable record needs, for hand-built cases to
// append to.
func minimal() wire {
	return wire{}.str(2, "C-1").stamp(4, occurred.Unix(), 5).varint(5, 1)
}

type decodeCase struct {
	name string
	b    []byte
	want string // event, marker, invalid or malformed
}

func decodeCases(t testing.TB) []decodeCase {
	var cases []decodeCase
	add := func(name string, b []byte, want string) {
		cases = append(cases, decodeCase{name, b, want})
	}
	for typ := cwv1.EventType_EVENT_TYPE_DEPOSIT; typ <= cwv1.EventType_EVENT_TYPE_COMPLAINT; typ++ {
		ev := transferOut()
		ev.Type = typ
		if typ == cwv1.EventType_EVENT_TYPE_COMPLAINT {
			ev.Sentiment = proto.Float64(-0.75)
		}
		add(typ.String(), marshal(t, ev), "event")
	}
	bare := transferOut()
	bare.BalanceAfterMinor, bare.IngestedAt, bare.EventId, bare.AccountId = nil, nil, "", ""
	add("optional fields absent", marshal(t, bare), "event")
	zero := transferOut()
	zero.BalanceAfterMinor, zero.Sentiment, zero.AmountMinor = proto.Int64(0), proto.Float64(0), 0
	zero.IngestedAt = &timestamppb.Timestamp{}
	add("optional fields present but zero", marshal(t, zero), "event")
	neg := transferOut()
	neg.BalanceAfterMinor, neg.Sentiment = proto.Int64(-5), proto.Float64(math.Inf(-1))
	add("negative balance, infinite sentiment", marshal(t, neg), "event")
	add("NaN sentiment", minimal().fixed64(11, math.Float64bits(math.NaN())), "event")
	add("ingested_at empty message", minimal().bytes(12, nil), "event")
	add("ingested_at out of range", minimal().stamp(12, -1e15, -7), "event")

	marker := &cwv1.AccountEvent{Type: cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED, OccurredAt: timestamppb.New(occurred)}
	add("marker", marshal(t, marker), "marker")
	marker.IngestedAt = &timestamppb.Timestamp{Seconds: 1}
	marker.CustomerId, marker.AmountMinor = "ignored", -3
	add("marker with ingested_at and junk", marshal(t, marker), "marker")
	add("marker without occurred_at", wire{}.varint(5, 100), "invalid")
	add("marker with negative nanos", wire{}.varint(5, 100).stamp(4, 0, -1), "invalid")
	add("marker past year 9999", wire{}.varint(5, 100).stamp(4, 253402300800, 0), "invalid")
	add("marker by truncated type", wire{}.varint(5, 1<<32|100).stamp(4, 0, 0), "marker")

	add("empty record", nil, "invalid")
	add("type unspecified", wire{}.str(2, "C-1").stamp(4, 0, 0), "invalid")
	add("type unknown", minimal().varint(5, 55), "invalid")
	add("type negative", minimal().varint(5, uint64(math.MaxUint64)), "invalid")
	add("type truncated to 32 bits", minimal().varint(5, 1<<32|5), "event")
	add("type above int32", minimal().varint(5, 1<<31), "invalid")
	add("missing customer id", wire{}.stamp(4, 0, 0).varint(5, 1), "invalid")
	add("negative amount", minimal().varint(6, uint64(1<<64-1)), "invalid")
	add("missing occurred_at", wire{}.str(2, "C-1").varint(5, 1), "invalid")
	add("nanos 1e9", wire{}.str(2, "C-1").stamp(4, 0, 1e9).varint(5, 1), "invalid")
	add("nanos negative", wire{}.str(2, "C-1").stamp(4, 0, -1).varint(5, 1), "invalid")
	add("nanos truncated to 32 bits", wire{}.str(2, "C-1").bytes(4, wire{}.varint(2, 1<<32|7)).varint(5, 1), "event")
	add("seconds before year 1", wire{}.str(2, "C-1").stamp(4, -62135596801, 0).varint(5, 1), "invalid")
	add("seconds at year 1", wire{}.str(2, "C-1").stamp(4, -62135596800, 0).varint(5, 1), "event")
	add("last nanosecond of 9999", wire{}.str(2, "C-1").stamp(4, 253402300799, 999999999).varint(5, 1), "event")

	add("customer id repeated", minimal().str(2, "C-2"), "event")
	add("customer id cleared", minimal().str(2, ""), "invalid")
	add("type repeated", minimal().varint(5, 100).varint(5, 3), "event")
	add("amount repeated", minimal().varint(6, uint64(1<<64-1)).varint(6, 9), "event")
	add("balance repeated", minimal().varint(9, 1).varint(9, 2), "event")
	add("occurred_at merged", wire{}.str(2, "C-1").stamp(4, 100, 5).bytes(4, wire{}.varint(2, 7)).varint(5, 1), "event")
	add("occurred_at merged invalid", minimal().bytes(4, wire{}.varint(2, uint64(1<<64-1))), "invalid")
	add("ingested_at merged", minimal().stamp(12, 9, 9).bytes(12, wire{}.varint(1, 0)), "event")

	add("customer id as varint", wire{}.varint(2, 7).stamp(4, 0, 0).varint(5, 1), "invalid")
	add("type as fixed32", minimal().fixed32(5, 100), "event")
	add("occurred_at as varint", wire{}.str(2, "C-1").varint(4, 1).varint(5, 1), "invalid")
	add("amount as bytes", minimal().bytes(6, []byte{0x80}), "event")
	add("balance as fixed64", minimal().fixed64(9, 1), "event")
	add("sentiment as varint", minimal().varint(11, 1), "event")
	add("sentiment as fixed32", minimal().fixed32(11, 1), "event")
	add("seconds as fixed64", wire{}.str(2, "C-1").bytes(4, wire{}.fixed64(1, 1)).varint(5, 1), "event")
	add("known field as group", minimal().tag(2, protowire.StartGroupType).varint(1, 1).tag(2, protowire.EndGroupType), "event")
	add("known field with reserved wire type", minimal().tag(2, 6), "malformed")

	add("unknown fields", minimal().varint(99, 1).str(500, "x").fixed32(21, 1).fixed64(protowire.MaxValidNumber, 2).varint(10, 2), "event")
	add("unknown group", minimal().tag(20, protowire.StartGroupType).str(1, "x").tag(3, protowire.StartGroupType).tag(3, protowire.EndGroupType).tag(20, protowire.EndGroupType), "event")
	add("unknown group with huge inner number", minimal().tag(20, protowire.StartGroupType).varint(1<<30, 1).tag(20, protowire.EndGroupType), "event")
	add("unknown field inside occurred_at", wire{}.str(2, "C-1").bytes(4, wire{}.varint(1, 5).str(3, "\xff")).varint(5, 1), "event")
	add("channel unknown value", minimal().varint(10, 77), "event")
	add("bad UTF-8 in unknown field", minimal().str(30, "\xc3\x28"), "event")

	add("bad UTF-8 in event id", minimal().str(1, "ok\xff"), "malformed")
	add("bad UTF-8 in currency", minimal().str(7, "\xc3\x28"), "malformed")
	add("bad UTF-8 in overwritten customer id", wire{}.str(2, "\xff").str(2, "C-1").stamp(4, 0, 0).varint(5, 1), "malformed")
	add("field number 0", minimal().varint(0, 1), "malformed")
	add("field number above max", minimal().varint(protowire.MaxValidNumber+1, 1), "malformed")
	add("field number above int32", minimal().raw(0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x01), "malformed")
	add("end group at top level", minimal().tag(20, protowire.EndGroupType), "malformed")
	add("end group in occurred_at", wire{}.str(2, "C-1").bytes(4, wire{}.tag(1, protowire.EndGroupType)).varint(5, 1), "malformed")
	add("unterminated group", minimal().tag(20, protowire.StartGroupType).varint(1, 1), "malformed")
	add("mismatched end group", minimal().tag(20, protowire.StartGroupType).tag(21, protowire.EndGroupType), "malformed")
	add("varint overflow", minimal().raw(0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), "malformed")
	add("tag overflow", minimal().raw(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), "malformed")
	add("length past the end", minimal().raw(0x0a, 0x05, 'a'), "malformed")
	add("truncated seconds in occurred_at", wire{}.str(2, "C-1").bytes(4, []byte{0x08, 0x80}).varint(5, 1), "malformed")
	add("reserved wire type in occurred_at", wire{}.str(2, "C-1").bytes(4, wire{}.tag(5, 7)).varint(5, 1), "malformed")
	prof := func(p *cwv1.CustomerProfile) []byte {
		b, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	add("profile record", wire{}.str(1, "profile:C-1:1").str(2, "C-1").varint(5, 101).bytes(14, prof(&cwv1.CustomerProfile{CustomerId: "C-1", Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, ManagerId: "rm-1"})), "profile")
	add("profile record without a profile", wire{}.str(2, "C-1").varint(5, 101), "invalid")
	add("profile record for another customer", wire{}.str(2, "C-1").varint(5, 101).bytes(14, prof(&cwv1.CustomerProfile{CustomerId: "C-2"})), "invalid")
	add("profile record with a malformed profile", wire{}.str(2, "C-1").varint(5, 101).bytes(14, []byte{0x0a, 0x05}), "malformed")
	add("event carrying a profile", minimal().bytes(14, prof(&cwv1.CustomerProfile{CustomerId: "C-1"})), "")
	add("event with an accepted clock", minimal().stamp(13, 1740819600, 0), "")
	add("reserved wire type after a marker", wire{}.varint(5, 100).stamp(4, 0, 0).raw(0x07), "malformed")

	full := marshal(t, transferOut())
	for i := 1; i < len(full); i++ {
		add(fmt.Sprintf("truncated to %d bytes", i), full[:i], "")
	}
	return cases
}

// reference is what the consumer did before DecodeRecord.
type reference struct {
	class    string // event, marker, invalid or malformed
	err      error
	marker   bool
	at       time.Time
	ev       engine.Event
	ingested *timestamppb.Timestamp
	profile  *cwv1.CustomerProfile
	accepted int64 // accepted_clock, unix ms (0 absent or invalid)
}

func decodeReference(b []byte) reference {
	r := decodeReferenceClass(b)
	var pb cwv1.AccountEvent
	if proto.Unmarshal(b, &pb) == nil && pb.GetAcceptedClock() != nil && pb.GetAcceptedClock().CheckValid() == nil {
		r.accepted = pb.GetAcceptedClock().AsTime().UnixMilli()
	}
	return r
}

func decodeReferenceClass(b []byte) reference {
	var pb cwv1.AccountEvent
	if err := proto.Unmarshal(b, &pb); err != nil {
		return reference{class: "malformed", err: err}
	}
	if convert.IsProfileRecord(&pb) {
		prof, err := convert.RecordProfile(&pb)
		if err != nil {
			return reference{class: "invalid", err: err}
		}
		return reference{class: "profile", profile: prof, ev: engine.Event{CustomerID: pb.GetCustomerId()}, ingested: pb.GetIngestedAt()}
	}
	if convert.IsClockMarker(&pb) {
		if pb.GetOccurredAt() == nil || pb.GetOccurredAt().CheckValid() != nil {
			return reference{class: "invalid", err: fmt.Errorf("%w: clock marker without a valid occurred_at", convert.ErrInvalidEvent)}
		}
		return reference{class: "marker", marker: true, at: pb.GetOccurredAt().AsTime(), ingested: pb.GetIngestedAt()}
	}
	ev, err := convert.Event(&pb)
	if err != nil {
		return reference{class: "invalid", err: err}
	}
	return reference{class: "event", at: ev.Time, ev: ev, ingested: pb.GetIngestedAt()}
}

// checkDecode compares DecodeRecord with the reference on b, and returns
// the class both agreed on.
func checkDecode(t *testing.T, b []byte) string {
	t.Helper()
	want := decodeReference(b)
	// Decode a copy and overwrite it: the record must not alias its input.
	buf := append([]byte(nil), b...)
	rec, err := convert.DecodeRecord(buf)
	for i := range buf {
		buf[i] = 0xff
	}
	class := "event"
	switch {
	case errors.Is(err, convert.ErrMalformed):
		class = "malformed"
	case errors.Is(err, convert.ErrInvalidEvent):
		class = "invalid"
	case err != nil:
		t.Fatalf("error of no class: %v", err)
	case rec.Marker:
		class = "marker"
	case rec.Profile != nil:
		class = "profile"
	}
	if class != want.class {
		t.Fatalf("class %s (%v), reference %s (%v)", class, err, want.class, want.err)
	}
	if err != nil {
		if class == "invalid" && err.Error() != want.err.Error() {
			t.Fatalf("error %q, reference %q", err, want.err)
		}
		if rec != (convert.Record{}) {
			t.Fatalf("record %+v beside error %v", rec, err)
		}
		return class
	}
	if rec.At != want.at || !rec.At.Equal(want.at) {
		t.Errorf("At %v, reference %v", rec.At, want.at)
	}
	if rec.Marker && rec.Event != (engine.Event{}) {
		t.Errorf("marker with event %+v", rec.Event)
	}
	if !sameEvent(rec.Event, want.ev) {
		t.Errorf("event\n%+v, reference\n%+v", rec.Event, want.ev)
	}
	if (rec.Profile == nil) != (want.profile == nil) || (rec.Profile != nil && !proto.Equal(rec.Profile, want.profile)) {
		t.Errorf("profile %v, reference %v", rec.Profile, want.profile)
	}
	if rec.AcceptedClock != want.accepted {
		t.Errorf("accepted clock %d, reference %d", rec.AcceptedClock, want.accepted)
	}
	got := rec.IngestedAt()
	switch {
	case (got == nil) != (want.ingested == nil) || rec.HasIngestedAt != (want.ingested != nil):
		t.Errorf("ingested_at %v (has %t), reference %v", got, rec.HasIngestedAt, want.ingested)
	case got != nil && (got.GetSeconds() != want.ingested.GetSeconds() || got.GetNanos() != want.ingested.GetNanos()):
		t.Errorf("ingested_at %v, reference %v", got, want.ingested)
	}
	return class
}

// sameEvent is reflect.DeepEqual but for a NaN sentiment, which is the
// same NaN bits either way.
func sameEvent(a, b engine.Event) bool {
	if math.Float64bits(a.Sentiment) != math.Float64bits(b.Sentiment) {
		return false
	}
	a.Sentiment, b.Sentiment = 0, 0
	return reflect.DeepEqual(a, b)
}

func TestDecodeRecord(t *testing.T) {
	for _, c := range decodeCases(t) {
		t.Run(c.name, func(t *testing.T) {
			class := checkDecode(t, c.b)
			if c.want != "" && class != c.want {
				t.Errorf("both decoded it as %s, the case is meant as %s", class, c.want)
			}
		})
	}
}

func TestDecodeRecordIngestedAt(t *testing.T) {
	rec, err := convert.DecodeRecord(minimal())
	if err != nil || rec.IngestedAt() != nil {
		t.Fatalf("absent ingested_at: %v, %v", rec.IngestedAt(), err)
	}
	rec, err = convert.DecodeRecord(minimal().bytes(12, nil))
	if err != nil || !proto.Equal(rec.IngestedAt(), &timestamppb.Timestamp{}) {
		t.Fatalf("present but zero ingested_at: %v, %v", rec.IngestedAt(), err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, c := range decodeCases(f) {
		f.Add(c.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	rec := marshal(b, transferOut())
	b.Run("protowire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := convert.DecodeRecord(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto.Unmarshal+convert", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var pb cwv1.AccountEvent
			if err := proto.Unmarshal(rec, &pb); err != nil {
				b.Fatal(err)
			}
			if convert.IsClockMarker(&pb) {
				b.Fatal("marker")
			}
			if _, err := convert.Event(&pb); err != nil {
				b.Fatal(err)
			}
		}
	})
}
