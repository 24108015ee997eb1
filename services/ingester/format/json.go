package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
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
	if isID, err := duplicateKey(b, "eventId"); err != nil {
		// The id is kept when it is unambiguous, so the answer names the
		// record.
		ev := &cwv1.IncomingEvent{}
		if !isID {
			var f fields
			ev.EventId = f.text("eventId", j.EventID)
		}
		return ev, err
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
	if isID, err := duplicateKey(b, "customerId"); err != nil {
		c := &cwv1.IncomingCustomer{}
		if !isID {
			var f fields
			c.CustomerId = f.text("customerId", j.CustomerID)
		}
		return c, err
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

// duplicateKey refuses an object that gives a key twice:
// {"amount":"5.00","amount":"999999.00"} means one thing to one parser
// and another to the next (encoding/json keeps the last, others the
// first). Keys are compared as encoding/json matches them to fields,
// case-insensitively ("amount" and "AMOUNT" are the same field), after
// unescaping. b must be valid JSON (json.Unmarshal has accepted it); only
// the top-level object's keys matter, the records have no nested objects.
// The error is a *validate.Error naming the key; id reports whether the
// key is the record's id (which is then not reported either).
func duplicateKey(b []byte, idKey string) (id bool, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false, nil
	}
	i++
	var seen [16]string // records have 11 fields: no map for the usual case
	keys := seen[:0]
	var set map[string]struct{}
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] == '}' {
			return false, nil
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		end := stringEnd(b, i)
		raw := b[i:end]
		i = skipSpace(b, end)
		i++ // ':'
		i = valueEnd(b, skipSpace(b, i))
		key := string(raw[1 : len(raw)-1])
		if bytes.IndexByte(raw, '\\') >= 0 {
			_ = json.Unmarshal(raw, &key)
		}
		k := foldKey(key)
		dup := false
		if set != nil {
			_, dup = set[k]
			set[k] = struct{}{}
		} else {
			for _, o := range keys {
				dup = dup || o == k
			}
			keys = append(keys, k)
			if len(keys) == cap(seen) {
				set = make(map[string]struct{}, 2*len(keys))
				for _, o := range keys {
					set[o] = struct{}{}
				}
			}
		}
		if dup {
			return k == foldKey(idKey), &validate.Error{Field: fieldName(key), Code: validate.CodeDuplicateKey,
				Msg: "key given twice in one object (parsers disagree on which value counts)"}
		}
	}
}

// fieldName is a key as it may appear in a message: as is when it is a
// plain name, else quoted and cut short.
func fieldName(k string) string {
	plain := len(k) > 0 && len(k) <= 32
	for i := 0; plain && i < len(k); i++ {
		c := k[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
	}
	if plain {
		return k
	}
	if r := []rune(k); len(r) > 32 {
		k = string(r[:32]) + "…"
	}
	return strconv.QuoteToASCII(k)
}

// foldKey maps a key to one representative of its case-folding class, the
// way bytes.EqualFold (and so encoding/json's field matching) compares:
// every rune becomes the smallest rune of its simple-fold orbit ("k", "K"
// and the Kelvin sign U+212A all become "K").
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s)
	}
	var sb strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		sb.WriteRune(m)
	}
	return sb.String()
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringEnd returns the index after the JSON string starting at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index after the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			i = stringEnd(b, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
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
