// Package alerting owns the alert lifecycle as pure functions: given a
// customer's open alert, its profile and a risk signal (or a human action, or
// the wall clock), it returns the alert after the change, what kind of change
// it was and whether the audience should be notified. It does no I/O, so the
// live alert service and the offline back-test (churnctl backtest) raise
// exactly the same alerts with the same reasons.
package alerting

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// Errors of lifecycle actions; the transport maps them to gRPC codes.
var (
	ErrResolved        = errors.New("alert is already resolved")
	ErrOutcomeRequired = errors.New("an outcome is required: retained, churned, unreachable or false_alarm")
	ErrSnoozeInPast    = errors.New("snooze must end in the future")
	ErrManagerRequired = errors.New("manager_id is required")
	ErrNoteRequired    = errors.New("a note is required")
)

// ActorSystem is the actor of changes churnwatch makes by itself.
const ActorSystem = "system"

// SeverityOf maps a 0–100 score to the SPEC §4 bands:
// LOW < 40 ≤ MEDIUM < 60 ≤ HIGH < 80 ≤ CRITICAL.
func SeverityOf(score int32) cwv1.Severity {
	switch {
	case score >= 80:
		return cwv1.Severity_SEVERITY_CRITICAL
	case score >= 60:
		return cwv1.Severity_SEVERITY_HIGH
	case score >= 40:
		return cwv1.Severity_SEVERITY_MEDIUM
	}
	return cwv1.Severity_SEVERITY_LOW
}

// alertIDPrefixLen is len("al-") + 12 hex digits + "-".
const alertIDPrefixLen = 3 + 12 + 1

// AlertID is the id of the alert a signal opens. It is derived from the
// customer and the first signal so that a signal redelivered after a crash
// recreates the same id, and it embeds the customer id so that the alert's
// Redis keys (under the customer's hash tag) can be found from the id alone.
func AlertID(customerID, signalID string) string {
	h := sha256.Sum256([]byte(customerID + "\x00" + signalID))
	return "al-" + hex.EncodeToString(h[:6]) + "-" + customerID
}

// CustomerOf returns the customer id embedded in an alert id.
func CustomerOf(alertID string) (string, bool) {
	if len(alertID) <= alertIDPrefixLen || !strings.HasPrefix(alertID, "al-") || alertID[alertIDPrefixLen-1] != '-' {
		return "", false
	}
	if _, err := hex.DecodeString(alertID[3 : alertIDPrefixLen-1]); err != nil {
		return "", false
	}
	return alertID[alertIDPrefixLen:], true
}

// Customer is what the engine needs to know about one customer.
type Customer struct {
	ID string
	// Profile is nil when no profile was received for the customer.
	Profile *cwv1.CustomerProfile
	// Open is the customer's open (not resolved) alert, nil when none.
	Open *cwv1.Alert
	// Seen holds the signal ids already merged for the customer (across
	// alerts), so that a redelivered signal changes nothing.
	Seen map[string]bool
}

// Change is one change of an alert.
type Change struct {
	// Alert is the alert after the change (a fresh copy).
	Alert *cwv1.Alert
	// Before is the alert before the change, nil when it was created.
	Before *cwv1.Alert
	Kind   cwv1.AlertChange
	Notify bool
	Actor  string
	Note   string
	At     time.Time
	// IngestedAt is when the event behind the signal was accepted (zero
	// for changes not caused by a signal); for the end-to-end latency.
	IngestedAt time.Time
}

// Update is the change as carried on churnwatch.alerts.v1 and Subscribe.
func (c Change) Update() *cwv1.AlertUpdate {
	return &cwv1.AlertUpdate{Change: c.Kind, Alert: c.Alert, Notify: c.Notify, Actor: c.Actor, At: timestamppb.New(c.At)}
}

// History is the change as a step of the alert's history.
func (c Change) History() *cwv1.AlertHistoryEntry {
	return &cwv1.AlertHistoryEntry{Version: c.Alert.GetVersion(), Change: c.Kind, At: timestamppb.New(c.At),
		Actor: c.Actor, State: c.Alert.GetState(), Severity: c.Alert.GetSeverity(), Note: c.Note}
}

// Engine applies signals and actions. Its zero value works: no playbook
// (empty recommended actions) and no SLA (no acknowledgement deadline).
type Engine struct {
	Playbook *Playbook
	// SLA is the time to acknowledge per tier (wall clock). A tier missing
	// from the map gets no deadline.
	SLA map[cwv1.Tier]time.Duration
}

func (e *Engine) action(a *cwv1.Alert) string {
	if e.Playbook == nil {
		return ""
	}
	rules := make([]string, 0, len(a.Reasons))
	for _, r := range a.Reasons {
		rules = append(rules, r.GetRuleId())
	}
	return e.Playbook.Action(a.Stage, a.Tier, rules)
}

func (e *Engine) ackDue(tier cwv1.Tier, now time.Time) *timestamppb.Timestamp {
	if d, ok := e.SLA[tier]; ok && d > 0 {
		return timestamppb.New(now.Add(d))
	}
	return nil
}

// Signal merges a risk signal into the customer's open alert, or opens one.
// It updates c (Open, Seen) and returns false when the signal was already
// merged: nothing changes then.
func (e *Engine) Signal(c *Customer, sig *cwv1.RiskSignal, now time.Time) (Change, bool) {
	if c.Seen == nil {
		c.Seen = map[string]bool{}
	}
	if sig.GetSignalId() == "" || c.Seen[sig.GetSignalId()] {
		return Change{}, false
	}
	c.Seen[sig.GetSignalId()] = true
	ch := Change{Actor: ActorSystem, At: now}
	if t := sig.GetIngestedAt(); t != nil {
		ch.IngestedAt = t.AsTime()
	}
	// The alert shows the tier the signal was judged as (its thresholds are
	// that tier's), not the tier this service's profile says now: the rules
	// service scores with the profile in event order.
	tier := sig.GetTier()
	if tier == cwv1.Tier_TIER_UNSPECIFIED && c.Profile != nil {
		tier = c.Profile.GetTier()
	}
	expl := sig.GetExplanation()
	if expl == nil {
		expl = &cwv1.Explanation{}
	}
	expl = proto.Clone(expl).(*cwv1.Explanation)
	if expl.RuleId == "" {
		expl.RuleId = sig.GetRuleId()
	}
	at := sig.GetEventTime()

	if c.Open == nil || c.Open.GetState() == cwv1.AlertState_ALERT_STATE_RESOLVED {
		a := &cwv1.Alert{
			AlertId:         AlertID(c.ID, sig.GetSignalId()),
			CustomerId:      c.ID,
			Tier:            tier,
			ManagerId:       c.Profile.GetManagerId(),
			BranchId:        c.Profile.GetBranchId(),
			State:           cwv1.AlertState_ALERT_STATE_OPEN,
			Score:           sig.GetScore(),
			Severity:        SeverityOf(sig.GetScore()),
			PeakSeverity:    SeverityOf(sig.GetScore()),
			Stage:           sig.GetStage(),
			Reasons:         []*cwv1.Explanation{expl},
			CreatedAt:       timestamppb.New(now),
			UpdatedAt:       timestamppb.New(now),
			Version:         1,
			FirstSignalAt:   at,
			LastSignalAt:    at,
			UnknownCustomer: sig.GetUnknownCustomer(),
			AckDueAt:        e.ackDue(tier, now),

			CustomerDisplayName: c.Profile.GetDisplayName(),
		}
		a.RecommendedAction = e.action(a)
		c.Open = a
		ch.Alert, ch.Kind, ch.Notify = proto.Clone(a).(*cwv1.Alert), cwv1.AlertChange_ALERT_CHANGE_CREATED, true
		return ch, true
	}

	before := c.Open
	a := proto.Clone(before).(*cwv1.Alert)
	merged := false
	for i, r := range a.Reasons {
		if r.GetRuleId() == expl.RuleId {
			a.Reasons[i], merged = expl, true // the latest explanation per rule
			break
		}
	}
	if !merged {
		a.Reasons = append(a.Reasons, expl)
	}
	// The rules engine's score already combines the customer's live signals.
	a.Score = sig.GetScore()
	a.Severity = SeverityOf(a.Score)
	if sig.GetStage() != cwv1.Stage_STAGE_UNSPECIFIED {
		a.Stage = sig.GetStage()
	}
	a.Tier = tier
	a.UnknownCustomer = sig.GetUnknownCustomer()
	if c.Profile != nil {
		a.CustomerDisplayName = c.Profile.GetDisplayName()
	}
	if at != nil {
		if a.FirstSignalAt == nil || at.AsTime().Before(a.FirstSignalAt.AsTime()) {
			a.FirstSignalAt = at
		}
		if a.LastSignalAt == nil || at.AsTime().After(a.LastSignalAt.AsTime()) {
			a.LastSignalAt = at
		}
	}
	a.RecommendedAction = e.action(a)
	a.UpdatedAt = timestamppb.New(now)
	a.Version++
	c.Open = a
	// Notify only above the highest severity reached so far: a score that
	// dips as signals age out and comes back is not news to the RM.
	peak := max(before.GetPeakSeverity(), before.GetSeverity())
	raised := a.Severity > peak
	a.PeakSeverity = max(peak, a.Severity)
	ch.Alert, ch.Before, ch.Kind = proto.Clone(a).(*cwv1.Alert), before, cwv1.AlertChange_ALERT_CHANGE_UPDATED
	if raised {
		ch.Kind = cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED
	}
	// A snoozed alert takes the new reasons quietly until the snooze ends.
	ch.Notify = raised && a.State != cwv1.AlertState_ALERT_STATE_SNOOZED
	return ch, true
}

func (e *Engine) step(before *cwv1.Alert, kind cwv1.AlertChange, actor, note string, now time.Time, edit func(a *cwv1.Alert)) Change {
	a := proto.Clone(before).(*cwv1.Alert)
	edit(a)
	a.UpdatedAt = timestamppb.New(now)
	a.Version++
	return Change{Alert: a, Before: before, Kind: kind, Actor: actor, Note: note, At: now}
}

// Acknowledge records that the manager took the alert on. Acknowledging an
// acknowledged alert changes nothing (false).
func (e *Engine) Acknowledge(a *cwv1.Alert, actor, note string, now time.Time) (Change, bool, error) {
	switch a.GetState() {
	case cwv1.AlertState_ALERT_STATE_RESOLVED:
		return Change{}, false, ErrResolved
	case cwv1.AlertState_ALERT_STATE_ACKNOWLEDGED:
		return Change{}, false, nil
	}
	ch := e.step(a, cwv1.AlertChange_ALERT_CHANGE_ACKNOWLEDGED, actor, note, now, func(a *cwv1.Alert) {
		a.State = cwv1.AlertState_ALERT_STATE_ACKNOWLEDGED
		a.AcknowledgedAt = timestamppb.New(now)
		a.SnoozedUntil = nil
		if note != "" {
			a.Note = note
		}
	})
	return ch, true, nil
}

// Resolve closes the alert with an outcome; the customer's next signal opens
// a new alert.
func (e *Engine) Resolve(a *cwv1.Alert, outcome cwv1.Outcome, actor, note string, now time.Time) (Change, error) {
	if a.GetState() == cwv1.AlertState_ALERT_STATE_RESOLVED {
		return Change{}, ErrResolved
	}
	if _, ok := cwv1.Outcome_name[int32(outcome)]; !ok || outcome == cwv1.Outcome_OUTCOME_UNSPECIFIED {
		return Change{}, ErrOutcomeRequired
	}
	return e.step(a, cwv1.AlertChange_ALERT_CHANGE_RESOLVED, actor, note, now, func(a *cwv1.Alert) {
		a.State = cwv1.AlertState_ALERT_STATE_RESOLVED
		a.ResolvedAt = timestamppb.New(now)
		a.Outcome = outcome
		a.SnoozedUntil = nil
		if note != "" {
			a.Note = note
		}
	}), nil
}

// Snooze quiets the alert until a time. Snoozing counts as a response to
// the alert: the acknowledgement deadline is suspended while it lasts.
func (e *Engine) Snooze(a *cwv1.Alert, until time.Time, actor, note string, now time.Time) (Change, error) {
	if a.GetState() == cwv1.AlertState_ALERT_STATE_RESOLVED {
		return Change{}, ErrResolved
	}
	if !until.After(now) {
		return Change{}, ErrSnoozeInPast
	}
	return e.step(a, cwv1.AlertChange_ALERT_CHANGE_SNOOZED, actor, note, now, func(a *cwv1.Alert) {
		a.State = cwv1.AlertState_ALERT_STATE_SNOOZED
		a.SnoozedUntil = timestamppb.New(until)
		a.AckDueAt = nil
		if note != "" {
			a.Note = note
		}
	}), nil
}

// Unsnooze ends a snooze whose time has come (false when not due): the
// alert is open again, notifies, and gets a fresh acknowledgement deadline
// unless it had been acknowledged before.
func (e *Engine) Unsnooze(a *cwv1.Alert, now time.Time) (Change, bool) {
	if a.GetState() != cwv1.AlertState_ALERT_STATE_SNOOZED || a.GetSnoozedUntil() == nil || now.Before(a.GetSnoozedUntil().AsTime()) {
		return Change{}, false
	}
	ch := e.step(a, cwv1.AlertChange_ALERT_CHANGE_UNSNOOZED, ActorSystem, "", now, func(a *cwv1.Alert) {
		a.SnoozedUntil = nil
		if a.AcknowledgedAt != nil {
			a.State = cwv1.AlertState_ALERT_STATE_ACKNOWLEDGED
			return
		}
		a.State = cwv1.AlertState_ALERT_STATE_OPEN
		a.AckDueAt = e.ackDue(a.Tier, now)
	})
	ch.Notify = true
	return ch, true
}

// Escalate marks an alert not acknowledged within its SLA (false when not
// due). The branch head becomes a notified audience.
func (e *Engine) Escalate(a *cwv1.Alert, now time.Time) (Change, bool) {
	if a.GetState() != cwv1.AlertState_ALERT_STATE_OPEN || a.GetAckDueAt() == nil || now.Before(a.GetAckDueAt().AsTime()) {
		return Change{}, false
	}
	ch := e.step(a, cwv1.AlertChange_ALERT_CHANGE_ESCALATED, ActorSystem, "", now, func(a *cwv1.Alert) {
		a.State = cwv1.AlertState_ALERT_STATE_ESCALATED
		a.EscalatedAt = timestamppb.New(now)
	})
	ch.Notify = true
	return ch, true
}

// Reassign moves an open alert to the customer's current manager and branch
// after a profile change (false when routing is unchanged). Tier and the
// unknown-customer mark stay as the last signal judged them: they change
// with the next signal, scored with the new profile.
func (e *Engine) Reassign(a *cwv1.Alert, p *cwv1.CustomerProfile, now time.Time) (Change, bool) {
	if a.GetState() == cwv1.AlertState_ALERT_STATE_RESOLVED || p == nil {
		return Change{}, false
	}
	if a.GetManagerId() == p.GetManagerId() && a.GetBranchId() == p.GetBranchId() {
		return Change{}, false
	}
	ch := e.step(a, cwv1.AlertChange_ALERT_CHANGE_REASSIGNED, ActorSystem, "", now, func(a *cwv1.Alert) {
		a.ManagerId, a.BranchId = p.GetManagerId(), p.GetBranchId()
		a.CustomerDisplayName = p.GetDisplayName()
		a.RecommendedAction = e.action(a)
	})
	ch.Notify = true
	return ch, true
}

// ReassignTo hands an open alert to another manager of its branch by a
// person's decision (ReassignAlert), with the note on its history; false
// when the alert is that manager's already. The new manager is notified.
func (e *Engine) ReassignTo(a *cwv1.Alert, manager, actor, note string, now time.Time) (Change, bool, error) {
	switch {
	case a.GetState() == cwv1.AlertState_ALERT_STATE_RESOLVED:
		return Change{}, false, ErrResolved
	case manager == "":
		return Change{}, false, ErrManagerRequired
	case strings.TrimSpace(note) == "":
		return Change{}, false, ErrNoteRequired
	case a.GetManagerId() == manager:
		return Change{}, false, nil
	}
	ch := e.step(a, cwv1.AlertChange_ALERT_CHANGE_REASSIGNED, actor, note, now, func(a *cwv1.Alert) {
		a.ManagerId = manager
		a.RecommendedAction = e.action(a)
	})
	ch.Notify = true
	return ch, true, nil
}

// Open reports whether an alert is not resolved.
func Open(a *cwv1.Alert) bool {
	return a != nil && a.GetState() != cwv1.AlertState_ALERT_STATE_RESOLVED
}
