package validate_test

import (
	"strings"
	"testing"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ev(mut func(*cwv1.IncomingEvent)) *cwv1.IncomingEvent {
	e := &cwv1.IncomingEvent{EventId: "t-1", CustomerId: "C1001", AccountId: "A1001-01", OccurredAt: "2025-03-01T09:30:00Z",
		Type: "WITHDRAWAL", Amount: "50.00", Currency: "EUR"}
	mut(e)
	return e
}

func TestEventAccepts(t *testing.T) {
	for name, mut := range map[string]func(*cwv1.IncomingEvent){
		"plain":              func(*cwv1.IncomingEvent) {},
		"JPY integer":        func(e *cwv1.IncomingEvent) { e.Currency, e.Amount = "JPY", "5000" },
		"BHD 3 decimals":     func(e *cwv1.IncomingEvent) { e.Currency, e.Amount = "BHD", "1.125" },
		"overdrawn balance":  func(e *cwv1.IncomingEvent) { e.BalanceAfter = "-120.50" },
		"4 minutes ahead":    func(e *cwv1.IncomingEvent) { e.OccurredAt = now.Add(4 * time.Minute).Format(time.RFC3339Nano) },
		"offset zone":        func(e *cwv1.IncomingEvent) { e.OccurredAt = "2025-03-01T09:30:00.123+05:30" },
		"complaint -1":       func(e *cwv1.IncomingEvent) { e.Type, e.Amount, e.Currency, e.Sentiment = "COMPLAINT", "", "", "-1.0" },
		"complaint 1":        func(e *cwv1.IncomingEvent) { e.Type, e.Amount, e.Currency, e.Sentiment = "COMPLAINT", "", "", "1" },
		"id charset":         func(e *cwv1.IncomingEvent) { e.CustomerId = "a-Z_0.9:x" },
		"128 char event id":  func(e *cwv1.IncomingEvent) { e.EventId = strings.Repeat("é", 128) },
		"account closed":     func(e *cwv1.IncomingEvent) { e.Type, e.Amount, e.Currency = "ACCOUNT_CLOSED", "", "" },
		"fee with interbank": func(e *cwv1.IncomingEvent) { e.Type, e.CounterpartyBank = "FEE", "HOME" },
	} {
		out, err := validate.Event(ev(mut), now)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if out.OccurredAt == nil || out.EventId == "" {
			t.Errorf("%s: %v", name, out)
		}
	}
	out, _ := validate.Event(ev(func(e *cwv1.IncomingEvent) { e.Currency, e.Amount = "BHD", "1.125" }), now)
	if out.AmountMinor != 1125 {
		t.Fatalf("BHD minor units: %d", out.AmountMinor)
	}
}

func TestEventRejects(t *testing.T) {
	for _, c := range []struct {
		mut  func(*cwv1.IncomingEvent)
		code validate.Code
		msg  string
	}{
		{func(e *cwv1.IncomingEvent) { e.OccurredAt = now.Add(6 * time.Minute).Format(time.RFC3339) }, validate.CodeFutureTime, "occurredAt: more than 5 minutes in the future"},
		{func(e *cwv1.IncomingEvent) { e.EventId = "a\nb" }, validate.CodeBadChars, "eventId: contains a control"},
		{func(e *cwv1.IncomingEvent) { e.Amount = "1e3" }, validate.CodeBadDecimal, "amount: not a decimal number"},
		{func(e *cwv1.IncomingEvent) { e.Amount = "99999999999999999999" }, validate.CodeOutOfRange, "amount: too large"},
		{func(e *cwv1.IncomingEvent) { e.Type = "deposit" }, validate.CodeUnknownType, `type: unknown type "deposit"`},
		{func(e *cwv1.IncomingEvent) { e.Type = "" }, validate.CodeMissingField, "type: missing"},
		{func(e *cwv1.IncomingEvent) { e.OccurredAt = "" }, validate.CodeMissingField, "occurredAt: missing"},
		{func(e *cwv1.IncomingEvent) { e.CounterpartyBank = strings.Repeat("B", 65) }, validate.CodeTooLong, "counterpartyBank: 65 characters"},
		{func(e *cwv1.IncomingEvent) {
			e.Type, e.Amount, e.Currency, e.Sentiment = "COMPLAINT", "", "", "NaN"
		}, validate.CodeBadDecimal, "sentiment: not a decimal"},
		{func(e *cwv1.IncomingEvent) { e.Type, e.Amount, e.Currency, e.BalanceAfter = "LOGIN", "", "", "5.00" }, validate.CodeCurrencyWithoutAmount, "balanceAfter: needs a currency"},
	} {
		_, err := validate.Event(ev(c.mut), now)
		if err == nil || err.Code != c.code || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%v, want %s %q", err, c.code, c.msg)
		}
	}
}

func TestCustomer(t *testing.T) {
	p, err := validate.Customer(&cwv1.IncomingCustomer{CustomerId: "C1", Tier: "POTENTIAL", BranchId: "br-01"}, now)
	if err != nil || p.Tier != cwv1.Tier_TIER_POTENTIAL || p.ManagerId != "" || !p.UpdatedAt.AsTime().Equal(now) {
		t.Fatalf("%v %v", p, err)
	}
	for in, want := range map[*cwv1.IncomingCustomer]string{
		{CustomerId: "C1"}:                                                "tier: missing",
		{CustomerId: "C1", Tier: "mass"}:                                  `tier: unknown tier "mass"`,
		{CustomerId: "C1", Tier: "MASS", BranchId: "br/01"}:               "branchId: character 3",
		{CustomerId: "C1", Tier: "MASS", DisplayName: "a\x00"}:            "displayName: contains a control",
		{CustomerId: strings.Repeat("C", 65), Tier: "MASS"}:               "customerId: 65 characters",
		{CustomerId: "C1", Tier: "MASS", ManagerId: "rm 1", BranchId: ""}: "managerId: character 3",
		{CustomerId: "C1", Tier: "MASS", ManagerEmail: "rm-001"}:          "managerEmail: not an email address",
		{CustomerId: "C1", Tier: "MASS", ManagerEmail: "A <a@b.example>"}: "managerEmail: not an email address",
		{CustomerId: "C1", Tier: "MASS", ManagerEmail: "a@localhost"}:     "managerEmail: not an email address",
		{CustomerId: "C1", Tier: "MASS", ManagerEmail: "a@b.example\n"}:   "managerEmail: contains a control",
	} {
		if _, err := validate.Customer(in, now); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: %v, want %q", in, err, want)
		}
	}
}

func TestCustomerManagerEmail(t *testing.T) {
	p, err := validate.Customer(&cwv1.IncomingCustomer{CustomerId: "C1", Tier: "MASS", ManagerEmail: "wang.l@bank.example"}, now)
	if err != nil || p.GetManagerEmail() != "wang.l@bank.example" {
		t.Fatalf("%v %v", p, err)
	}
}

func BenchmarkEvent(b *testing.B) {
	in := ev(func(e *cwv1.IncomingEvent) {
		e.BalanceAfter, e.Channel, e.CounterpartyBank = "300.00", "MOBILE", "OTHERBANK"
	})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := validate.Event(in, now); err != nil {
			b.Fatal(err)
		}
	}
}

// Issue 14: signs, invisible characters, invalid UTF-8 and placeholder
// dates are refused, each naming the field.
func TestEventRejectsHostileInput(t *testing.T) {
	for name, c := range map[string]struct {
		mut  func(*cwv1.IncomingEvent)
		code validate.Code
		msg  string
	}{
		"+amount":            {func(e *cwv1.IncomingEvent) { e.Amount = "+10.00" }, validate.CodeSignedAmount, "amount: has a + sign"},
		"+balance":           {func(e *cwv1.IncomingEvent) { e.BalanceAfter = "+300.00" }, validate.CodeSignedAmount, "balanceAfter: has a + sign"},
		"RLO in eventId":     {func(e *cwv1.IncomingEvent) { e.EventId = "t-1\u202e9" }, validate.CodeInvisibleChar, "eventId: contains an invisible or bidi control character (U+202E at character 4)"},
		"LRM in eventId":     {func(e *cwv1.IncomingEvent) { e.EventId = "\u200et-1" }, validate.CodeInvisibleChar, "eventId: contains an invisible"},
		"isolate eventId":    {func(e *cwv1.IncomingEvent) { e.EventId = "t\u2066-1\u2069" }, validate.CodeInvisibleChar, "eventId: contains an invisible"},
		"zero width space":   {func(e *cwv1.IncomingEvent) { e.EventId = "t-\u200b1" }, validate.CodeInvisibleChar, "eventId: contains an invisible"},
		"BOM in eventId":     {func(e *cwv1.IncomingEvent) { e.EventId = "\ufefft-1" }, validate.CodeInvisibleChar, "eventId: contains an invisible"},
		"line separator":     {func(e *cwv1.IncomingEvent) { e.EventId = "t-1\u2028" }, validate.CodeInvisibleChar, "eventId: contains an invisible"},
		"para separator":     {func(e *cwv1.IncomingEvent) { e.CounterpartyBank = "OTHER\u2029BANK" }, validate.CodeInvisibleChar, "counterpartyBank: contains an invisible"},
		"C1 control":         {func(e *cwv1.IncomingEvent) { e.EventId = "t-\u00851" }, validate.CodeBadChars, "eventId: contains a control character (U+0085"},
		"RLO in customerId":  {func(e *cwv1.IncomingEvent) { e.CustomerId = "C1\u202e0" }, validate.CodeInvisibleChar, "customerId: contains an invisible or bidi control character (U+202E at character 3)"},
		"LRE in accountId":   {func(e *cwv1.IncomingEvent) { e.AccountId = "\u202aA1" }, validate.CodeInvisibleChar, "accountId: contains an invisible"},
		"invalid UTF-8":      {func(e *cwv1.IncomingEvent) { e.CustomerId = "C\xff1" }, validate.CodeBadUTF8, "customerId: not valid UTF-8"},
		"U+FFFD in type":     {func(e *cwv1.IncomingEvent) { e.Type = "DEPOSIT\ufffd" }, validate.CodeBadUTF8, "type: not valid UTF-8"},
		"invalid in channel": {func(e *cwv1.IncomingEvent) { e.Channel = "\xc3" }, validate.CodeBadUTF8, "channel: not valid UTF-8"},
		"year 0":             {func(e *cwv1.IncomingEvent) { e.OccurredAt = "0000-01-01T00:00:00Z" }, validate.CodeTooEarly, "occurredAt: before 1970-01-01T00:00:00Z"},
		"year 1900":          {func(e *cwv1.IncomingEvent) { e.OccurredAt = "1900-01-01T00:00:00Z" }, validate.CodeTooEarly, "occurredAt: before 1970-01-01T00:00:00Z, the earliest"},
		"1 ns before 1970":   {func(e *cwv1.IncomingEvent) { e.OccurredAt = "1969-12-31T23:59:59.999999999Z" }, validate.CodeTooEarly, "occurredAt: before"},
	} {
		_, err := validate.Event(ev(c.mut), now)
		if err == nil || err.Code != c.code || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %s %q", name, err, c.code, c.msg)
		}
	}
	// Still fine: letters of any script, a negative balance, the epoch.
	for name, mut := range map[string]func(*cwv1.IncomingEvent){
		"accented id":      func(e *cwv1.IncomingEvent) { e.EventId = "é-ü-漢字" },
		"overdrawn":        func(e *cwv1.IncomingEvent) { e.BalanceAfter = "-5.00" },
		"epoch":            func(e *cwv1.IncomingEvent) { e.OccurredAt = "1970-01-01T00:00:00Z" },
		"epoch in +01:00":  func(e *cwv1.IncomingEvent) { e.OccurredAt = "1970-01-01T01:00:00+01:00" },
		"bank with spaces": func(e *cwv1.IncomingEvent) { e.CounterpartyBank = "Other Bank AG" },
	} {
		if _, err := validate.Event(ev(mut), now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCheckerEarliest(t *testing.T) {
	c := validate.Checker{Earliest: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := c.Event(ev(func(e *cwv1.IncomingEvent) { e.OccurredAt = "1999-12-31T23:59:59Z" }), now); err == nil ||
		err.Code != validate.CodeTooEarly || !strings.Contains(err.Error(), "before 2000-01-01T00:00:00Z") {
		t.Fatalf("1999 with earliest 2000: %v", err)
	}
	if _, err := c.Event(ev(func(e *cwv1.IncomingEvent) { e.OccurredAt = "2000-01-01T00:00:00Z" }), now); err != nil {
		t.Fatalf("2000 with earliest 2000: %v", err)
	}
}

func TestCustomerRejectsHostileInput(t *testing.T) {
	for in, want := range map[*cwv1.IncomingCustomer]struct {
		code validate.Code
		msg  string
	}{
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang \u202eL."}:  {validate.CodeInvisibleChar, "displayName: contains an invisible or bidi control character (U+202E at character 6)"},
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang\u200dL."}:   {validate.CodeInvisibleChar, "displayName: contains an invisible"},
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang\u2028L."}:   {validate.CodeInvisibleChar, "displayName: contains an invisible"},
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang\x7fL."}:     {validate.CodeBadChars, "displayName: contains a control character (U+007F"},
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang \xffL."}:    {validate.CodeBadUTF8, "displayName: not valid UTF-8"},
		{CustomerId: "C1", Tier: "MASS", ManagerId: "rm-\u2067001"}:     {validate.CodeInvisibleChar, "managerId: contains an invisible or bidi control character (U+2067 at character 4)"},
		{CustomerId: "C1", Tier: "MASS", BranchId: "br-01\u200f"}:       {validate.CodeInvisibleChar, "branchId: contains an invisible"},
		{CustomerId: "\u202dC1", Tier: "MASS"}:                          {validate.CodeInvisibleChar, "customerId: contains an invisible"},
		{CustomerId: "C1", Tier: "MASS\xfe"}:                            {validate.CodeBadUTF8, "tier: not valid UTF-8"},
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang\ufffd L."}:  {validate.CodeBadUTF8, "displayName: not valid UTF-8"},
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang\u00adL."}:   {validate.CodeInvisibleChar, "displayName: contains an invisible"},
		{CustomerId: "C1", Tier: "MASS", DisplayName: "Wang\U000e0041"}: {validate.CodeInvisibleChar, "displayName: contains an invisible"},
	} {
		if _, err := validate.Customer(in, now); err == nil || err.Code != want.code || !strings.HasPrefix(err.Error(), want.msg) {
			t.Errorf("%q: %v, want %s %q", in.String(), err, want.code, want.msg)
		}
	}
	if _, err := validate.Customer(&cwv1.IncomingCustomer{CustomerId: "C1", Tier: "MASS", DisplayName: "Zoë Çelik-Øst 王"}, now); err != nil {
		t.Fatal(err)
	}
}
