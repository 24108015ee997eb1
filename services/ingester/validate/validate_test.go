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
