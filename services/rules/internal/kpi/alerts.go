package kpi

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// AlertFact is what the KPIs keep of one alert: its latest version's
// lifecycle timestamps (unix seconds, 0 = not yet), audience and rules,
// and the customer id (no name): the figures need no customer, the
// threshold back-test matches outcomes to its alerts by it.
//
// Raised is the event time of the alert's first signal (first_signal_at):
// the KPIs count an alert in the month its customer's events raised it
// (SPEC §9, event time), so a replayed or late history lands in its own
// months. The human steps (acknowledged, escalated, resolved) and the SLA
// run on the wall clock (Created, AckDue), as the alerts service keeps
// them. Facts stored before Raised existed fall back to Created.
type AlertFact struct {
	ID           string   `json:"id"`
	Customer     string   `json:"cu,omitempty"`
	Version      int64    `json:"v"`
	Tier         string   `json:"t"` // HIGH_NET_WORTH …
	Branch       string   `json:"b,omitempty"`
	Manager      string   `json:"m,omitempty"`
	Rules        []string `json:"r,omitempty"` // distinct rule ids, first seen first
	Raised       int64    `json:"s,omitempty"`
	Created      int64    `json:"c"`
	AckDue       int64    `json:"d,omitempty"`
	Acknowledged int64    `json:"a,omitempty"`
	Escalated    int64    `json:"e,omitempty"`
	Resolved     int64    `json:"x,omitempty"`
	Outcome      string   `json:"o,omitempty"` // RETAINED, CHURNED, UNREACHABLE, FALSE_ALARM
}

// ErrAlertFact is returned for an alert update the KPIs cannot use.
var ErrAlertFact = errors.New("alert update unusable for KPIs")

// FactOf is the fact of an alert update's alert.
func FactOf(u *cwv1.AlertUpdate) (AlertFact, error) {
	a := u.GetAlert()
	switch {
	case a.GetAlertId() == "":
		return AlertFact{}, fmt.Errorf("%w: no alert id", ErrAlertFact)
	case a.GetVersion() <= 0:
		return AlertFact{}, fmt.Errorf("%w: alert without a version", ErrAlertFact)
	case a.GetCreatedAt() == nil:
		return AlertFact{}, fmt.Errorf("%w: alert without created_at", ErrAlertFact)
	}
	f := AlertFact{ID: a.GetAlertId(), Customer: a.GetCustomerId(), Version: a.GetVersion(), Tier: TierName(a.GetTier()), Branch: a.GetBranchId(),
		Manager: a.GetManagerId(), Raised: a.GetFirstSignalAt().GetSeconds(), Created: a.GetCreatedAt().GetSeconds(), AckDue: a.GetAckDueAt().GetSeconds(),
		Acknowledged: a.GetAcknowledgedAt().GetSeconds(), Escalated: a.GetEscalatedAt().GetSeconds(),
		Resolved: a.GetResolvedAt().GetSeconds()}
	if f.Resolved != 0 {
		f.Outcome = OutcomeName(a.GetOutcome())
	}
	for _, r := range a.GetReasons() {
		if id := r.GetRuleId(); id != "" && !slices.Contains(f.Rules, id) {
			f.Rules = append(f.Rules, id)
		}
	}
	return f, nil
}

// RaisedAt is the event time the alert was raised at: its first signal's,
// or its creation's for a fact without one.
func (f AlertFact) RaisedAt() int64 {
	if f.Raised != 0 {
		return f.Raised
	}
	return f.Created
}

// Months are the months the fact must be kept in: the month its events
// raised it in, and every month from the one it was created in to the one
// it was resolved in (or to the month of latest, for an open alert), at
// most maxAlertMonths, so that a month's facts hold every alert raised in
// it and every alert open at some time in it.
func (f AlertFact) Months(latest time.Time) []string {
	raised := Month(time.Unix(f.RaisedAt(), 0))
	from := time.Unix(f.Created, 0).UTC()
	to := latest.UTC()
	if f.Resolved != 0 {
		to = time.Unix(f.Resolved, 0).UTC()
	}
	for _, ts := range []int64{f.Acknowledged, f.Escalated, f.Resolved} {
		if ts != 0 && time.Unix(ts, 0).After(to) {
			to = time.Unix(ts, 0).UTC()
		}
	}
	if to.Before(from) {
		to = from // clock skew: at least the month it was raised in
	}
	out := []string{raised}
	for m := monthStart(from); !m.After(to) && len(out) < maxAlertMonths; m = m.AddDate(0, 1, 0) {
		if mm := Month(m); mm != raised {
			out = append(out, mm)
		}
	}
	return out
}

// maxAlertMonths bounds how many months one alert's fact is kept in.
const maxAlertMonths = 24

// Open reports whether the alert is not resolved.
func (f AlertFact) Open() bool { return f.Resolved == 0 }

// Encode is the stored form of a fact.
func (f AlertFact) Encode() string {
	b, _ := json.Marshal(f) // strings and numbers only: cannot fail
	return string(b)
}

// DecodeAlertFact reads Encode's output.
func DecodeAlertFact(s string) (AlertFact, error) {
	var f AlertFact
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		return AlertFact{}, fmt.Errorf("decode alert fact: %w", err)
	}
	return f, nil
}

// TierName is the SPEC name of a tier ("" for unspecified).
func TierName(t cwv1.Tier) string {
	switch t {
	case cwv1.Tier_TIER_HIGH_NET_WORTH:
		return "HIGH_NET_WORTH"
	case cwv1.Tier_TIER_POTENTIAL:
		return "POTENTIAL"
	case cwv1.Tier_TIER_MASS:
		return "MASS"
	case cwv1.Tier_TIER_BASIC:
		return "BASIC"
	}
	return ""
}

// TierOf is the proto tier of a SPEC name.
func TierOf(name string) cwv1.Tier {
	if v, ok := cwv1.Tier_value["TIER_"+name]; ok {
		return cwv1.Tier(v)
	}
	return cwv1.Tier_TIER_UNSPECIFIED
}

// OutcomeName is the SPEC name of an outcome.
func OutcomeName(o cwv1.Outcome) string {
	if o == cwv1.Outcome_OUTCOME_UNSPECIFIED {
		return ""
	}
	return o.String()[len("OUTCOME_"):]
}

func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
