package simulate

import (
	"fmt"
	"strings"
	"time"
)

// A validator for SPEC §2 account events, written from the contract and
// independent of the generator.

var (
	moneyIn     = map[string]bool{TypeDeposit: true, TypeTransferIn: true, TypeSalary: true, TypeInterest: true}
	moneyOut    = map[string]bool{TypeWithdrawal: true, TypeTransferOut: true, TypeCardPayment: true, TypeFee: true}
	nonMoney    = map[string]bool{TypeLogin: true, TypeAccountOpened: true, TypeAccountClosed: true, TypeProductCancelled: true, TypeComplaint: true}
	channels    = map[string]bool{"": true, "BRANCH": true, "MOBILE": true, "ONLINE": true, "ATM": true, "PHONE": true}
	customerIni = map[string]bool{TypeDeposit: true, TypeWithdrawal: true, TypeTransferIn: true, TypeTransferOut: true, TypeCardPayment: true, TypeSalary: true}
)

// validID reports whether s is 1…64 characters of [A-Za-z0-9._:-].
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func isMoney(typ string) bool { return moneyIn[typ] || moneyOut[typ] }

// parseDecimal parses a non-negative decimal with at most exp decimals into
// minor units.
func parseDecimal(s string, exp int) (int64, error) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && (frac == "" || exp == 0)) || len(frac) > exp {
		return 0, fmt.Errorf("bad decimal %q for %d decimals", s, exp)
	}
	var v int64
	for _, ch := range intPart + frac + strings.Repeat("0", exp-len(frac)) {
		if ch < '0' || ch > '9' {
			return 0, fmt.Errorf("bad decimal %q", s)
		}
		v = v*10 + int64(ch-'0')
	}
	return v, nil
}

// validateEvent checks one event against SPEC §2 for a timeline [start, end).
func validateEvent(e Event, currency string, exp int, start, end time.Time) error {
	if !validID(e.EventID) {
		return fmt.Errorf("eventId %q", e.EventID)
	}
	if !validID(e.CustomerID) || !validID(e.AccountID) {
		return fmt.Errorf("customerId %q / accountId %q", e.CustomerID, e.AccountID)
	}
	t, err := time.Parse(time.RFC3339, e.OccurredAt)
	if err != nil || !strings.HasSuffix(e.OccurredAt, "Z") {
		return fmt.Errorf("occurredAt %q: %v", e.OccurredAt, err)
	}
	if t.Before(start) || !t.Before(end) {
		return fmt.Errorf("occurredAt %s outside the timeline", e.OccurredAt)
	}
	if !channels[e.Channel] {
		return fmt.Errorf("channel %q", e.Channel)
	}
	switch {
	case isMoney(e.Type):
		amount, err := parseDecimal(e.Amount, exp)
		if err != nil || amount <= 0 {
			return fmt.Errorf("amount %q: %v", e.Amount, err)
		}
		if e.Currency != currency {
			return fmt.Errorf("currency %q", e.Currency)
		}
		if e.BalanceAfter == "" {
			return fmt.Errorf("money event without balanceAfter")
		}
		if _, err := parseDecimal(e.BalanceAfter, exp); err != nil {
			return fmt.Errorf("balanceAfter: %v", err)
		}
	case nonMoney[e.Type]:
		if e.Amount != "" || e.Currency != "" || e.BalanceAfter != "" || e.CounterpartyBank != "" {
			return fmt.Errorf("%s carries money fields", e.Type)
		}
	default:
		return fmt.Errorf("type %q", e.Type)
	}
	if e.Sentiment != nil {
		if e.Type != TypeComplaint || *e.Sentiment < -1 || *e.Sentiment > 1 {
			return fmt.Errorf("sentiment %v on %s", *e.Sentiment, e.Type)
		}
	}
	return nil
}
