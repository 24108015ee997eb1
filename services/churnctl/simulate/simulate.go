// Package simulate owns the synthetic bank behind `churnctl simulate`, the
// demo and the back-tests: a deterministic population of customers with
// managers and branches, months of account events in the SPEC §2 formats,
// and the ground-truth churn labels to score alerts against.
//
// About 85 % of customers are stable: a monthly salary (or pension, or cash
// deposits), card spending with a weekly rhythm and seasons, ATM, savings
// sweeps and top-ups between own accounts, rent and savings at other banks,
// interest, fees and logins, plus the noise a rules engine must not mistake
// for churn: holidays, irregular months, a late salary, a big purchase, an
// occasional larger transfer, a mild complaint. The rest churn along one of
// six archetypes, each with leading indicators before its churn date:
//
//   - gradual_decline: activity tapers over 2–4 months; churn date = last
//     customer-initiated activity, then only interest, fees and logins;
//   - sudden_drain: 3–6 weeks before the churn date every account sends most
//     of its balance to another bank, the rest goes on the churn date;
//   - salary_moved: activity tapers and the last salaries are forwarded to the
//     new bank; the churn date is the last salary, activity fades after it;
//   - complaint_then_leave: 1–3 complaints (one ≤ −0.6) 4–7 weeks before,
//     then the money leaves on the churn date;
//   - account_closure: a product cancelled 3–7 weeks before, money moved out,
//     every account emptied and closed on the churn date;
//   - churned_won_back: a gradual decline, 6–8 months dormant, then back.
//
// Every number is a field of Params. Generate holds a whole bank in memory;
// StreamEvents yields the same events a day at a time and Roster the same
// customers and labels, for callers that stream.
//
// The same Config gives byte-identical output. Every customer draws from its
// own PCG stream seeded from (Seed, customer index), so a customer's history
// does not depend on how many other customers are simulated; money is held
// in int64 minor units; no map order or clock is read; and floating-point
// values only steer random choices, wrapped so that no platform fuses them
// differently.
package simulate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Tier names (SPEC §2).
const (
	TierHighNetWorth = "HIGH_NET_WORTH"
	TierPotential    = "POTENTIAL"
	TierMass         = "MASS"
	TierBasic        = "BASIC"
)

// Archetype names in labels.
const (
	ArchetypeStable             = "stable"
	ArchetypeGradualDecline     = "gradual_decline"
	ArchetypeSuddenDrain        = "sudden_drain"
	ArchetypeSalaryMoved        = "salary_moved"
	ArchetypeComplaintThenLeave = "complaint_then_leave"
	ArchetypeAccountClosure     = "account_closure"
	ArchetypeChurnedWonBack     = "churned_won_back"
	// ArchetypeSilent churners leave with no warning sign at all: no rule
	// can see them coming, so recall is reported on the detectable
	// churners and on all of them.
	ArchetypeSilent = "silent"
)

// Event types (SPEC §2).
const (
	TypeDeposit          = "DEPOSIT"
	TypeTransferIn       = "TRANSFER_IN"
	TypeSalary           = "SALARY"
	TypeWithdrawal       = "WITHDRAWAL"
	TypeTransferOut      = "TRANSFER_OUT"
	TypeCardPayment      = "CARD_PAYMENT"
	TypeInterest         = "INTEREST"
	TypeFee              = "FEE"
	TypeLogin            = "LOGIN"
	TypeAccountOpened    = "ACCOUNT_OPENED"
	TypeAccountClosed    = "ACCOUNT_CLOSED"
	TypeProductCancelled = "PRODUCT_CANCELLED"
	TypeComplaint        = "COMPLAINT"
)

// Errors returned by Generate, StreamEvents and Roster.
var (
	ErrInvalidConfig = errors.New("invalid simulation config")
)

// Config selects the bank to simulate.
type Config struct {
	Customers int
	Months    int
	Seed      int64
	// Start is the first simulated day (its UTC date is used); zero means
	// 2025-01-01.
	Start time.Time
	// HomeBank is the counterpartyBank of internal transfers; "" = "HOME".
	HomeBank string
	// Currency is the ISO 4217 code of every amount; "" = "EUR".
	Currency string
	// Params overrides DefaultParams when not nil.
	Params *Params
}

// Customer is one line of customers.ndjson (SPEC §2).
type Customer struct {
	CustomerID  string `json:"customerId"`
	Tier        string `json:"tier"`
	ManagerID   string `json:"managerId"`
	BranchID    string `json:"branchId"`
	DisplayName string `json:"displayName"`
}

// Event is one line of events.ndjson (SPEC §2). Amounts and balances are
// decimal strings rendered from int64 minor units.
type Event struct {
	EventID          string   `json:"eventId"`
	CustomerID       string   `json:"customerId"`
	AccountID        string   `json:"accountId"`
	OccurredAt       string   `json:"occurredAt"`
	Type             string   `json:"type"`
	Amount           string   `json:"amount,omitempty"`
	Currency         string   `json:"currency,omitempty"`
	CounterpartyBank string   `json:"counterpartyBank,omitempty"`
	BalanceAfter     string   `json:"balanceAfter,omitempty"`
	Channel          string   `json:"channel,omitempty"`
	Sentiment        *float64 `json:"sentiment,omitempty"`
}

// Label is one line of labels.ndjson: the ground truth for a customer.
type Label struct {
	CustomerID string `json:"customerId"`
	Archetype  string `json:"archetype"`
	Churned    bool   `json:"churned"`
	// ChurnDate is YYYY-MM-DD, empty for stable customers.
	ChurnDate string `json:"churnDate,omitempty"`
}

// Bank is a whole simulated bank.
type Bank struct {
	Customers []Customer
	// Events are sorted by OccurredAt, ties by EventID.
	Events []Event
	Labels []Label
}

// Generate simulates the bank described by cfg and holds it in memory.
func Generate(cfg Config) (*Bank, error) {
	s, err := newBank(cfg)
	if err != nil {
		return nil, err
	}
	// One allocation sized from the customers' expected activity; each
	// day is rendered straight into it.
	b := &Bank{Customers: s.customerRecords(), Labels: s.labels()}
	b.Events = make([]Event, 0, s.estimatedEvents())
	err = s.simulate(func(day []rawEvent) error {
		n := len(b.Events)
		b.Events = slices.Grow(b.Events, len(day))[:n+len(day)]
		s.render(day, b.Events[n:])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// StreamEvents simulates the events of cfg and hands them to fn in order
// (OccurredAt, then EventID) one simulated day at a time, holding only the
// per-customer state and one day of events. It stops at the first error fn
// returns and returns it. The customers and labels of the same bank come
// from Roster.
func StreamEvents(cfg Config, fn func(Event) error) error {
	s, err := newBank(cfg)
	if err != nil {
		return err
	}
	var events []Event
	return s.simulate(func(day []rawEvent) error {
		events = slices.Grow(events[:0], len(day))[:len(day)]
		s.render(day, events)
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Roster returns the customers and labels of the bank cfg describes, without
// simulating its events.
func Roster(cfg Config) ([]Customer, []Label, error) {
	s, err := newBank(cfg)
	if err != nil {
		return nil, nil, err
	}
	return s.customerRecords(), s.labels(), nil
}

// withDefaults fills the zero fields of cfg.
func (cfg Config) withDefaults() Config {
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	y, m, d := cfg.Start.UTC().Date()
	cfg.Start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if cfg.HomeBank == "" {
		cfg.HomeBank = "HOME"
	}
	if cfg.Currency == "" {
		cfg.Currency = "EUR"
	}
	return cfg
}

// maxCustomers keeps customer indexes within the sort key.
const maxCustomers = 1 << keyCustBits

// maxMonths bounds the timeline so that per-customer sequence numbers keep
// their fixed width (and event ids their sort order).
const maxMonths = 1200

func (cfg Config) validate() error {
	var problems []string
	if cfg.Customers < 1 || cfg.Customers > maxCustomers {
		problems = append(problems, fmt.Sprintf("customers %d not in 1…%d", cfg.Customers, maxCustomers))
	}
	if cfg.Months < 1 || cfg.Months > maxMonths {
		problems = append(problems, fmt.Sprintf("months %d not in 1…%d", cfg.Months, maxMonths))
	}
	if !isCurrencyCode(cfg.Currency) {
		problems = append(problems, fmt.Sprintf("currency %q is not an ISO 4217 code", cfg.Currency))
	}
	if len(cfg.HomeBank) > 64 || strings.ContainsFunc(cfg.HomeBank, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' }) {
		problems = append(problems, fmt.Sprintf("home bank %q: want ≤ 64 printable ASCII characters", cfg.HomeBank))
	}
	if slices.Contains(otherBanks[:], cfg.HomeBank) {
		problems = append(problems, fmt.Sprintf("home bank %q is one of the simulated other banks", cfg.HomeBank))
	}
	if cfg.Start.Year() < 1900 || cfg.Start.Year() > 9000 {
		problems = append(problems, fmt.Sprintf("start %s out of range", cfg.Start.Format(time.DateOnly)))
	}
	if cfg.Params != nil {
		if err := cfg.Params.validate(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(problems, "; "))
	}
	return nil
}

func (p *Params) validate() error {
	var problems []string
	positive := func(name string, weights []float64) {
		sum := 0.0
		for _, w := range weights {
			if w < 0 {
				problems = append(problems, name+" has a negative weight")
				return
			}
			sum += w
		}
		if sum <= 0 {
			problems = append(problems, name+" sums to zero")
		}
	}
	positive("tier mix", p.TierMix[:])
	positive("archetype mix", p.Churn.Mix[:])
	if p.Churn.SilentShare < 0 || p.Churn.SilentShare > 1 {
		problems = append(problems, "silent churner share must be within 0 … 1")
	}
	if p.CustomersPerManager < 1 || p.ManagersPerBranch < 1 {
		problems = append(problems, "customers per manager and managers per branch must be ≥ 1")
	}
	for i, t := range p.Tiers {
		if t.IncomeMinCents <= 0 || t.IncomeMaxCents < t.IncomeMinCents {
			problems = append(problems, fmt.Sprintf("tier %s income range", tierNames[i]))
		}
		if t.SavingsMonthsMin < 0 || t.SavingsMonthsMax < t.SavingsMonthsMin {
			problems = append(problems, fmt.Sprintf("tier %s savings range", tierNames[i]))
		}
	}
	ranges := []struct {
		name   string
		lo, hi int
	}{
		{"holiday days", p.Noise.HolidayMinDays, p.Noise.HolidayMaxDays},
		{"long absence days", p.Noise.LongAbsenceMinDays, p.Noise.LongAbsenceMaxDays},
		{"late salary days", p.Noise.LateSalaryMinDays, p.Noise.LateSalaryMaxDays},
		{"gradual taper days", p.Churn.GradualTaperMinDays, p.Churn.GradualTaperMaxDays},
		{"drain lead days", p.Churn.DrainLeadMinDays, p.Churn.DrainLeadMaxDays},
		{"salary moved taper days", p.Churn.SalaryMovedTaperMinDays, p.Churn.SalaryMovedTaperMaxDays},
		{"salary moved fade days", p.Churn.SalaryMovedFadeMinDays, p.Churn.SalaryMovedFadeMaxDays},
		{"complaint lead days", p.Churn.ComplaintLeadMinDays, p.Churn.ComplaintLeadMaxDays},
		{"closure cancel lead days", p.Churn.ClosureCancelLeadMinDays, p.Churn.ClosureCancelLeadMaxDays},
		{"won-back taper days", p.Churn.WonBackTaperMinDays, p.Churn.WonBackTaperMaxDays},
		{"won-back dormant days", p.Churn.WonBackDormantMinDays, p.Churn.WonBackDormantMaxDays},
	}
	for _, r := range ranges {
		if r.lo < 1 || r.hi < r.lo {
			problems = append(problems, fmt.Sprintf("%s %d…%d", r.name, r.lo, r.hi))
		}
	}
	fractions := []struct {
		name   string
		v      float64
		lo, hi float64
	}{
		{"unassigned rate", p.UnassignedRate, 0, 1},
		{"salary rate", p.SalaryRate, 0, 1},
		{"churn rate", p.Churn.Rate, 0, 1},
		{"earliest fraction", p.Churn.EarliestFraction, 0, 1},
		{"weekly noise", p.WeeklyNoise, 0, 0.99},
		{"activity min", p.ActivityMin, 0.01, p.ActivityMax},
		{"spend min", p.SpendMin, 0, p.SpendMax},
		{"external share cap", p.Noise.ExternalShareCap, 0.01, 1},
		{"external tier cap", p.Noise.ExternalTierCap, 0, 1},
	}
	for _, f := range fractions {
		if !(f.v >= f.lo && f.v <= f.hi) {
			problems = append(problems, fmt.Sprintf("%s %v not in %v…%v", f.name, f.v, f.lo, f.hi))
		}
	}
	if p.SalaryDayJitter < 0 || p.SalaryDayJitter > 10 || p.Churn.TaperExponent < 0 || p.Churn.TaperExponent > 10 ||
		p.Churn.WonBackRampDays < 1 || p.Churn.MinDaysAfter < 0 || p.Noise.QuietStartDays < 0 || p.Churn.SalaryMovedForwards < 0 {
		problems = append(problems, "salary jitter, taper exponent, won-back ramp, days after churn, quiet start or forwards out of range")
	}
	if p.Churn.ComplaintMax < 1 {
		problems = append(problems, "complaint max must be ≥ 1")
	}
	if p.Churn.StrongSentimentMin < -1 || p.Churn.StrongSentimentMax > 1 ||
		p.Churn.OtherSentimentMin < -1 || p.Churn.OtherSentimentMax > 1 ||
		p.Noise.MildSentimentMin < -1 || p.Noise.MildSentimentMax > 1 {
		problems = append(problems, "sentiments must lie in −1…1")
	}
	if len(problems) > 0 {
		return fmt.Errorf("params: %s", strings.Join(problems, "; "))
	}
	return nil
}
