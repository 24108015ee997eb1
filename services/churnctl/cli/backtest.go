package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

func init() {
	Register(&Command{Name: "backtest", Args: "--customers F --events F [--thresholds F] [--labels F] [--compare F] [--until YYYY-MM-DD] [--json]",
		Summary: "replay a history offline through the same validation, rules and alert merge; with labels: precision, recall, lead time", Run: backtestCmd})
}

// BacktestSummary is the last JSON line of `churnctl backtest --json`.
type BacktestSummary struct {
	Thresholds       string               `json:"thresholds"` // "defaults" or the file
	ThresholdVersion int64                `json:"thresholdVersion"`
	Start            string               `json:"start,omitempty"`
	End              string               `json:"end,omitempty"`
	Counts           backtest.Counts      `json:"counts"`
	Signals          int                  `json:"signals"`
	SignalsByRule    map[string]int       `json:"signalsByRule"`
	Alerts           int                  `json:"alerts"`
	AlertsByRule     map[string]int       `json:"alertsByRule"`
	AlertsBySeverity map[string]int       `json:"alertsBySeverity"`
	Errors           []backtest.Rejection `json:"errors"`
	Detection        *backtest.Detection  `json:"detection,omitempty"`
	ElapsedMS        int64                `json:"elapsedMs"`
}

type backtestRun struct {
	name string
	res  *backtest.Result
	det  *backtest.Detection
	took time.Duration
}

func (r *backtestRun) summary() BacktestSummary {
	s := BacktestSummary{Thresholds: r.name, ThresholdVersion: r.res.ThresholdVersion, Counts: r.res.Counts, Signals: r.res.Signals,
		SignalsByRule: r.res.SignalsByRule, Alerts: len(r.res.Alerts), AlertsByRule: map[string]int{}, AlertsBySeverity: map[string]int{},
		Errors: r.res.Rejected, Detection: r.det, ElapsedMS: r.took.Milliseconds()}
	if s.Errors == nil {
		s.Errors = []backtest.Rejection{}
	}
	if !r.res.Start.IsZero() {
		s.Start, s.End = r.res.Start.UTC().Format(time.RFC3339), r.res.End.UTC().Format(time.RFC3339)
	}
	for _, a := range r.res.Alerts {
		s.AlertsBySeverity[alertShort(a.Severity.String(), "SEVERITY_")]++
		for _, id := range alertRuleIDs(a) {
			s.AlertsByRule[id]++
		}
	}
	return s
}

// historyFlags are the flags that name a history to replay: `backtest`
// and `thresholds propose` read it the same way.
type historyFlags struct {
	customers, events, labels, until, mapping, data *string
}

func addHistoryFlags(fs *flag.FlagSet) *historyFlags {
	return &historyFlags{
		customers: fs.String("customers", "", "customer profiles, NDJSON (required)"),
		events:    fs.String("events", "", "account events, NDJSON or CSV; - for stdin (required)"),
		labels:    fs.String("labels", "", "labels.ndjson of churnctl simulate: adds precision, recall and lead time"),
		until:     fs.String("until", "", "advance the clock to the end of this day (YYYY-MM-DD) instead of the last event's"),
		mapping:   fs.String("mapping", "", "read a bank's own export through this mapping (YAML) instead of --customers and --events"),
		data:      fs.String("data", "", "with --mapping: the export's directory (default: the mapping's)"),
	}
}

// given reports whether any flag naming a history was set.
func (h *historyFlags) given() bool {
	return *h.customers != "" || *h.events != "" || *h.mapping != "" || *h.labels != "" || *h.until != "" || *h.data != ""
}

// replayer is a history read from the files the flags name, ready to be
// replayed under one or more threshold sets.
type replayer struct {
	hist   *backtest.History
	labels []backtest.Label
	opts   backtest.Options
	// described names what was read, for a proposal's back-test.
	described string
}

func (h *historyFlags) load(env *Env) (*replayer, error) {
	switch {
	case *h.mapping != "" && (*h.customers != "" || *h.events != ""):
		return nil, Usagef("--mapping replaces --customers and --events: give one or the other")
	case *h.mapping == "" && (*h.customers == "" || *h.events == ""):
		return nil, Usagef("--customers F and --events F are required (or --mapping M.yaml [--data DIR])")
	}
	r := &replayer{opts: backtest.Options{HomeBank: env.Getenv("CHURNWATCH_HOME_BANK")}}
	if *h.until != "" {
		d, err := time.Parse(time.DateOnly, *h.until)
		if err != nil {
			return nil, Usagef("--until %q: want YYYY-MM-DD", *h.until)
		}
		r.opts.Until = d.AddDate(0, 0, 1)
	}
	var err error
	if *h.mapping != "" {
		r.hist, err = readMappedInput(*h.mapping, *h.data)
		r.described = "mapping " + *h.mapping
	} else {
		r.hist, err = readBacktestInput(env, *h.customers, *h.events)
		r.described = fmt.Sprintf("customers %s, events %s", *h.customers, *h.events)
	}
	if err != nil {
		return nil, err
	}
	if *h.labels != "" {
		f, err := os.Open(*h.labels)
		if err != nil {
			return nil, &ExitError{Code: ExitFailure, Err: err}
		}
		r.labels, err = backtest.ReadLabels(f)
		f.Close()
		if err != nil {
			return nil, &ExitError{Code: ExitFailure, Err: err}
		}
		r.described += ", labels " + *h.labels
	}
	return r, nil
}

// run replays the history under th.
func (r *replayer) run(name string, th *engine.Thresholds) (*backtestRun, error) {
	o := r.opts
	o.Thresholds = th
	start := time.Now()
	res, err := r.hist.Replay(o)
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	out := &backtestRun{name: name, res: res, took: time.Since(start)}
	if r.labels != nil {
		out.det = backtest.Score(res.Alerts, r.labels, res.Start, res.End)
	}
	return out, nil
}

func backtestCmd(_ context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "backtest")
	hf := addHistoryFlags(fs)
	thresholdsFile := fs.String("thresholds", "", "threshold set in force: RULE.FIELD[.TIER]=VALUE lines or `thresholds show --json` output (default: SPEC defaults)")
	compareFile := fs.String("compare", "", "a proposed threshold set to compare with the current one (same formats as --thresholds)")
	asJSON := fs.Bool("json", false, "every alert as one JSON object per line (as alerts list --json), then one summary object")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return Usagef("backtest takes flags only, not %q", pos[0])
	}
	current, currentName, err := readThresholdsFile(*thresholdsFile)
	if err != nil {
		return err
	}
	var proposed *engine.Thresholds
	if *compareFile != "" {
		if proposed, _, err = readThresholdsFile(*compareFile); err != nil {
			return err
		}
	}
	rp, err := hf.load(env)
	if err != nil {
		return err
	}
	cur, err := rp.run(currentName, current)
	if err != nil {
		return err
	}
	var prop *backtestRun
	if proposed != nil {
		if prop, err = rp.run(*compareFile, proposed); err != nil {
			return err
		}
	}

	switch {
	case *asJSON && prop != nil:
		// Alerts of two runs in one stream would be ambiguous: one object.
		err = env.JSON(map[string]BacktestSummary{"current": cur.summary(), "proposed": prop.summary()})
	case *asJSON:
		for _, a := range cur.res.Alerts {
			if err = writeProtoLine(env.Stdout, a); err != nil {
				return err
			}
		}
		err = env.JSON(cur.summary())
	case prop != nil:
		err = printBacktestCompare(env.Stdout, cur, prop)
	default:
		err = printBacktest(env.Stdout, cur)
	}
	if err != nil {
		return err
	}
	if n := cur.res.Counts.Rejected + cur.res.Counts.CustomersRejected; n > 0 {
		return &ExitError{Code: ExitRejected, Err: fmt.Errorf("%d record(s) rejected (listed with their lines above)", n)}
	}
	return nil
}

func readThresholdsFile(name string) (*engine.Thresholds, string, error) {
	if name == "" {
		th := engine.DefaultThresholds()
		return &th, "defaults", nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, "", &ExitError{Code: ExitFailure, Err: err}
	}
	defer f.Close()
	th, err := backtest.ReadThresholds(f)
	if err != nil {
		return nil, "", &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %w", name, err)}
	}
	return &th, name, nil
}

// readMappedInput converts a bank's export with a mapping, exactly as
// `churnctl ingest --mapping` does, into a history.
func readMappedInput(mappingFile, dir string) (*backtest.History, error) {
	out, err := convertWithMapping(mappingFile, dir)
	if err != nil {
		return nil, err
	}
	h := backtest.NewHistory(time.Now())
	for _, r := range out.Customers {
		rec := backtest.Record[*cwv1.IncomingCustomer]{Line: r.Line, Value: r.Value, Err: r.Err}
		if r.Err != nil {
			rec.Err = errors.New(mappedReason(r.File, r.Err))
		}
		h.AddCustomer(rec)
	}
	for _, r := range out.Events {
		rec := backtest.Record[*cwv1.IncomingEvent]{Line: r.Line, Value: r.Value, Err: r.Err}
		if r.Err != nil {
			rec.Err = errors.New(mappedReason(r.File, r.Err))
		}
		h.AddEvent(rec)
	}
	return h, nil
}

// readBacktestInput validates the files record by record into a history
// that both sides of a what-if replay.
func readBacktestInput(env *Env, customersFile, eventsFile string) (*backtest.History, error) {
	if customersFile == "-" && eventsFile == "-" {
		return nil, Usagef("only one of --customers and --events may be stdin")
	}
	h := backtest.NewHistory(time.Now())
	cf, err := openInput(env, customersFile)
	if err != nil {
		return nil, err
	}
	err = h.ReadCustomers(customersFile, cf)
	cf.Close()
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("read %s: %w", customersFile, err)}
	}
	ef, err := openInput(env, eventsFile)
	if err != nil {
		return nil, err
	}
	err = h.ReadEvents(eventsFile, ef)
	ef.Close()
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("read %s: %w", eventsFile, err)}
	}
	return h, nil
}

// maxListedErrors bounds the rejected records the readable report lists;
// --json lists them all.
const maxListedErrors = 20

func printBacktest(w io.Writer, r *backtestRun) error {
	s := r.summary()
	c := s.Counts
	fmt.Fprintf(w, "back-test with thresholds %s (version %d), replayed in %s\n", s.Thresholds, s.ThresholdVersion, r.took.Round(time.Millisecond))
	fmt.Fprintf(w, "customers: %d read, %d rejected; events: %d read, %d accepted, %d duplicates, %d rejected", c.Customers, c.CustomersRejected, c.Events, c.Accepted, c.Duplicates, c.Rejected)
	if c.NotScored > 0 {
		fmt.Fprintf(w, ", %d not scored", c.NotScored)
	}
	if c.UnknownCustomers > 0 {
		fmt.Fprintf(w, "; %d customers without a profile (scored as MASS)", c.UnknownCustomers)
	}
	fmt.Fprintln(w)
	if s.Start != "" {
		fmt.Fprintf(w, "event time: %s … end clock %s\n", s.Start[:10], s.End)
	}
	fmt.Fprintf(w, "signals: %d  (%s)\n", s.Signals, countList(s.SignalsByRule))
	fmt.Fprintf(w, "alerts: %d  by severity: %s\n", s.Alerts, countList(s.AlertsBySeverity))
	fmt.Fprintf(w, "alerts carrying each rule: %s\n", countList(s.AlertsByRule))
	printRejections(w, s.Errors)
	if d := r.det; d != nil {
		printDetection(w, d)
	}
	return nil
}

func printRejections(w io.Writer, errs []backtest.Rejection) {
	if len(errs) == 0 {
		return
	}
	fmt.Fprintf(w, "rejected records: %d\n", len(errs))
	for i, e := range errs {
		if i == maxListedErrors {
			fmt.Fprintf(w, "  … %d more (--json lists all)\n", len(errs)-i)
			break
		}
		what := "event " + e.EventID
		if e.IsCustomer() {
			what = "customer " + e.CustomerID
		}
		fmt.Fprintf(w, "  line %d %s: %s\n", e.Line, what, e.Reason)
	}
}

func printDetection(w io.Writer, d *backtest.Detection) {
	fmt.Fprintf(w, "\ndetection against labels: %d customers, %d churners, %d stable", d.Customers, d.Churners, d.Stable)
	if d.Unlabelled > 0 {
		fmt.Fprintf(w, " (%d alerts of unlabelled customers ignored)", d.Unlabelled)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  precision %.3f (%d of %d alerted customers churned)\n", d.Precision, d.TruePositives, d.Alerted)
	fmt.Fprintf(w, "  recall    %.3f (%d of %d churners alerted before churn date + %d days)\n", d.Recall, d.Detected, d.Churners, int(backtest.Grace.Hours()/24))
	if d.DetectableChurners != d.Churners {
		fmt.Fprintf(w, "  recall    %.3f of the %d detectable churners (%d silent churners leave with no warning sign), median lead %.1f days\n",
			d.RecallDetectable, d.DetectableChurners, d.Churners-d.DetectableChurners, d.MedianLeadDaysDetectable)
	}
	fmt.Fprintf(w, "  median lead time %.1f days before the churn date\n", d.MedianLeadDays)
	fmt.Fprintf(w, "  false alerts: %d, %.2f per 1,000 stable customers per month (%.1f months)\n", d.FalseAlerts, d.FalseAlertsPer1000StableMonth, d.Months)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  RULE\tALERTS\tOPENED\tCHURNERS\tSTABLE\tPRECISION")
	for _, r := range d.ByRule {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%.3f\n", r.Rule, r.Alerts, r.FirstReason, r.True, r.False, r.Precision)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ARCHETYPE\tCUSTOMERS\tALERTED\tDETECTED\tRECALL\tMEDIAN LEAD")
	for _, a := range d.ByArchetype {
		if !a.Churned {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t-\t-\t-\n", a.Archetype, a.Customers, a.Alerted)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%.3f\t%.1f\n", a.Archetype, a.Customers, a.Alerted, a.Detected, a.Recall, a.MedianLeadDays)
	}
	tw.Flush()
}

func printBacktestCompare(w io.Writer, cur, prop *backtestRun) error {
	a, b := cur.summary(), prop.summary()
	fmt.Fprintf(w, "back-test what-if: current %s (version %d) vs proposed %s\n", a.Thresholds, a.ThresholdVersion, b.Thresholds)
	c := a.Counts
	fmt.Fprintf(w, "events: %d read, %d accepted, %d duplicates, %d rejected; customers %d\n\n", c.Events, c.Accepted, c.Duplicates, c.Rejected, c.Customers)
	row := func(name string, x, y string) { fmt.Fprintf(w, "%-36s %16s %16s\n", name, x, y) }
	row("", "current", "proposed")
	row("alerts", fmt.Sprint(a.Alerts), fmt.Sprint(b.Alerts))
	row("signals", fmt.Sprint(a.Signals), fmt.Sprint(b.Signals))
	for _, sev := range []string{"LOW", "MEDIUM", "HIGH", "CRITICAL"} {
		row("  alerts "+sev, fmt.Sprint(a.AlertsBySeverity[sev]), fmt.Sprint(b.AlertsBySeverity[sev]))
	}
	if cur.det != nil {
		da, db := cur.det, prop.det
		row("precision", fmt.Sprintf("%.3f", da.Precision), fmt.Sprintf("%.3f", db.Precision))
		row("recall", fmt.Sprintf("%.3f", da.Recall), fmt.Sprintf("%.3f", db.Recall))
		row("median lead (days)", fmt.Sprintf("%.1f", da.MedianLeadDays), fmt.Sprintf("%.1f", db.MedianLeadDays))
		row("false alerts /1,000 stable/month", fmt.Sprintf("%.2f", da.FalseAlertsPer1000StableMonth), fmt.Sprintf("%.2f", db.FalseAlertsPer1000StableMonth))
	}
	rules := map[string]bool{}
	for r := range a.AlertsByRule {
		rules[r] = true
	}
	for r := range b.AlertsByRule {
		rules[r] = true
	}
	names := make([]string, 0, len(rules))
	for r := range rules {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		x, y := fmt.Sprint(a.AlertsByRule[r]), fmt.Sprint(b.AlertsByRule[r])
		if cur.det != nil {
			x += fmt.Sprintf(" (p %.2f)", rulePrecision(cur.det, r))
			y += fmt.Sprintf(" (p %.2f)", rulePrecision(prop.det, r))
		}
		row("alerts with "+r, x, y)
	}
	added, dropped := diffAlerted(cur.res.Alerts, prop.res.Alerts)
	fmt.Fprintf(w, "\ncustomers alerted only under the proposed set: %d; only under the current set: %d\n", added, dropped)
	printRejections(w, a.Errors)
	return nil
}

func rulePrecision(d *backtest.Detection, rule string) float64 {
	for _, r := range d.ByRule {
		if r.Rule == rule {
			return r.Precision
		}
	}
	return 0
}

func diffAlerted(cur, prop []*cwv1.Alert) (added, dropped int) {
	in := map[string]bool{}
	for _, a := range cur {
		in[a.CustomerId] = true
	}
	for _, a := range prop {
		if !in[a.CustomerId] {
			added++
		}
		delete(in, a.CustomerId)
	}
	return added, len(in)
}

func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
