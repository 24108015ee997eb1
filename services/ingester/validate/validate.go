// Package validate checks account events and customer profiles as core
// banking sends them (SPEC §2) and turns them into the records churnwatch
// publishes. It is pure: no I/O, the clock is passed in. The gRPC and HTTP
// intake and churnctl's file readers share it, so a record is judged the
// same way whichever door it comes through.
package validate

import (
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/money"
)

// Limits of SPEC §2.
const (
	MaxEventIDLen   = 128
	MaxIDLen        = 64
	MaxBankLen      = 64
	MaxDisplayName  = 200
	MaxFutureSkew   = 5 * time.Minute
	MinSentiment    = -1.0
	MaxSentimentVal = 1.0
)

// Code is a bounded classification of why a record was refused; it labels
// the rejection metric, so it never carries data.
type Code string

// Codes.
const (
	CodeMissingField          Code = "missing_field"
	CodeTooLong               Code = "too_long"
	CodeBadChars              Code = "bad_chars"
	CodeBadTime               Code = "bad_time"
	CodeFutureTime            Code = "future_time"
	CodeUnknownType           Code = "unknown_type"
	CodeBadDecimal            Code = "bad_decimal"
	CodeTooManyDecimals       Code = "too_many_decimals"
	CodeOutOfRange            Code = "out_of_range"
	CodeUnknownCurrency       Code = "unknown_currency"
	CodeAmountNotAllowed      Code = "amount_not_allowed"
	CodeNonPositiveAmount     Code = "non_positive_amount"
	CodeCurrencyWithoutAmount Code = "currency_without_amount"
	CodeUnknownChannel        Code = "unknown_channel"
	CodeBadSentiment          Code = "bad_sentiment"
	CodeSentimentNotAllowed   Code = "sentiment_not_allowed"
	CodeUnknownTier           Code = "unknown_tier"
	// CodeInvisibleChar: a bidi control or other invisible format character
	// (Unicode Cf, Zl, Zp) in an id or a name, which would make two
	// different ids look alike or reorder what an RM reads.
	CodeInvisibleChar Code = "invisible_char"
	// CodeBadUTF8: a field that is not valid UTF-8 (decoders replace such
	// bytes with U+FFFD, which is refused too).
	CodeBadUTF8 Code = "invalid_utf8"
	// CodeSignedAmount: an amount or balance written with a "+".
	CodeSignedAmount Code = "signed_amount"
	// CodeTooEarly: occurredAt before the earliest accepted event time.
	CodeTooEarly Code = "too_early"
	// CodeDuplicateKey: a JSON object naming one field twice.
	CodeDuplicateKey Code = "duplicate_key"
	// CodeCSVFormula: a CSV text field starting with = + - or @, which a
	// spreadsheet would run as a formula.
	CodeCSVFormula Code = "csv_formula"
	// CodeBadEmail: a managerEmail that is not one address.
	CodeBadEmail Code = "bad_email"
	// CodeDecode is for input that is not a record at all (bad JSON or CSV).
	CodeDecode Code = "decode_error"
)

// Error is why one record was refused: which field, what kind of problem,
// and a sentence for the caller. Messages never repeat amounts or ids, so
// they are safe to log and to show.
type Error struct {
	Field string
	Code  Code
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func fail(field string, code Code, format string, a ...any) *Error {
	return &Error{Field: field, Code: code, Msg: fmt.Sprintf(format, a...)}
}

// CodeOf returns the code of a validation error, or CodeDecode for any
// other error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeDecode
}

// eventTypes are the types a caller may send (the business-day marker is
// internal and never accepted).
var eventTypes = map[string]cwv1.EventType{
	"DEPOSIT": cwv1.EventType_EVENT_TYPE_DEPOSIT, "TRANSFER_IN": cwv1.EventType_EVENT_TYPE_TRANSFER_IN,
	"SALARY": cwv1.EventType_EVENT_TYPE_SALARY, "WITHDRAWAL": cwv1.EventType_EVENT_TYPE_WITHDRAWAL,
	"TRANSFER_OUT": cwv1.EventType_EVENT_TYPE_TRANSFER_OUT, "CARD_PAYMENT": cwv1.EventType_EVENT_TYPE_CARD_PAYMENT,
	"INTEREST": cwv1.EventType_EVENT_TYPE_INTEREST, "FEE": cwv1.EventType_EVENT_TYPE_FEE,
	"LOGIN": cwv1.EventType_EVENT_TYPE_LOGIN, "ACCOUNT_OPENED": cwv1.EventType_EVENT_TYPE_ACCOUNT_OPENED,
	"ACCOUNT_CLOSED": cwv1.EventType_EVENT_TYPE_ACCOUNT_CLOSED, "PRODUCT_CANCELLED": cwv1.EventType_EVENT_TYPE_PRODUCT_CANCELLED,
	"COMPLAINT": cwv1.EventType_EVENT_TYPE_COMPLAINT,
}

var channels = map[string]cwv1.Channel{
	"BRANCH": cwv1.Channel_CHANNEL_BRANCH, "MOBILE": cwv1.Channel_CHANNEL_MOBILE, "ONLINE": cwv1.Channel_CHANNEL_ONLINE,
	"ATM": cwv1.Channel_CHANNEL_ATM, "PHONE": cwv1.Channel_CHANNEL_PHONE,
}

var tiers = map[string]cwv1.Tier{
	"HIGH_NET_WORTH": cwv1.Tier_TIER_HIGH_NET_WORTH, "POTENTIAL": cwv1.Tier_TIER_POTENTIAL,
	"MASS": cwv1.Tier_TIER_MASS, "BASIC": cwv1.Tier_TIER_BASIC,
}

// IsMoneyType reports whether events of type t carry an amount: money in,
// money out and bank-initiated money.
func IsMoneyType(t cwv1.EventType) bool {
	switch t {
	case cwv1.EventType_EVENT_TYPE_DEPOSIT, cwv1.EventType_EVENT_TYPE_TRANSFER_IN, cwv1.EventType_EVENT_TYPE_SALARY,
		cwv1.EventType_EVENT_TYPE_WITHDRAWAL, cwv1.EventType_EVENT_TYPE_TRANSFER_OUT, cwv1.EventType_EVENT_TYPE_CARD_PAYMENT,
		cwv1.EventType_EVENT_TYPE_INTEREST, cwv1.EventType_EVENT_TYPE_FEE:
		return true
	}
	return false
}

// EventTypeName is the SPEC name of t ("TRANSFER_OUT").
func EventTypeName(t cwv1.EventType) string {
	for k, v := range eventTypes {
		if v == t {
			return k
		}
	}
	return t.String()
}

// DefaultEarliest is the earliest accepted occurredAt unless configured
// otherwise (CHURNWATCH_EARLIEST_EVENT, SPEC §2).
var DefaultEarliest = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// Checker holds the configurable bounds of validation. The zero value
// uses the defaults.
type Checker struct {
	// Earliest is the earliest accepted occurredAt (DefaultEarliest when
	// zero). Year 0 or 1900 is a core-banking placeholder, not an event
	// time; it cannot even be carried as a protobuf Timestamp.
	Earliest time.Time
}

func (c Checker) earliest() time.Time {
	if c.Earliest.IsZero() {
		return DefaultEarliest
	}
	return c.Earliest
}

// Event validates one incoming event with the default bounds; see
// Checker.Event.
func Event(in *cwv1.IncomingEvent, now time.Time) (*cwv1.AccountEvent, *Error) {
	return Checker{}.Event(in, now)
}

// Event validates one incoming event against SPEC §2 at wall time now and
// returns the event to publish (ingested_at is left for the publisher). The
// first problem found is returned, fields checked in the order of the SPEC.
func (c Checker) Event(in *cwv1.IncomingEvent, now time.Time) (*cwv1.AccountEvent, *Error) {
	// Invalid UTF-8 first, in any field: whatever else is wrong, the
	// caller's encoding is the problem to fix.
	for _, f := range [...]struct{ name, v string }{
		{"eventId", in.GetEventId()}, {"customerId", in.GetCustomerId()}, {"accountId", in.GetAccountId()},
		{"occurredAt", in.GetOccurredAt()}, {"type", in.GetType()}, {"amount", in.GetAmount()},
		{"currency", in.GetCurrency()}, {"counterpartyBank", in.GetCounterpartyBank()},
		{"balanceAfter", in.GetBalanceAfter()}, {"channel", in.GetChannel()}, {"sentiment", in.GetSentiment()},
	} {
		if err := validUTF8(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if err := eventID(in.GetEventId()); err != nil {
		return nil, err
	}
	if err := id("customerId", in.GetCustomerId(), true); err != nil {
		return nil, err
	}
	if err := id("accountId", in.GetAccountId(), true); err != nil {
		return nil, err
	}
	occurred, err := occurredAt(in.GetOccurredAt(), now, c.earliest())
	if err != nil {
		return nil, err
	}
	if in.GetType() == "" {
		return nil, fail("type", CodeMissingField, "missing")
	}
	typ, ok := eventTypes[in.GetType()]
	if !ok {
		return nil, fail("type", CodeUnknownType, "unknown type %s", quoteShort(in.GetType()))
	}
	out := &cwv1.AccountEvent{
		EventId:    in.GetEventId(),
		CustomerId: in.GetCustomerId(),
		AccountId:  in.GetAccountId(),
		OccurredAt: timestamppb.New(occurred),
		Type:       typ,
	}
	if err := amount(in, typ, out); err != nil {
		return nil, err
	}
	if b := in.GetCounterpartyBank(); b != "" {
		if err := text("counterpartyBank", b, MaxBankLen); err != nil {
			return nil, err
		}
		out.CounterpartyBank = b
	}
	if c := in.GetChannel(); c != "" {
		ch, ok := channels[c]
		if !ok {
			return nil, fail("channel", CodeUnknownChannel, "unknown channel %s, want BRANCH, MOBILE, ONLINE, ATM or PHONE", quoteShort(c))
		}
		out.Channel = ch
	}
	if s := in.GetSentiment(); s != "" {
		if typ != cwv1.EventType_EVENT_TYPE_COMPLAINT {
			return nil, fail("sentiment", CodeSentimentNotAllowed, "only allowed on COMPLAINT events")
		}
		v, err := sentiment(s)
		if err != nil {
			return nil, err
		}
		out.Sentiment = &v
	}
	return out, nil
}

func eventID(s string) *Error {
	if s == "" {
		return fail("eventId", CodeMissingField, "missing")
	}
	return text("eventId", s, MaxEventIDLen)
}

// validUTF8 refuses invalid UTF-8 and U+FFFD, which is what decoders
// leave of invalid bytes (protobuf strings, hence the Incoming* messages,
// cannot carry them raw).
func validUTF8(field, s string) *Error {
	if strings.ContainsRune(s, utf8.RuneError) {
		return fail(field, CodeBadUTF8, "not valid UTF-8 (invalid bytes or U+FFFD)")
	}
	return nil
}

// text checks a free identifier or name: bounded length, no control
// characters (they would corrupt logs, CSV output and terminal views) and
// no invisible format characters (bidi overrides and isolates, zero-width
// characters, line and paragraph separators), which would make two ids
// look alike or reorder what an RM reads.
func text(field, s string, max int) *Error {
	if n := utf8.RuneCountInString(s); n > max {
		return fail(field, CodeTooLong, "%d characters, at most %d", n, max)
	}
	i := 0
	for _, r := range s {
		i++
		if err := visible(field, r, i); err != nil {
			return err
		}
	}
	return nil
}

// visible refuses rune r at (1-based) character position pos unless it is
// a visible character.
func visible(field string, r rune, pos int) *Error {
	switch {
	case r == utf8.RuneError:
		return fail(field, CodeBadUTF8, "not valid UTF-8 (invalid bytes or U+FFFD)")
	case unicode.Is(unicode.Cc, r):
		return fail(field, CodeBadChars, "contains a control character (U+%04X at character %d)", r, pos)
	case Invisible(r):
		return fail(field, CodeInvisibleChar, "contains an invisible or bidi control character (U+%04X at character %d)", r, pos)
	}
	return nil
}

// Invisible reports whether r is an invisible format character: Unicode
// categories Cf (which holds the bidi marks U+200E/F, embeddings and
// overrides U+202A–E and isolates U+2066–9, zero-width characters, U+FEFF),
// Zl and Zp.
func Invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// id checks customer, account, manager and branch ids: ≤ 64 characters of
// [A-Za-z0-9._:-].
func id(field, s string, required bool) *Error {
	if s == "" {
		if required {
			return fail(field, CodeMissingField, "missing")
		}
		return nil
	}
	if len(s) > MaxIDLen {
		return fail(field, CodeTooLong, "%d characters, at most %d", utf8.RuneCountInString(s), MaxIDLen)
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) {
			pos := utf8.RuneCountInString(s[:i]) + 1
			if r, _ := utf8.DecodeRuneInString(s[i:]); r >= utf8.RuneSelf || r == utf8.RuneError {
				if err := visible(field, r, pos); err != nil {
					return err
				}
			}
			return fail(field, CodeBadChars, "character %d is not one of A-Z a-z 0-9 . _ : -", pos)
		}
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
}

// OccurredAt parses an RFC 3339 time with zone; exported for churnctl's
// sorting, which must order exactly what the service will accept.
func OccurredAt(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

func occurredAt(s string, now, earliest time.Time) (time.Time, *Error) {
	if s == "" {
		return time.Time{}, fail("occurredAt", CodeMissingField, "missing")
	}
	t, ok := OccurredAt(s)
	if !ok {
		return time.Time{}, fail("occurredAt", CodeBadTime, "%s is not an RFC 3339 time with zone, e.g. 2025-03-01T09:30:00Z", quoteShort(s))
	}
	if t.After(now.Add(MaxFutureSkew)) {
		return time.Time{}, fail("occurredAt", CodeFutureTime, "more than 5 minutes in the future")
	}
	if t.Before(earliest) {
		return time.Time{}, fail("occurredAt", CodeTooEarly, "before %s, the earliest accepted event time (CHURNWATCH_EARLIEST_EVENT)", earliest.UTC().Format(time.RFC3339))
	}
	return t, nil
}

func amount(in *cwv1.IncomingEvent, typ cwv1.EventType, out *cwv1.AccountEvent) *Error {
	amt, cur, bal := in.GetAmount(), in.GetCurrency(), in.GetBalanceAfter()
	name := in.GetType()
	if !IsMoneyType(typ) {
		if amt != "" {
			return fail("amount", CodeAmountNotAllowed, "not allowed on %s events", name)
		}
		if cur != "" {
			return fail("currency", CodeCurrencyWithoutAmount, "given without amount")
		}
		if bal != "" {
			return fail("balanceAfter", CodeCurrencyWithoutAmount, "needs a currency, which only money events carry")
		}
		return nil
	}
	if amt == "" {
		return fail("amount", CodeMissingField, "missing (required for %s)", name)
	}
	if cur == "" {
		return fail("currency", CodeMissingField, "missing (required with amount)")
	}
	if !money.KnownCurrency(cur) {
		return fail("currency", CodeUnknownCurrency, "unknown ISO 4217 currency %s", quoteShort(cur))
	}
	v, err := minor("amount", amt, cur)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fail("amount", CodeNonPositiveAmount, "must be greater than 0")
	}
	out.AmountMinor, out.Currency = v, cur
	if bal != "" {
		b, err := minor("balanceAfter", bal, cur)
		if err != nil {
			return err
		}
		out.BalanceAfterMinor = &b
	}
	return nil
}

func minor(field, s, cur string) (int64, *Error) {
	// "+10.00" is not how a bank writes an amount; a sign that money
	// parsing would quietly drop is refused. ("-" stays: a balance may be
	// overdrawn, and a negative amount is refused as not positive.)
	if strings.HasPrefix(strings.TrimSpace(s), "+") {
		return 0, fail(field, CodeSignedAmount, "has a + sign: write an unsigned decimal such as 10.00")
	}
	v, err := money.ParseMinor(s, cur)
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, money.ErrTooManyDecimals):
		exp, _ := money.Exponent(cur)
		return 0, fail(field, CodeTooManyDecimals, "more than %d decimals, the most %s allows", exp, cur)
	case errors.Is(err, money.ErrOutOfRange):
		return 0, fail(field, CodeOutOfRange, "too large")
	default:
		return 0, fail(field, CodeBadDecimal, "not a decimal number such as 1250.00")
	}
}

func sentiment(s string) (float64, *Error) {
	// Plain decimals only: ParseFloat alone would take "0x1p-1", "Inf" or "1e0".
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '.' || (i == 0 && (c == '-' || c == '+'))) {
			return 0, fail("sentiment", CodeBadDecimal, "not a decimal number between -1.0 and 1.0")
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fail("sentiment", CodeBadDecimal, "not a decimal number between -1.0 and 1.0")
	}
	if v < MinSentiment || v > MaxSentimentVal {
		return 0, fail("sentiment", CodeBadSentiment, "out of range -1.0 … 1.0")
	}
	return v, nil
}

// quoteShort quotes a caller's value for a message, cut short so that a
// huge field does not bloat the answer.
func quoteShort(s string) string {
	const max = 32
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		return strconv.Quote(string(r[:max]) + "…")
	}
	return strconv.Quote(s)
}

// Customer validates one incoming customer profile (SPEC §2).
func Customer(in *cwv1.IncomingCustomer, now time.Time) (*cwv1.CustomerProfile, *Error) {
	for _, f := range [...]struct{ name, v string }{
		{"customerId", in.GetCustomerId()}, {"tier", in.GetTier()}, {"managerId", in.GetManagerId()},
		{"branchId", in.GetBranchId()}, {"displayName", in.GetDisplayName()},
	} {
		if err := validUTF8(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if err := id("customerId", in.GetCustomerId(), true); err != nil {
		return nil, err
	}
	if in.GetTier() == "" {
		return nil, fail("tier", CodeMissingField, "missing")
	}
	tier, ok := tiers[in.GetTier()]
	if !ok {
		return nil, fail("tier", CodeUnknownTier, "unknown tier %s, want HIGH_NET_WORTH, POTENTIAL, MASS or BASIC", quoteShort(in.GetTier()))
	}
	if err := id("managerId", in.GetManagerId(), false); err != nil {
		return nil, err
	}
	if err := id("branchId", in.GetBranchId(), false); err != nil {
		return nil, err
	}
	if err := text("displayName", in.GetDisplayName(), MaxDisplayName); err != nil {
		return nil, err
	}
	if err := email("managerEmail", in.GetManagerEmail()); err != nil {
		return nil, err
	}
	return &cwv1.CustomerProfile{
		CustomerId:   in.GetCustomerId(),
		Tier:         tier,
		ManagerId:    in.GetManagerId(),
		BranchId:     in.GetBranchId(),
		DisplayName:  in.GetDisplayName(),
		ManagerEmail: in.GetManagerEmail(),
		UpdatedAt:    timestamppb.New(now),
	}, nil
}

// MaxEmail is the longest address SMTP carries (RFC 5321 path limit).
const MaxEmail = 254

// email checks an optional bare address (local@domain, no display name or
// comments): alert email goes to it as it stands.
func email(field, s string) *Error {
	if s == "" {
		return nil
	}
	if err := text(field, s, MaxEmail); err != nil {
		return err
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return fail(field, CodeBadEmail, "not an email address (want name@domain.example)")
	}
	return nil
}
