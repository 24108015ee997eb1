package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// jsonEvent holds the raw JSON of each field so that every field is read
// as text exactly as sent: a number stays its literal digits (never a
// float), and a field of the wrong JSON type is named in the error.
type jsonEvent struct {
	EventID          json.RawMessage `json:"eventId"`
	CustomerID       json.RawMessage `json:"customerId"`
	AccountID        json.RawMessage `json:"accountId"`
	OccurredAt       json.RawMessage `json:"occurredAt"`
	Type             json.RawMessage `json:"type"`
	Amount           json.RawMessage `json:"amount"`
	Currency         json.RawMessage `json:"currency"`
	CounterpartyBank json.RawMessage `json:"counterpartyBank"`
	BalanceAfter     json.RawMessage `json:"balanceAfter"`
	Channel          json.RawMessage `json:"channel"`
	Sentiment        json.RawMessage `json:"sentiment"`
}

type jsonCustomer struct {
	CustomerID  json.RawMessage `json:"customerId"`
	Tier        json.RawMessage `json:"tier"`
	ManagerID   json.RawMessage `json:"managerId"`
	BranchID    json.RawMessage `json:"branchId"`
	DisplayName json.RawMessage `json:"displayName"`
	// ManagerEmail is optional (SPEC §2).
	ManagerEmail json.RawMessage `json:"managerEmail"`
}

// fields converts raw values to text, remembering the first field of the
// wrong JSON type.
type fields struct{ err error }

func (f *fields) text(name string, raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		// Fast path for strings without escapes, which is nearly all of them.
		// Invalid UTF-8 takes the slow path, which replaces it: protobuf
		// refuses to carry invalid strings.
		if in := raw[1:max(1, len(raw)-1)]; len(raw) >= 2 && bytes.IndexByte(in, '\\') < 0 && bytes.IndexByte(in, '"') < 0 && utf8.Valid(in) {
			return string(in)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil && f.err == nil {
			f.err = decodeErr(fmt.Sprintf("%s: not a valid JSON string", name))
		}
		return s
	case c == '-' || (c >= '0' && c <= '9'):
		// A JSON number is kept as its literal text: validation decides
		// whether it is an acceptable decimal, and no float ever sees money.
		return string(raw)
	case bytes.Equal(raw, []byte("null")):
		return ""
	default:
		if f.err == nil {
			f.err = decodeErr(fmt.Sprintf("%s: must be a string", name))
		}
		return ""
	}
}

func objectErr(b []byte, err error) error {
	var se *json.SyntaxError
	switch {
	case len(bytes.TrimSpace(b)) == 0:
		return decodeErr("empty record")
	case errors.As(err, &se):
		return decodeErr(fmt.Sprintf("not valid JSON (at byte %d)", se.Offset))
	default:
		return decodeErr("not a JSON object")
	}
}

func decodeEventJSON(b []byte) (*cwv1.IncomingEvent, error) {
	var j jsonEvent
	if err := json.Unmarshal(b, &j); err != nil {
		ev := &cwv1.IncomingEvent{}
		return ev, objectErr(b, err)
	}
	var f fields
	ev := &cwv1.IncomingEvent{
		EventId:          f.text("eventId", j.EventID),
		CustomerId:       f.text("customerId", j.CustomerID),
		AccountId:        f.text("accountId", j.AccountID),
		OccurredAt:       f.text("occurredAt", j.OccurredAt),
		Type:             f.text("type", j.Type),
		Amount:           f.text("amount", j.Amount),
		Currency:         f.text("currency", j.Currency),
		CounterpartyBank: f.text("counterpartyBank", j.CounterpartyBank),
		BalanceAfter:     f.text("balanceAfter", j.BalanceAfter),
		Channel:          f.text("channel", j.Channel),
		Sentiment:        f.text("sentiment", j.Sentiment),
	}
	return ev, f.err
}

func decodeCustomerJSON(b []byte) (*cwv1.IncomingCustomer, error) {
	var j jsonCustomer
	if err := json.Unmarshal(b, &j); err != nil {
		return &cwv1.IncomingCustomer{}, objectErr(b, err)
	}
	var f fields
	c := &cwv1.IncomingCustomer{
		CustomerId:   f.text("customerId", j.CustomerID),
		Tier:         f.text("tier", j.Tier),
		ManagerId:    f.text("managerId", j.ManagerID),
		BranchId:     f.text("branchId", j.BranchID),
		DisplayName:  f.text("displayName", j.DisplayName),
		ManagerEmail: f.text("managerEmail", j.ManagerEmail),
	}
	return c, f.err
}

// jsonDecoder walks one top-level JSON array element by element.
type jsonDecoder struct{ dec *json.Decoder }

func newJSONDecoder(r io.Reader) *jsonDecoder { return &jsonDecoder{dec: json.NewDecoder(r)} }

// ErrNotArray means a JSON body was not an array of records.
var ErrNotArray = errors.New("body is not a JSON array of records")

func (d *jsonDecoder) open() error {
	tok, err := d.dec.Token()
	if errors.Is(err, io.EOF) {
		return ErrNotArray
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotArray, err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return ErrNotArray
	}
	return nil
}

// element returns the next element's raw JSON, or nil after the closing
// bracket.
func (d *jsonDecoder) element() (json.RawMessage, error) {
	if d.dec.More() {
		var raw json.RawMessage
		if err := d.dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("broken JSON array: %v", err)
		}
		return raw, nil
	}
	if _, err := d.dec.Token(); err != nil {
		return nil, fmt.Errorf("broken JSON array: %v", err)
	}
	if _, err := d.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("broken JSON array: content after the closing bracket")
	}
	return nil, nil
}
