// Package receiver owns the alert receivers of CHURNWATCH_ALERTS_RECEIVERS:
// the file's shape and validation, which alert changes a receiver takes
// (Match) and the channels that deliver them (Sink). It knows nothing of
// Redis or of the delivery queue: package outbox runs one reader of the
// outbox per receiver and calls its Sink for each matching alert version
// (again only after a failure or a crash, with the same Notification.ID).
//
// Adding a channel is one new file with a Sink and its config stanza, and
// one line in channels (config.go).
package receiver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
)

// Sink delivers one alert change to one place (alertmanager's Notifier).
// A nil error means delivered. An error wrapped by Permanent is not retried
// (the change is dead-lettered); ErrNoRecipient means there is nobody to
// send it to (counted, not retried); any other error is retried with
// backoff. Deliver must respect ctx's deadline.
type Sink interface {
	Deliver(ctx context.Context, n *Notification) error
}

// Notification is one alert change as a receiver gets it.
type Notification struct {
	// ID is unique per alert version (ALERTID.vN) and the same on every
	// attempt: receivers dedupe by it.
	ID     string
	Update *cwv1.AlertUpdate
	// Profile is the customer's latest profile, nil when none was received.
	Profile *cwv1.CustomerProfile
}

// NotificationID is the id of an alert version: "ALERTID.vN".
func NotificationID(a *cwv1.Alert) string {
	return fmt.Sprintf("%s.v%d", a.GetAlertId(), a.GetVersion())
}

// ChangeName is the lower-case name of a change ("created", "escalated"…),
// as used in CloudEvents types and in match.changes.
func ChangeName(c cwv1.AlertChange) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "ALERT_CHANGE_"))
}

// ErrNoRecipient means the change has no address to go to (an email
// receiver without a fixed to: and a customer without managerEmail).
var ErrNoRecipient = errors.New("no recipient")

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying (a 4xx answer, a rejected
// recipient).
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Match is a receiver's filter; every given field must hold.
type Match struct {
	// Roles: the change goes to a receiver when one of these roles is in
	// its audience: manager (the alert has a manager), branch_head (the
	// branch head is notified: unassigned customer or escalated alert),
	// ops and admin (always).
	Roles []string `yaml:"roles"`
	// MinSeverity: LOW, MEDIUM, HIGH or CRITICAL.
	MinSeverity string `yaml:"min_severity"`
	// Rules: at least one of the alert's reasons is one of these rules.
	Rules []string `yaml:"rules"`
	// Tiers: HIGH_NET_WORTH, POTENTIAL, MASS, BASIC.
	Tiers []string `yaml:"tiers"`
	// Changes: created, updated, severity_raised, acknowledged, resolved,
	// snoozed, unsnoozed, escalated, reassigned.
	Changes []string `yaml:"changes"`
	// NotifyOnly: only changes that notify (new, severity rose, escalated,
	// snooze ended, reassigned).
	NotifyOnly bool `yaml:"notify_only"`
}

var roles = []string{"manager", "branch_head", "ops", "admin"}

// compiled is a Match checked and turned into enum values.
type compiled struct {
	roles       []string
	minSeverity cwv1.Severity
	rules       []string
	tiers       []cwv1.Tier
	changes     []cwv1.AlertChange
	notifyOnly  bool
}

func (m Match) compile() (compiled, []string) {
	var errs []string
	c := compiled{roles: m.Roles, rules: m.Rules, notifyOnly: m.NotifyOnly}
	for _, r := range m.Roles {
		if !slices.Contains(roles, r) {
			errs = append(errs, fmt.Sprintf("match.roles: unknown role %q, want one of %s", r, strings.Join(roles, ", ")))
		}
	}
	if m.MinSeverity != "" {
		v, ok := cwv1.Severity_value["SEVERITY_"+strings.ToUpper(m.MinSeverity)]
		if !ok || v == 0 {
			errs = append(errs, fmt.Sprintf("match.min_severity: unknown severity %q, want LOW, MEDIUM, HIGH or CRITICAL", m.MinSeverity))
		}
		c.minSeverity = cwv1.Severity(v)
	}
	for _, t := range m.Tiers {
		v, ok := cwv1.Tier_value["TIER_"+strings.ToUpper(t)]
		if !ok || v == 0 {
			errs = append(errs, fmt.Sprintf("match.tiers: unknown tier %q, want HIGH_NET_WORTH, POTENTIAL, MASS or BASIC", t))
		}
		c.tiers = append(c.tiers, cwv1.Tier(v))
	}
	for _, ch := range m.Changes {
		v, ok := cwv1.AlertChange_value["ALERT_CHANGE_"+strings.ToUpper(ch)]
		if !ok || v == 0 || cwv1.AlertChange(v) == cwv1.AlertChange_ALERT_CHANGE_SNAPSHOT {
			errs = append(errs, fmt.Sprintf("match.changes: unknown change %q", ch))
		}
		c.changes = append(c.changes, cwv1.AlertChange(v))
	}
	for _, r := range m.Rules {
		if r == "" {
			errs = append(errs, "match.rules: empty rule id")
		}
	}
	return c, errs
}

// matches reports whether the receiver takes u.
func (c compiled) matches(u *cwv1.AlertUpdate) bool {
	a := u.GetAlert()
	if a == nil {
		return false
	}
	if c.notifyOnly && !u.GetNotify() {
		return false
	}
	if len(c.changes) > 0 && !slices.Contains(c.changes, u.GetChange()) {
		return false
	}
	if a.GetSeverity() < c.minSeverity {
		return false
	}
	if len(c.tiers) > 0 && !slices.Contains(c.tiers, a.GetTier()) {
		return false
	}
	if len(c.rules) > 0 && !slices.ContainsFunc(a.GetReasons(), func(e *cwv1.Explanation) bool { return slices.Contains(c.rules, e.GetRuleId()) }) {
		return false
	}
	if len(c.roles) > 0 && !slices.ContainsFunc(c.roles, func(r string) bool { return alerting.InRoleAudience(r, a) }) {
		return false
	}
	return true
}
