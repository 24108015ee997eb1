package convert

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// ErrMalformed is returned for bytes that are not an AccountEvent in the
// protobuf wire format (exactly those proto.Unmarshal rejects), so that the
// consumer can tell a "decode" DLQ record from an "invalid" one.
var ErrMalformed = errors.New("malformed record")

// Record is one events-topic record decoded for scoring.
type Record struct {
	Event  engine.Event // set when the record is a scoreable event (not a marker)
	Marker bool         // EVENT_TYPE_BUSINESS_DAY_CLOSED: only At matters
	At     time.Time    // occurred_at (== Event.Time for events), UTC as AsTime gives it
	// Profile is set on EVENT_TYPE_PROFILE_UPDATED records (Event.CustomerID
	// names the customer; no event time).
	Profile *cwv1.CustomerProfile

	// AcceptedClock is the ingester's partition clock when it accepted the
	// event (unix ms; 0 when absent or invalid): lateness is judged
	// against it.
	AcceptedClock int64

	// ingested_at exactly as it was on the wire, not validated: signals
	// carry it on unchanged, and present-but-zero is not absent.
	IngestedSeconds int64
	IngestedNanos   int32
	HasIngestedAt   bool
}

// IngestedAt rebuilds the record's ingested_at for the signals it
// triggers; nil when the record had none.
func (r *Record) IngestedAt() *timestamppb.Timestamp {
	if !r.HasIngestedAt {
		return nil
	}
	return &timestamppb.Timestamp{Seconds: r.IngestedSeconds, Nanos: r.IngestedNanos}
}

// AccountEvent and google.protobuf.Timestamp field numbers.
const (
	fieldEventID          = 1
	fieldCustomerID       = 2
	fieldAccountID        = 3
	fieldOccurredAt       = 4
	fieldType             = 5
	fieldAmountMinor      = 6
	fieldCurrency         = 7
	fieldCounterpartyBank = 8
	fieldBalanceAfter     = 9
	fieldSentiment        = 11
	fieldIngestedAt       = 12
	fieldAcceptedClock    = 13
	fieldProfile          = 14

	fieldSeconds = 1
	fieldNanos   = 2
)

// Range of a valid google.protobuf.Timestamp, as timestamppb's CheckValid
// has it: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const (
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
)

// eventTypeByNumber is eventTypes as a table, which DecodeRecord indexes in
// a fraction of a map lookup; EventUnknown where eventTypes has no entry.
var eventTypeByNumber = func() []engine.EventType {
	var n cwv1.EventType
	for pt := range eventTypes {
		n = max(n, pt+1)
	}
	tab := make([]engine.EventType, n)
	for pt, t := range eventTypes {
		tab[pt] = t
	}
	return tab
}()

// stamp is a google.protobuf.Timestamp as decoded, before validation.
type stamp struct {
	seconds int64
	nanos   int32
	present bool
}

func (s *stamp) valid() bool {
	return s.present && s.seconds >= minTimestamp && s.seconds <= maxTimestamp &&
		s.nanos >= 0 && s.nanos < 1e9
}

func (s *stamp) time() time.Time {
	return time.Unix(s.seconds, int64(s.nanos)).UTC()
}

// wireEvent holds an AccountEvent's fields while the record is parsed: the
// strings still point into the record's bytes and are only copied once the
// last occurrence of each is known.
type wireEvent struct {
	eventID, customerID, accountID, currency, counterpartyBank []byte
	occurredAt, ingestedAt, acceptedClock                      stamp
	hasProfile                                                 bool
	typ                                                        int32
	amount, balance                                            int64
	sentiment                                                  float64
	hasBalance, hasSentiment                                   bool
}

// DecodeRecord decodes b (an AccountEvent in protobuf wire format) without
// reflection or intermediate messages. It decides exactly as
// proto.Unmarshal followed by IsClockMarker and Event would: ErrMalformed
// for what proto.Unmarshal rejects, ErrInvalidEvent (with Event's messages)
// for what Event rejects and for a marker without a valid occurred_at. The
// Record keeps no reference into b.
func DecodeRecord(b []byte) (Record, error) {
	var w wireEvent
	if err := w.parse(b); err != nil {
		return Record{}, err
	}
	rec := Record{
		IngestedSeconds: w.ingestedAt.seconds,
		IngestedNanos:   w.ingestedAt.nanos,
		HasIngestedAt:   w.ingestedAt.present,
	}
	if w.acceptedClock.valid() {
		rec.AcceptedClock = w.acceptedClock.time().UnixMilli()
	}
	typ := cwv1.EventType(w.typ)
	if w.hasProfile || typ == cwv1.EventType_EVENT_TYPE_PROFILE_UPDATED {
		// Rare: decode the whole record the ordinary way, which also
		// validates the nested profile exactly as proto.Unmarshal does.
		return decodeSlow(b, rec)
	}
	if typ == cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED {
		if !w.occurredAt.valid() {
			return Record{}, fmt.Errorf("%w: clock marker without a valid occurred_at", ErrInvalidEvent)
		}
		rec.Marker, rec.At = true, w.occurredAt.time()
		return rec, nil
	}
	// Same checks, in the same order, as Event.
	var t engine.EventType
	if typ >= 0 && int(typ) < len(eventTypeByNumber) {
		t = eventTypeByNumber[typ]
	}
	if t == engine.EventUnknown {
		return Record{}, fmt.Errorf("%w: type %s", ErrInvalidEvent, typ)
	}
	if len(w.customerID) == 0 {
		return Record{}, fmt.Errorf("%w: no customer id", ErrInvalidEvent)
	}
	if !w.occurredAt.valid() {
		return Record{}, fmt.Errorf("%w: no valid occurred_at", ErrInvalidEvent)
	}
	if w.amount < 0 {
		return Record{}, fmt.Errorf("%w: negative amount", ErrInvalidEvent)
	}
	rec.At = w.occurredAt.time()
	rec.Event = engine.Event{
		ID:               string(w.eventID),
		CustomerID:       string(w.customerID),
		AccountID:        string(w.accountID),
		Time:             rec.At,
		Type:             t,
		Amount:           w.amount,
		Currency:         string(w.currency),
		CounterpartyBank: string(w.counterpartyBank),
		BalanceAfter:     w.balance,
		HasBalance:       w.hasBalance,
		Sentiment:        w.sentiment,
		HasSentiment:     w.hasSentiment,
	}
	return rec, nil
}

// decodeSlow decodes a record that carries a profile with proto.Unmarshal.
// A profile record needs a customer id and a profile; an event that carries
// a profile is decoded as the event (the profile is ignored).
func decodeSlow(b []byte, rec Record) (Record, error) {
	var pb cwv1.AccountEvent
	if err := proto.Unmarshal(b, &pb); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if IsProfileRecord(&pb) {
		p, err := RecordProfile(&pb)
		if err != nil {
			return Record{}, err
		}
		rec.Profile = p
		rec.Event.CustomerID = pb.GetCustomerId()
		return rec, nil
	}
	if IsClockMarker(&pb) {
		if pb.GetOccurredAt() == nil || pb.GetOccurredAt().CheckValid() != nil {
			return Record{}, fmt.Errorf("%w: clock marker without a valid occurred_at", ErrInvalidEvent)
		}
		rec.Marker, rec.At = true, pb.GetOccurredAt().AsTime()
		return rec, nil
	}
	ev, err := Event(&pb)
	if err != nil {
		return Record{}, err
	}
	rec.Event, rec.At = ev, ev.Time
	return rec, nil
}

// parse follows protobuf-go's unmarshalPointerEager
// (internal/impl/decode.go): a known field number with another wire type
// than its own is skipped like an unknown field, a repeated scalar keeps its
// last value, a repeated message field is merged, and int32 and enum
// varints are truncated to 32 bits.
func (w *wireEvent) parse(b []byte) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		b = b[n:]
		switch {
		case num == fieldEventID && typ == protowire.BytesType:
			w.eventID, n, err = consumeString(num, b)
		case num == fieldCustomerID && typ == protowire.BytesType:
			w.customerID, n, err = consumeString(num, b)
		case num == fieldAccountID && typ == protowire.BytesType:
			w.accountID, n, err = consumeString(num, b)
		case num == fieldCurrency && typ == protowire.BytesType:
			w.currency, n, err = consumeString(num, b)
		case num == fieldCounterpartyBank && typ == protowire.BytesType:
			w.counterpartyBank, n, err = consumeString(num, b)
		case num == fieldOccurredAt && typ == protowire.BytesType:
			n, err = w.occurredAt.merge(num, b)
		case num == fieldIngestedAt && typ == protowire.BytesType:
			n, err = w.ingestedAt.merge(num, b)
		case num == fieldAcceptedClock && typ == protowire.BytesType:
			n, err = w.acceptedClock.merge(num, b)
		case num == fieldProfile && typ == protowire.BytesType:
			w.hasProfile = true
			n = protowire.ConsumeFieldValue(num, typ, b)
		case num == fieldType && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			w.typ = int32(v)
		case num == fieldAmountMinor && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			w.amount = int64(v)
		case num == fieldBalanceAfter && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			w.balance, w.hasBalance = int64(v), true
		case num == fieldSentiment && typ == protowire.Fixed64Type:
			var v uint64
			v, n = protowire.ConsumeFixed64(b)
			w.sentiment, w.hasSentiment = math.Float64frombits(v), true
		default:
			// Unknown fields, channel (unused here, but a varint all the
			// same), and known fields with a foreign wire type.
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if err != nil {
			return err
		}
		if n < 0 {
			return malformed(num, n)
		}
		b = b[n:]
	}
	return nil
}

// merge decodes a google.protobuf.Timestamp field of the record into s
// over what an earlier occurrence set, as protobuf-go merges a repeated
// message field. The field is present even when its message is empty.
func (s *stamp) merge(outer protowire.Number, b []byte) (int, error) {
	m, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return 0, malformed(outer, n)
	}
	s.present = true
	for len(m) > 0 {
		num, typ, k, err := consumeTag(m)
		if err != nil {
			return 0, fmt.Errorf("%w: field %d: %v", ErrMalformed, outer, err)
		}
		m = m[k:]
		switch {
		case num == fieldSeconds && typ == protowire.VarintType:
			var v uint64
			v, k = protowire.ConsumeVarint(m)
			s.seconds = int64(v)
		case num == fieldNanos && typ == protowire.VarintType:
			var v uint64
			v, k = protowire.ConsumeVarint(m)
			s.nanos = int32(v)
		default:
			k = protowire.ConsumeFieldValue(num, typ, m)
		}
		if k < 0 {
			return 0, fmt.Errorf("%w: field %d.%d: %v", ErrMalformed, outer, num, protowire.ParseError(k))
		}
		m = m[k:]
	}
	return n, nil
}

// consumeTag reads a field's tag. Like protobuf-go (and unlike
// protowire.ConsumeTag) it refuses field numbers above MaxValidNumber, and
// an end-group tag outside any group.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int, error) {
	tag, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, 0, fmt.Errorf("tag: %w", protowire.ParseError(n))
	}
	num := tag >> 3
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return 0, 0, 0, fmt.Errorf("invalid field number %d", num)
	}
	typ := protowire.Type(tag & 7)
	if typ == protowire.EndGroupType {
		return 0, 0, 0, fmt.Errorf("field %d: end group outside a group", num)
	}
	return protowire.Number(num), typ, n, nil
}

// consumeString reads a proto3 string field, which must be valid UTF-8.
func consumeString(num protowire.Number, b []byte) ([]byte, int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, malformed(num, n)
	}
	if !utf8.Valid(v) {
		return nil, 0, fmt.Errorf("%w: field %d: invalid UTF-8", ErrMalformed, num)
	}
	return v, n, nil
}

func malformed(num protowire.Number, code int) error {
	return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(code))
}
