package backtest

import (
	"sort"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// Grace is how long after a customer's churn date an alert still counts as
// detecting the churn: churn dates are when the last money left or the
// last activity happened, and banks learn of some churn only at the next
// month's statement. An alert later than that is a post-mortem, not a
// warning.
const Grace = 30 * 24 * time.Hour

// ArchetypeSilent is the label archetype (Label.Archetype, "archetype" in
// labels.ndjson) of churners who leave with no warning sign at all, as
// `churnctl simulate` labels them: they count as churners, not as
// detectable ones.
const ArchetypeSilent = "silent"

// daysPerMonth turns an observation window into months (365.25 / 12).
const daysPerMonth = 30.4375

// Detection measures alerts against churn labels. Only labelled customers
// count; alerts of customers without a label are reported as Unlabelled.
//
//   - Precision: alerted customers who are labelled churners / alerted
//     customers (whenever the alert came).
//   - Recall: labelled churners whose first alert's first signal is before
//     churn date + Grace / labelled churners.
//   - Lead time: churn date − first signal of the first alert, in days, over
//     the detected churners (negative: the alert came after the churn date,
//     within the grace). MedianLeadDays is its median (the mean of the two
//     middle values for an even count).
//   - False alerts per 1,000 stable customers per month: alerts of
//     customers labelled not churned × 1,000 / stable customers / months
//     observed (from the first event to the end clock).
type Detection struct {
	Customers int `json:"customers"` // labelled customers
	Churners  int `json:"churners"`
	Stable    int `json:"stable"`
	// Alerted counts labelled customers with an alert; TruePositives those
	// of them labelled churners, FalseAlerts the alerts of stable ones.
	Alerted       int     `json:"alerted"`
	TruePositives int     `json:"truePositives"`
	FalseAlerts   int     `json:"falseAlerts"`
	Detected      int     `json:"detected"` // churners alerted in time (recall's numerator)
	Unlabelled    int     `json:"unlabelled"`
	Precision     float64 `json:"precision"`
	Recall        float64 `json:"recall"`
	// Detectable churners are those of an archetype that shows a warning
	// sign (all but ArchetypeSilent); RecallDetectable is recall
	// over them, Recall over every churner.
	DetectableChurners int     `json:"detectableChurners"`
	DetectedDetectable int     `json:"detectedDetectable"`
	RecallDetectable   float64 `json:"recallDetectable"`
	MedianLeadDays     float64 `json:"medianLeadDays"`
	// MedianLeadDaysDetectable leaves out the silent churners, whose
	// alerts (activity.drop once they have stopped) can only come after
	// the churn date, within the grace.
	MedianLeadDaysDetectable float64 `json:"medianLeadDaysDetectable"`
	// Months is the observation window used for the false-alert rate.
	Months                        float64              `json:"months"`
	FalseAlertsPer1000StableMonth float64              `json:"falseAlertsPer1000StablePerMonth"`
	ByRule                        []RuleDetection      `json:"byRule"`
	ByArchetype                   []ArchetypeDetection `json:"byArchetype"`
}

// RuleDetection is one rule's share: alerts carrying it as a reason.
type RuleDetection struct {
	Rule      string  `json:"rule"`
	Alerts    int     `json:"alerts"`
	True      int     `json:"true"` // of labelled churners
	False     int     `json:"false"`
	Precision float64 `json:"precision"`
	// FirstReason counts the alerts this rule opened.
	FirstReason int `json:"firstReason"`
}

// ArchetypeDetection is detection per label archetype; for stable
// customers Detected stays 0 and Alerted counts false alerts.
type ArchetypeDetection struct {
	Archetype      string  `json:"archetype"`
	Customers      int     `json:"customers"`
	Churned        bool    `json:"churned"`
	Alerted        int     `json:"alerted"`
	Detected       int     `json:"detected"`
	Recall         float64 `json:"recall"`
	MedianLeadDays float64 `json:"medianLeadDays"`
}

// Score measures alerts (one or more per customer) against labels over the
// window start … end.
func Score(alerts []*cwv1.Alert, labels []Label, start, end time.Time) *Detection {
	d := &Detection{}
	label := make(map[string]*Label, len(labels))
	for i := range labels {
		l := &labels[i]
		label[l.CustomerID] = l
		d.Customers++
		if l.Churned {
			d.Churners++
			if l.Archetype != ArchetypeSilent {
				d.DetectableChurners++
			}
		} else {
			d.Stable++
		}
	}
	first := map[string]time.Time{}
	rules := map[string]*RuleDetection{}
	for _, a := range alerts {
		l := label[a.GetCustomerId()]
		if l == nil {
			d.Unlabelled++
			continue
		}
		if !l.Churned {
			d.FalseAlerts++
		}
		if t := a.GetFirstSignalAt(); t != nil {
			if f, ok := first[l.CustomerID]; !ok || t.AsTime().Before(f) {
				first[l.CustomerID] = t.AsTime()
			}
		} else if _, ok := first[l.CustomerID]; !ok {
			first[l.CustomerID] = time.Time{}
		}
		seen := map[string]bool{}
		for i, r := range a.GetReasons() {
			id := r.GetRuleId()
			if seen[id] {
				continue
			}
			seen[id] = true
			rd := rules[id]
			if rd == nil {
				rd = &RuleDetection{Rule: id}
				rules[id] = rd
			}
			rd.Alerts++
			if i == 0 {
				rd.FirstReason++
			}
			if l.Churned {
				rd.True++
			} else {
				rd.False++
			}
		}
	}

	arch := map[string]*ArchetypeDetection{}
	archLeads := map[string][]float64{}
	var leads, detectableLeads []float64
	for i := range labels {
		l := &labels[i]
		ad := arch[l.Archetype]
		if ad == nil {
			ad = &ArchetypeDetection{Archetype: l.Archetype, Churned: l.Churned}
			arch[l.Archetype] = ad
		}
		ad.Customers++
		f, alerted := first[l.CustomerID]
		if !alerted {
			continue
		}
		d.Alerted++
		ad.Alerted++
		if !l.Churned {
			continue
		}
		d.TruePositives++
		if !f.IsZero() && f.Before(l.ChurnDate.Add(Grace)) {
			lead := l.ChurnDate.Sub(f).Hours() / 24
			d.Detected++
			ad.Detected++
			if l.Archetype != ArchetypeSilent {
				d.DetectedDetectable++
				detectableLeads = append(detectableLeads, lead)
			}
			leads = append(leads, lead)
			archLeads[l.Archetype] = append(archLeads[l.Archetype], lead)
		}
	}
	d.Precision = ratio(d.TruePositives, d.Alerted)
	d.Recall = ratio(d.Detected, d.Churners)
	d.RecallDetectable = ratio(d.DetectedDetectable, d.DetectableChurners)
	d.MedianLeadDaysDetectable = median(detectableLeads)
	d.MedianLeadDays = median(leads)
	if end.After(start) {
		d.Months = end.Sub(start).Hours() / 24 / daysPerMonth
	}
	if d.Stable > 0 && d.Months > 0 {
		d.FalseAlertsPer1000StableMonth = float64(d.FalseAlerts) * 1000 / float64(d.Stable) / d.Months
	}
	for _, rd := range rules {
		rd.Precision = ratio(rd.True, rd.Alerts)
		d.ByRule = append(d.ByRule, *rd)
	}
	sort.Slice(d.ByRule, func(i, j int) bool { return d.ByRule[i].Rule < d.ByRule[j].Rule })
	for _, ad := range arch {
		if ad.Churned {
			ad.Recall = ratio(ad.Detected, ad.Customers)
			ad.MedianLeadDays = median(archLeads[ad.Archetype])
		}
		d.ByArchetype = append(d.ByArchetype, *ad)
	}
	sort.Slice(d.ByArchetype, func(i, j int) bool { return d.ByArchetype[i].Archetype < d.ByArchetype[j].Archetype })
	return d
}

func ratio(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
