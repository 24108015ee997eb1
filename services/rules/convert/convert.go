// Package convert is the one place where the rules service translates
// between the wire contracts (churnwatch.v1 protobuf) and the pure scoring
// engine: account events in, risk signals out, tiers, stages and severities.
package convert

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// ErrInvalidEvent is returned for an event the engine cannot score; the
// consumer sends such records to the DLQ.
var ErrInvalidEvent = errors.New("invalid event")

var eventTypes = map[cwv1.EventType]engine.EventType{
	cwv1.EventType_EVENT_TYPE_DEPOSIT:           engine.EventDeposit,
	cwv1.EventType_EVENT_TYPE_TRANSFER_IN:       engine.EventTransferIn,
	cwv1.EventType_EVENT_TYPE_SALARY:            engine.EventSalary,
	cwv1.EventType_EVENT_TYPE_WITHDRAWAL:        engine.EventWithdrawal,
	cwv1.EventType_EVENT_TYPE_TRANSFER_OUT:      engine.EventTransferOut,
	cwv1.EventType_EVENT_TYPE_CARD_PAYMENT:      engine.EventCardPayment,
	cwv1.EventType_EVENT_TYPE_INTEREST:          engine.EventInterest,
	cwv1.EventType_EVENT_TYPE_FEE:               engine.EventFee,
	cwv1.EventType_EVENT_TYPE_LOGIN:             engine.EventLogin,
	cwv1.EventType_EVENT_TYPE_ACCOUNT_OPENED:    engine.EventAccountOpened,
	cwv1.EventType_EVENT_TYPE_ACCOUNT_CLOSED:    engine.EventAccountClosed,
	cwv1.EventType_EVENT_TYPE_PRODUCT_CANCELLED: engine.EventProductCancelled,
	cwv1.EventType_EVENT_TYPE_COMPLAINT:         engine.EventComplaint,
}

// IsClockMarker reports whether ev is a business-day-close marker: it moves
// its partition's clock and is not scored.
func IsClockMarker(ev *cwv1.AccountEvent) bool {
	return ev.GetType() == cwv1.EventType_EVENT_TYPE_BUSINESS_DAY_CLOSED
}

// IsProfileRecord reports whether ev carries a customer profile in event
// order (EVENT_TYPE_PROFILE_UPDATED): it sets the profile later events of
// the customer are scored with, and is neither scored nor moves a clock.
func IsProfileRecord(ev *cwv1.AccountEvent) bool {
	return ev.GetType() == cwv1.EventType_EVENT_TYPE_PROFILE_UPDATED
}

// RecordProfile returns the profile of a profile record, or ErrInvalidEvent
// when it has no customer id or no profile, or names another customer.
func RecordProfile(ev *cwv1.AccountEvent) (*cwv1.CustomerProfile, error) {
	switch {
	case ev.GetCustomerId() == "":
		return nil, fmt.Errorf("%w: no customer id", ErrInvalidEvent)
	case ev.GetProfile() == nil:
		return nil, fmt.Errorf("%w: profile record without a profile", ErrInvalidEvent)
	case ev.GetProfile().GetCustomerId() != ev.GetCustomerId():
		return nil, fmt.Errorf("%w: profile record for another customer", ErrInvalidEvent)
	}
	return ev.GetProfile(), nil
}

// Event converts a validated AccountEvent (not a clock marker) for the
// engine. The ingester has validated it; this only refuses what would make
// the engine's result meaningless.
func Event(ev *cwv1.AccountEvent) (engine.Event, error) {
	t, ok := eventTypes[ev.GetType()]
	if !ok {
		return engine.Event{}, fmt.Errorf("%w: type %s", ErrInvalidEvent, ev.GetType())
	}
	if ev.GetCustomerId() == "" {
		return engine.Event{}, fmt.Errorf("%w: no customer id", ErrInvalidEvent)
	}
	if ev.GetOccurredAt() == nil || ev.GetOccurredAt().CheckValid() != nil {
		return engine.Event{}, fmt.Errorf("%w: no valid occurred_at", ErrInvalidEvent)
	}
	if ev.GetAmountMinor() < 0 {
		return engine.Event{}, fmt.Errorf("%w: negative amount", ErrInvalidEvent)
	}
	out := engine.Event{
		ID:               ev.GetEventId(),
		CustomerID:       ev.GetCustomerId(),
		AccountID:        ev.GetAccountId(),
		Time:             ev.GetOccurredAt().AsTime(),
		Type:             t,
		Amount:           ev.GetAmountMinor(),
		Currency:         ev.GetCurrency(),
		CounterpartyBank: ev.GetCounterpartyBank(),
	}
	if ev.BalanceAfterMinor != nil {
		out.BalanceAfter, out.HasBalance = ev.GetBalanceAfterMinor(), true
	}
	if ev.Sentiment != nil {
		out.Sentiment, out.HasSentiment = ev.GetSentiment(), true
	}
	return out, nil
}

// Tier converts a profile tier; TIER_UNSPECIFIED (or anything unknown)
// scores as MASS and reports false.
func Tier(t cwv1.Tier) (engine.Tier, bool) {
	switch t {
	case cwv1.Tier_TIER_HIGH_NET_WORTH:
		return engine.TierHNW, true
	case cwv1.Tier_TIER_POTENTIAL:
		return engine.TierPotential, true
	case cwv1.Tier_TIER_MASS:
		return engine.TierMass, true
	case cwv1.Tier_TIER_BASIC:
		return engine.TierBasic, true
	}
	return engine.TierMass, false
}

// TierProto converts an engine tier.
func TierProto(t engine.Tier) cwv1.Tier {
	switch t {
	case engine.TierHNW:
		return cwv1.Tier_TIER_HIGH_NET_WORTH
	case engine.TierPotential:
		return cwv1.Tier_TIER_POTENTIAL
	case engine.TierMass:
		return cwv1.Tier_TIER_MASS
	case engine.TierBasic:
		return cwv1.Tier_TIER_BASIC
	}
	return cwv1.Tier_TIER_UNSPECIFIED
}

// StageProto converts an engine stage.
func StageProto(s engine.Stage) cwv1.Stage {
	switch s {
	case engine.StageActive:
		return cwv1.Stage_STAGE_ACTIVE
	case engine.StageDeclining:
		return cwv1.Stage_STAGE_DECLINING
	case engine.StageChurned:
		return cwv1.Stage_STAGE_CHURNED
	case engine.StageWonBack:
		return cwv1.Stage_STAGE_WON_BACK
	}
	return cwv1.Stage_STAGE_UNSPECIFIED
}

// SeverityProto converts an engine severity.
func SeverityProto(s engine.Severity) cwv1.Severity {
	switch s {
	case engine.SeverityLow:
		return cwv1.Severity_SEVERITY_LOW
	case engine.SeverityMedium:
		return cwv1.Severity_SEVERITY_MEDIUM
	case engine.SeverityHigh:
		return cwv1.Severity_SEVERITY_HIGH
	case engine.SeverityCritical:
		return cwv1.Severity_SEVERITY_CRITICAL
	}
	return cwv1.Severity_SEVERITY_UNSPECIFIED
}

// Source is where a signal came from on the events topic.
type Source struct {
	Partition  int32
	Offset     int64
	IngestedAt *timestamppb.Timestamp // copied from the triggering record; may be nil
}

// Signal converts an engine signal with its explanation.
func Signal(s engine.Signal, src Source) *cwv1.RiskSignal {
	return &cwv1.RiskSignal{
		SignalId:        s.ID,
		CustomerId:      s.CustomerID,
		RuleId:          s.Rule,
		EventTime:       timestamp(s.Time),
		Explanation:     Explanation(s),
		Stage:           StageProto(s.Stage),
		Score:           int32(s.Score),
		Severity:        SeverityProto(s.Severity),
		Tier:            TierProto(s.Tier),
		UnknownCustomer: s.UnknownCustomer,
		SourcePartition: src.Partition,
		SourceOffset:    src.Offset,
		IngestedAt:      src.IngestedAt,
	}
}

// Explanation is the why of a signal.
func Explanation(s engine.Signal) *cwv1.Explanation {
	return &cwv1.Explanation{
		RuleId:           s.Rule,
		Observed:         s.Observed,
		Threshold:        s.Threshold,
		Unit:             s.Unit,
		ThresholdVersion: s.ThresholdVersion,
		EventIds:         append([]string(nil), s.EventIDs...),
		Detail:           s.Detail,
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
