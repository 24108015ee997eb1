// Package shadow owns shadow threshold sets as pure functions: naming a
// set, the thresholds it scores with, turning its signals into alerts with
// the same alert logic as the alert service and the back-test (the
// services/alerts/alerting package, not a second merge), and the report
// comparing sets. It does no I/O: the store package keeps the sets and
// their state, the scoring package runs them.
package shadow

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// MaxRunning bounds the running sets: each one scores every batch again
// and keeps its own state per customer.
const MaxRunning = 3

// LiveName is the report's name of the set in force.
const LiveName = "live"

// Errors of a set definition.
var (
	ErrName       = errors.New("shadow set name: 1 to 32 of a-z, 0-9 and '-', starting with a letter, not \"live\"")
	ErrNoSettings = errors.New("a shadow set needs at least one RULE.FIELD[.TIER]=VALUE that differs from the set in force")
	ErrTooMany    = fmt.Errorf("at most %d shadow sets run at once: stop one first (churnctl thresholds shadow --stop NAME)", MaxRunning)
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// CheckName validates a set name (it is part of Redis keys and fields).
func CheckName(name string) error {
	if !nameRE.MatchString(name) || name == LiveName {
		return fmt.Errorf("%w: got %q", ErrName, name)
	}
	return nil
}

// Setting is one RULE.FIELD[.TIER]=VALUE.
type Setting struct{ Key, Value string }

// Thresholds applies settings to a copy of base and validates the result;
// changed holds the settings whose value differs from base.
func Thresholds(base engine.Thresholds, settings []Setting) (th engine.Thresholds, changed map[string]string, err error) {
	// A deep copy: the set's per-currency amounts are maps.
	if th, err = FromValues(Values(&base)); err != nil {
		return engine.Thresholds{}, nil, err
	}
	th.Version = base.Version
	for _, s := range settings {
		if err := th.Set(s.Key, s.Value); err != nil {
			return engine.Thresholds{}, nil, fmt.Errorf("setting %s=%s: %w", s.Key, s.Value, err)
		}
	}
	if err := th.Validate(); err != nil {
		return engine.Thresholds{}, nil, err
	}
	before, after := Values(&base), Values(&th)
	changed = map[string]string{}
	for k, v := range after {
		if before[k] != v {
			changed[k] = v
		}
	}
	if len(changed) == 0 {
		return engine.Thresholds{}, nil, ErrNoSettings
	}
	return th, changed, nil
}

// Values is every setting of th as key → value.
func Values(th *engine.Thresholds) map[string]string {
	out := map[string]string{}
	for _, k := range th.Keys() {
		if v, err := th.Get(k); err == nil {
			out[k] = v
		}
	}
	return out
}

// FromValues rebuilds a stored set's thresholds.
func FromValues(values map[string]string) (engine.Thresholds, error) {
	th := engine.DefaultThresholds()
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := th.Set(k, values[k]); err != nil {
			return engine.Thresholds{}, fmt.Errorf("stored shadow setting %s: %w", k, err)
		}
	}
	return th, nil
}

// Merge merges one customer's signals, in the order the engine emitted
// them, into its shadow alert (nil: none yet) exactly as the back-test
// does (profile: the customer's, nil if unknown), and returns the alert after them (nil if there were no signals and
// no alert). Shadow alerts are never worked, so an alert stays open and
// absorbs every later signal, as in a back-test.
func Merge(al *alerting.Engine, customerID string, profile *cwv1.CustomerProfile, open *cwv1.Alert, sigs []*cwv1.RiskSignal) *cwv1.Alert {
	c := &alerting.Customer{ID: customerID, Profile: profile, Open: open}
	for _, sg := range sigs {
		al.Signal(c, sg, sg.GetEventTime().AsTime())
	}
	return c.Open
}

// Outcome is the judged outcome of a customer's resolved live alert.
type Outcome struct {
	Outcome cwv1.Outcome
	At      time.Time // resolved at (latest wins)
}

// Judged reports whether an outcome counts for precision, and as what:
// RETAINED and CHURNED true, FALSE_ALARM false; UNREACHABLE not judged.
func Judged(o cwv1.Outcome) (judged, correct bool) {
	switch o {
	case cwv1.Outcome_OUTCOME_RETAINED, cwv1.Outcome_OUTCOME_CHURNED:
		return true, true
	case cwv1.Outcome_OUTCOME_FALSE_ALARM:
		return true, false
	}
	return false, false
}

// SetAlerts is one set's alerts as the report sees them.
type SetAlerts struct {
	Name   string
	Live   bool
	Alerts []*cwv1.ShadowAlertSummary
}

// Report fills each set's precision (over alerts whose customer has a
// judged live outcome) and the customers only that set alerted.
func Report(sets []SetAlerts, outcomes map[string]cwv1.Outcome) []*cwv1.ShadowSetReport {
	by := map[string]int{} // customer → how many sets alerted it
	for _, s := range sets {
		seen := map[string]bool{}
		for _, a := range s.Alerts {
			if !seen[a.GetCustomerId()] {
				seen[a.GetCustomerId()] = true
				by[a.GetCustomerId()]++
			}
		}
	}
	out := make([]*cwv1.ShadowSetReport, 0, len(sets))
	for _, s := range sets {
		r := &cwv1.ShadowSetReport{Name: s.Name, Live: s.Live}
		slices.SortFunc(s.Alerts, func(a, b *cwv1.ShadowAlertSummary) int {
			if c := a.GetFirstSignalAt().AsTime().Compare(b.GetFirstSignalAt().AsTime()); c != 0 {
				return c
			}
			if a.GetCustomerId() < b.GetCustomerId() {
				return -1
			}
			if a.GetCustomerId() > b.GetCustomerId() {
				return 1
			}
			return 0
		})
		for _, a := range s.Alerts {
			a.Outcome = outcomes[a.GetCustomerId()]
			if j, ok := Judged(a.Outcome); j {
				r.Judged++
				if ok {
					r.Correct++
				}
			}
			if by[a.GetCustomerId()] == 1 && len(sets) > 1 && !slices.Contains(r.OnlyThisSet, a.GetCustomerId()) {
				r.OnlyThisSet = append(r.OnlyThisSet, a.GetCustomerId())
			}
		}
		r.Alerts = s.Alerts
		out = append(out, r)
	}
	return out
}

// Summary is the report's view of an alert.
func Summary(a *cwv1.Alert) *cwv1.ShadowAlertSummary {
	s := &cwv1.ShadowAlertSummary{CustomerId: a.GetCustomerId(), Severity: a.GetSeverity(), Tier: a.GetTier(), FirstSignalAt: a.GetFirstSignalAt()}
	for _, r := range a.GetReasons() {
		if !slices.Contains(s.RuleIds, r.GetRuleId()) {
			s.RuleIds = append(s.RuleIds, r.GetRuleId())
		}
	}
	return s
}
