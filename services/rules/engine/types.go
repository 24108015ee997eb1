package engine

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors of the engine. Callers wrap them; the transport edge maps
// them to status codes.
var (
	ErrUnknownEventType = errors.New("unknown event type")
	ErrUnknownTier      = errors.New("unknown tier")
	ErrUnknownKey       = errors.New("unknown threshold key")
	ErrBadValue         = errors.New("bad threshold value")
	ErrOutOfRange       = errors.New("threshold out of range")
	ErrCorruptState     = errors.New("corrupt customer state")
	ErrDuplicate        = errors.New("duplicate event")
	ErrTooLate          = errors.New("event later than the allowed lateness")
)

// EventType is the kind of an account event (SPEC §2).
type EventType int

// Event types. The zero value is not a valid type.
const (
	EventUnknown EventType = iota
	EventDeposit
	EventTransferIn
	EventSalary
	EventWithdrawal
	EventTransferOut
	EventCardPayment
	EventInterest
	EventFee
	EventLogin
	EventAccountOpened
	EventAccountClosed
	EventProductCancelled
	EventComplaint
	numEventTypes
)

var eventTypeNames = [numEventTypes]string{
	"UNKNOWN", "DEPOSIT", "TRANSFER_IN", "SALARY", "WITHDRAWAL", "TRANSFER_OUT",
	"CARD_PAYMENT", "INTEREST", "FEE", "LOGIN", "ACCOUNT_OPENED", "ACCOUNT_CLOSED",
	"PRODUCT_CANCELLED", "COMPLAINT",
}

// String returns the SPEC name, e.g. "TRANSFER_OUT".
func (t EventType) String() string {
	if t < 0 || t >= numEventTypes {
		return fmt.Sprintf("EventType(%d)", int(t))
	}
	return eventTypeNames[t]
}

// ParseEventType parses a SPEC event type name such as "TRANSFER_OUT".
func ParseEventType(s string) (EventType, error) {
	for i := EventDeposit; i < numEventTypes; i++ {
		if eventTypeNames[i] == s {
			return i, nil
		}
	}
	return EventUnknown, fmt.Errorf("%w %q", ErrUnknownEventType, s)
}

// CustomerInitiated reports whether the type is customer-initiated activity,
// the only kind that resets the dormancy clock.
func (t EventType) CustomerInitiated() bool {
	switch t {
	case EventDeposit, EventWithdrawal, EventTransferIn, EventTransferOut, EventCardPayment, EventSalary:
		return true
	}
	return false
}

// Money reports whether events of this type carry an amount and currency.
func (t EventType) Money() bool {
	return t.CustomerInitiated() || t == EventInterest || t == EventFee
}

// Tier is the customer segment; thresholds are set per tier.
type Tier int

// Tiers, usable as an index into Thresholds.Tiers.
const (
	TierHNW Tier = iota
	TierPotential
	TierMass
	TierBasic
	numTiers
)

var tierNames = [numTiers]string{"HIGH_NET_WORTH", "POTENTIAL", "MASS", "BASIC"}

// String returns the SPEC name, e.g. "HIGH_NET_WORTH".
func (t Tier) String() string {
	if t < 0 || t >= numTiers {
		return fmt.Sprintf("Tier(%d)", int(t))
	}
	return tierNames[t]
}

// ParseTier parses HIGH_NET_WORTH (or HNW), POTENTIAL, MASS or BASIC, case
// insensitively. Anything else returns TierMass together with an error, so a
// caller that ignores the error scores the customer as MASS.
func ParseTier(s string) (Tier, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "HIGH_NET_WORTH", "HNW":
		return TierHNW, nil
	case "POTENTIAL":
		return TierPotential, nil
	case "MASS":
		return TierMass, nil
	case "BASIC":
		return TierBasic, nil
	}
	return TierMass, fmt.Errorf("%w %q", ErrUnknownTier, s)
}

// Event is one account event as the engine sees it: validated, with money in
// integer minor units of Currency.
type Event struct {
	ID, CustomerID, AccountID string
	Time                      time.Time // occurredAt, event time
	Type                      EventType
	Amount                    int64 // minor units, > 0 for money types
	Currency                  string
	CounterpartyBank          string
	BalanceAfter              int64
	HasBalance                bool
	Sentiment                 float64
	HasSentiment              bool
}

// Profile is what the engine needs to know about the customer.
type Profile struct {
	Tier  Tier
	Known bool // false: no customer record yet; scored as MASS and flagged
}

// Stage is the customer's lifecycle stage.
type Stage int

// Stages (SPEC §4).
const (
	StageActive Stage = iota
	StageDeclining
	StageChurned
	StageWonBack
	numStages
)

var stageNames = [numStages]string{"ACTIVE", "DECLINING", "CHURNED", "WON_BACK"}

func (s Stage) String() string {
	if s < 0 || s >= numStages {
		return fmt.Sprintf("Stage(%d)", int(s))
	}
	return stageNames[s]
}

// Severity is the band of a risk score.
type Severity int

// Severities (SPEC §4).
const (
	SeverityLow Severity = iota
	SeverityMedium
	SeverityHigh
	SeverityCritical
	numSeverities
)

var severityNames = [numSeverities]string{"LOW", "MEDIUM", "HIGH", "CRITICAL"}

func (s Severity) String() string {
	if s < 0 || s >= numSeverities {
		return fmt.Sprintf("Severity(%d)", int(s))
	}
	return severityNames[s]
}

// SeverityFor bands a score: LOW < 40 ≤ MEDIUM < 60 ≤ HIGH < 80 ≤ CRITICAL.
func SeverityFor(score int) Severity {
	switch {
	case score >= 80:
		return SeverityCritical
	case score >= 60:
		return SeverityHigh
	case score >= 40:
		return SeverityMedium
	}
	return SeverityLow
}

// Rule ids exactly as SPEC §4.
const (
	RuleDormancyDeclining = "dormancy.declining"
	RuleDormancyChurned   = "dormancy.churned"
	RuleActivityDrop      = "activity.drop"
	RuleOutflowLarge      = "outflow.large"
	RuleOutflowDrain      = "outflow.drain"
	RuleSalaryStopped     = "salary.stopped"
	RuleClosure           = "closure"
	RuleComplaints        = "complaints"
	RuleWinback           = "winback"
)

// MaxSignalEvents bounds Signal.EventIDs.
const MaxSignalEvents = 10

// Signal is one rule hit with its explanation.
type Signal struct {
	// ID is deterministic: the same customer, rule, trigger time and trigger
	// event give the same ID, so replays deduplicate downstream.
	ID         string
	CustomerID string
	Rule       string
	// Time is the event time at which the rule fired; for absence rules the
	// deadline, not the moment the clock passed it.
	Time             time.Time
	Observed         string // decimal string
	Threshold        string // decimal string
	Unit             string // currency code, "days", "ratio", "complaints", "sentiment", "closures"
	ThresholdVersion int64
	EventIDs         []string // triggering events, at most MaxSignalEvents
	// Stage, Score and Severity are the customer's after this signal was applied.
	Stage           Stage
	Score           int
	Severity        Severity
	Tier            Tier
	UnknownCustomer bool
	// Detail is one readable sentence without customer PII.
	Detail string
}
