// Package demo streams a simulated bank through a churnwatch stack and
// shows the alerts as they arrive (in event-time order), the events'
// progress, then a detection summary, how to open the console and what to
// try next: `churnwatch demo` and `make demo`.
package demo

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
	"github.com/churnwatch/churnwatch/services/churnctl/simfeed"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
)

// Options configure a demo run.
type Options struct {
	Customers int
	Months    int
	Seed      int64
	// LiveLines is how many alerts are printed one by one before the demo
	// switches to a progress line.
	LiveLines int
	Out       io.Writer
	Logs      io.Writer
	Dir       string
	// Stack, when set, is used instead of starting one.
	Stack *devstack.Stack
	// Serve keeps the stack and the console running after the summary
	// until ctx ends (churnwatch demo --serve), with dev.env written.
	Serve bool
	// Progress is how often the event progress line is printed (default 1s).
	Progress time.Duration
}

// Summary is what a demo run found.
type Summary struct {
	Customers, Events, Churners int
	Alerts                      int
	AlertsByRule                map[string]int
	AlertsBySeverity            map[string]int
	TruePositives               int
	Precision, Recall           float64
	MedianLeadDays              float64
	// Detection is the full scoring (per rule, per archetype).
	Detection       *backtest.Detection
	Elapsed         time.Duration
	EventsPerSecond float64
	// SampleCustomer has one of the most severe alerts (for churnctl risk).
	SampleCustomer string
}

// WaitCaughtUp returns once every consumer group of the stack's rules and
// alerts services has processed and committed everything (churnctl wait).
func WaitCaughtUp(ctx context.Context, st *devstack.Stack, timeout time.Duration) error {
	tok, err := st.Token("churnwatch-wait", auth.RoleOps, "", time.Hour)
	if err != nil {
		return err
	}
	env := st.Env()
	env["CHURNWATCH_TOKEN"] = tok
	return cli.WaitCaughtUp(ctx, &cli.Env{Getenv: func(k string) string { return env[k] }}, timeout, 100*time.Millisecond)
}

// Run runs the demo.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Customers == 0 {
		o.Customers = 3000
	}
	if o.Months == 0 {
		o.Months = 12
	}
	if o.LiveLines == 0 {
		o.LiveLines = 40
	}
	if o.Progress == 0 {
		o.Progress = time.Second
	}
	out := o.Out
	st := o.Stack
	if st == nil {
		var err error
		st, err = devstack.Start(ctx, devstack.Options{Dir: o.Dir, AnyPort: true, Logs: o.Logs})
		if err != nil {
			return nil, fmt.Errorf("start stack: %w", err)
		}
		defer st.Close()
	}
	fmt.Fprintf(out, "churnwatch demo: broker %s, redis %s, services %s / %s / %s\n",
		strings.Join(st.Brokers, ","), st.RedisAddr, st.Ingester.GRPCAddr(), st.Rules.GRPCAddr(), st.Alerts.GRPCAddr())

	bank, err := simulate.Generate(simulate.Config{Customers: o.Customers, Months: o.Months, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "simulated bank: %d customers, %d events over %d months (seed %d)\n", len(bank.Customers), len(bank.Events), o.Months, o.Seed)
	fmt.Fprintln(out, Legend)

	ingestTok, _ := st.Token("demo-core-banking", auth.RoleIngest, "", time.Hour)
	opsTok, _ := st.Token("demo-ops", auth.RoleOps, "", time.Hour)
	ic, err := client.Dial(st.Ingester.GRPCAddr(), ingestTok, st.ClientTLS())
	if err != nil {
		return nil, err
	}
	defer ic.Close()
	ingest := cwv1.NewIngestServiceClient(ic)

	var custs []*cwv1.IncomingCustomer
	for _, c := range bank.Customers {
		custs = append(custs, simfeed.IncomingCustomer(c))
	}
	for i := 0; i < len(custs); i += 5000 {
		resp, err := ingest.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: custs[i:min(i+5000, len(custs))]})
		if err != nil {
			return nil, fmt.Errorf("import customers: %w", err)
		}
		if resp.Rejected > 0 {
			return nil, fmt.Errorf("import customers: %d rejected: %v", resp.Rejected, resp.Results[0].Reason)
		}
	}
	if err := WaitCaughtUp(ctx, st, time.Minute); err != nil {
		return nil, err
	}

	ac, err := client.Dial(st.Alerts.GRPCAddr(), opsTok, st.ClientTLS())
	if err != nil {
		return nil, err
	}
	defer ac.Close()
	w := newWatcher(out, o.LiveLines)
	sctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched := make(chan struct{})
	go func() { defer close(watched); w.watch(sctx, ac) }()

	start := time.Now()
	rc, err := client.Dial(st.Rules.GRPCAddr(), opsTok, st.ClientTLS())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	prog := &progress{out: out, total: len(bank.Events), start: start, w: w, status: cwv1.NewStatusServiceClient(rc)}
	pctx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	progressDone := make(chan struct{})
	go func() { defer close(progressDone); prog.run(pctx, o.Progress) }()
	events := make([]*cwv1.IncomingEvent, 0, 5000)
	var accepted int
	flush := func() error {
		if len(events) == 0 {
			return nil
		}
		// A client of the ingester: back off while it is unavailable or
		// rate-limits us (eventIds make the retry safe).
		var resp *cwv1.PublishEventsResponse
		err := cli.Retrying(ctx, time.Minute, func(ctx context.Context) (err error) {
			resp, err = ingest.PublishEvents(ctx, &cwv1.PublishEventsRequest{Events: events})
			return err
		})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if resp.Rejected > 0 {
			for _, r := range resp.Results {
				if r.Status == cwv1.RecordStatus_RECORD_STATUS_REJECTED {
					return fmt.Errorf("simulated event %s rejected: %s", r.Id, r.Reason)
				}
			}
		}
		accepted += int(resp.Accepted)
		prog.sent.Add(int64(len(events)))
		events = events[:0]
		return nil
	}
	for _, e := range bank.Events {
		events = append(events, simfeed.IncomingEvent(e))
		if len(events) == cap(events) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	last := bank.Events[len(bank.Events)-1].OccurredAt[:10]
	if _, err := ingest.CloseBusinessDay(ctx, &cwv1.CloseBusinessDayRequest{Date: last}); err != nil {
		return nil, fmt.Errorf("close day: %w", err)
	}
	prog.mu.Lock()
	fmt.Fprintf(out, "all %d events streamed in %s; rules and alerts catching up…\n", accepted, time.Since(start).Round(100*time.Millisecond))
	prog.mu.Unlock()
	if err := WaitCaughtUp(ctx, st, 5*time.Minute); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	stopProgress()
	<-progressDone
	stopWatch()
	<-watched
	w.flushAll()

	alerts, err := listAll(ctx, cwv1.NewAlertServiceClient(ac))
	if err != nil {
		return nil, err
	}
	sum := summarize(bank, alerts)
	sum.Events = accepted
	sum.Elapsed = elapsed
	sum.EventsPerSecond = float64(accepted) / elapsed.Seconds()
	sum.Print(out)

	mgr, branch := busiestManager(bank, alerts)
	fmt.Fprintln(out)
	if o.Serve {
		envFile, err := st.WriteEnvFile()
		if err != nil {
			return sum, err
		}
		PrintSignIn(out, st.ConsoleURL(), mgr, branch)
		printNext(out, envFile, mgr, sum.SampleCustomer)
		fmt.Fprintln(out, "\nThe stack and the console keep running; Ctrl-C stops them.")
		<-ctx.Done()
		fmt.Fprintln(out, "stopping…")
		return sum, nil
	}
	fmt.Fprintf(out, "console: the demo's stack stops now; `churnwatch demo --serve` (make demo) keeps it and the console running, to sign in as %s (manager with the most alerts) or the head of %s.\n", mgr, branch)
	printNext(out, "", mgr, sum.SampleCustomer)
	return sum, nil
}

// busiestManager is the manager with the most alerts and that manager's
// branch (the sign-in links of the closing lines).
func busiestManager(bank *simulate.Bank, alerts []*cwv1.Alert) (manager, branch string) {
	n := map[string]int{}
	for _, a := range alerts {
		if a.ManagerId != "" {
			n[a.ManagerId]++
		}
	}
	for m, c := range n {
		if c > n[manager] || (c == n[manager] && m < manager) {
			manager = m
		}
	}
	for _, c := range bank.Customers {
		if c.ManagerID == manager || (manager == "" && c.BranchID != "") {
			if manager == "" {
				manager = c.ManagerID
			}
			return manager, c.BranchID
		}
	}
	return cmp.Or(manager, "rm-001"), "br-01"
}

// printNext is the closing "what to try next".
func printNext(w io.Writer, envFile, manager, customer string) {
	fmt.Fprintln(w, "\nwhat to try next:")
	if envFile != "" {
		fmt.Fprintf(w, "  . %s                      # this stack's addresses and an admin token, then:\n", envFile)
	} else {
		fmt.Fprintln(w, "  churnwatch dev & . .dev/dev.env          # a stack of your own (make dev), then:")
	}
	fmt.Fprintf(w, "  churnctl alerts list --manager %s --sort severity   # %s's inbox, most severe first\n", manager, manager)
	if customer != "" {
		fmt.Fprintf(w, "  churnctl risk %s                       # one customer's stage, score and every signal explained\n", customer)
	}
	fmt.Fprintln(w, "  churnctl watch                           # the live alert stream (resumable)")
	fmt.Fprintln(w, "  churnctl simulate --customers 2000 --months 12 --seed 1 --out sim/ && churnctl backtest --customers sim/customers.ndjson --events sim/events.ndjson --labels sim/labels.ndjson")
	fmt.Fprintln(w, "                                           # the same engine offline: precision, recall, lead time")
	fmt.Fprintln(w, "  churnctl thresholds show                 # the live thresholds; propose a change with its back-test (docs/rules.md)")
}

func listAll(ctx context.Context, c cwv1.AlertServiceClient) ([]*cwv1.Alert, error) {
	var all []*cwv1.Alert
	tok := ""
	for {
		resp, err := c.ListAlerts(ctx, &cwv1.ListAlertsRequest{PageSize: 500, PageToken: tok})
		if err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		all = append(all, resp.Alerts...)
		if resp.NextPageToken == "" {
			return all, nil
		}
		tok = resp.NextPageToken
	}
}

// Legend explains the alert lines.
const Legend = "legend: new = a customer's first alert · up = an open alert whose severity rose · then the event date of the signal, severity, customer, tier, each reason as observed vs when it fires, and the recommended action"

// line is an alert line waiting to be printed in event-time order.
type line struct {
	at   time.Time
	text string
}

type watcher struct {
	mu        sync.Mutex
	out       io.Writer
	max       int
	shown     int
	seen      int
	rulesSeen map[string]bool
	// held are selected lines not printed yet (flush prints them in
	// event-time order once the pipeline is past their time).
	held []line
}

func newWatcher(out io.Writer, max int) *watcher {
	return &watcher{out: out, max: max, rulesSeen: map[string]bool{}}
}

// flush prints, in event-time order, the held lines up to wm (all when
// wm is zero).
func (w *watcher) flush(wm time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sort.SliceStable(w.held, func(i, j int) bool { return w.held[i].at.Before(w.held[j].at) })
	n := 0
	for n < len(w.held) && (wm.IsZero() || !w.held[n].at.After(wm)) {
		fmt.Fprintln(w.out, w.held[n].text)
		n++
	}
	w.held = w.held[n:]
}

// flushAll prints every held line (the pipeline has caught up).
func (w *watcher) flushAll() { w.flush(time.Time{}) }

// alerts is the number of alerts created so far.
func (w *watcher) alerts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// watch selects, as the stream delivers them, the first alerts, the first
// alert of every rule and every alert that becomes CRITICAL, up to max
// lines; the others are counted on the progress line.
func (w *watcher) watch(ctx context.Context, conn *grpc.ClientConn) {
	stream, err := cwv1.NewAlertServiceClient(conn).Subscribe(ctx, &cwv1.SubscribeRequest{})
	if err != nil {
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		u := resp.GetUpdate()
		created := u.GetChange() == cwv1.AlertChange_ALERT_CHANGE_CREATED
		if !created && u.GetChange() != cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED {
			continue
		}
		w.mu.Lock()
		if created {
			w.seen++
		}
		newRule := false
		if n := len(u.Alert.Reasons); n > 0 && !w.rulesSeen[u.Alert.Reasons[n-1].RuleId] {
			w.rulesSeen[u.Alert.Reasons[n-1].RuleId], newRule = true, true
		}
		critical := u.Alert.Severity == cwv1.Severity_SEVERITY_CRITICAL
		if w.shown < w.max && (w.shown < 8 || newRule || critical) {
			w.shown++
			prefix, at := "new", u.Alert.GetFirstSignalAt().AsTime()
			if !created {
				prefix, at = "up ", u.Alert.GetLastSignalAt().AsTime()
			}
			w.held = append(w.held, line{at: at, text: prefix + Line(u.Alert, at)})
		}
		w.mu.Unlock()
	}
}

// progress prints, every tick, the events streamed so far, the rate and
// the time left (then how far the pipeline got in event time), and lets
// the watcher print the alert lines the pipeline is past: a line waits
// until every partition of the rules service has scored events later
// than it, as seen hold ago (signals take a moment more to reach the
// alerts service and the stream).
type progress struct {
	mu     sync.Mutex // one line at a time
	out    io.Writer
	total  int
	start  time.Time
	sent   atomic.Int64
	w      *watcher
	status cwv1.StatusServiceClient
	marks  []mark
}

type mark struct{ wall, clock time.Time }

const hold = 1500 * time.Millisecond

func (p *progress) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.tick(ctx)
		}
	}
}

func (p *progress) tick(ctx context.Context) {
	now := time.Now()
	clock := p.pipelineClock(ctx)
	if !clock.IsZero() {
		p.marks = append(p.marks, mark{now, clock})
	}
	var wm time.Time
	for len(p.marks) > 0 && now.Sub(p.marks[0].wall) >= hold {
		wm = p.marks[0].clock
		p.marks = p.marks[1:]
	}
	if !wm.IsZero() {
		p.w.flush(wm)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	done := int(p.sent.Load())
	if done < p.total {
		rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3)
		eta := "ETA …"
		if rate > 0 {
			eta = "ETA " + time.Duration(float64(p.total-done)/rate*float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(p.out, "  events %d/%d streamed (%.0f%%) · %.0f events/s · %s · scored up to %s · %d alerts so far\n",
			done, p.total, 100*float64(done)/float64(p.total), rate, eta, day(clock), p.w.alerts())
		return
	}
	fmt.Fprintf(p.out, "  scored up to %s · %d alerts so far\n", day(clock), p.w.alerts())
}

func day(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Format("2006-01-02")
}

// pipelineClock is the earliest event-time clock over the rules service's
// partitions of the events topic (zero when unknown).
func (p *progress) pipelineClock(ctx context.Context) time.Time {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := p.status.GetStatus(ctx, &cwv1.GetStatusRequest{})
	if err != nil {
		return time.Time{}
	}
	var min time.Time
	for _, c := range st.Consumers {
		for _, part := range c.Partitions {
			if part.Clock == nil {
				continue
			}
			if t := part.Clock.AsTime(); min.IsZero() || t.Before(min) {
				min = t
			}
		}
	}
	return min
}

// Line renders an alert on one line: event date, severity, customer, tier,
// reasons with their figures, action.
func Line(a *cwv1.Alert, at time.Time) string {
	var reasons []string
	for _, r := range a.Reasons {
		reasons = append(reasons, r.RuleId+": "+Figure(r))
	}
	sev := strings.TrimPrefix(a.Severity.String(), "SEVERITY_")
	tier := strings.TrimPrefix(a.Tier.String(), "TIER_")
	when := at.Format("2006-01-02")
	return fmt.Sprintf(" %s %-8s %-8s %-14s %s → %s", when, sev, a.CustomerId, tier, strings.Join(reasons, "; "), a.RecommendedAction)
}

// Figure says what a reason's observed value is, in its unit, and on which
// side of the threshold the rule fires: "0.26 of the usual activity (fires
// at ≤ 0.50)".
func Figure(r *cwv1.Explanation) string {
	obs, th := r.Observed, r.Threshold
	switch {
	case r.RuleId == "activity.drop":
		return fmt.Sprintf("%s of the usual activity (fires at ≤ %s)", obs, th)
	case r.RuleId == "dormancy.declining" || r.RuleId == "dormancy.churned":
		return fmt.Sprintf("%s days without customer activity (fires at ≥ %s)", obs, th)
	case r.RuleId == "salary.stopped":
		return fmt.Sprintf("%s days since the last salary (fires at ≥ %s)", obs, th)
	case r.RuleId == "winback":
		return fmt.Sprintf("active again after %s days (informational)", obs)
	case r.RuleId == "closure":
		return "an account closed or a product cancelled (fires at once)"
	case r.Unit == "complaints":
		return fmt.Sprintf("%s complaints in 30 days (fires at ≥ %s)", obs, th)
	case r.Unit == "sentiment":
		return fmt.Sprintf("complaint sentiment %s (fires at ≤ %s)", obs, th)
	case r.RuleId == "outflow.large" && r.Unit == "ratio":
		return fmt.Sprintf("%s of the balance sent to another bank at once (fires at ≥ %s)", obs, th)
	case r.RuleId == "outflow.large":
		return fmt.Sprintf("%s %s sent to another bank at once (fires at ≥ %s)", obs, r.Unit, th)
	case r.RuleId == "outflow.drain":
		return fmt.Sprintf("%s %s sent to other banks in 7 days (fires at ≥ %s %s, the set share of the usual balance)", obs, r.Unit, th, r.Unit)
	}
	return fmt.Sprintf("%s %s (threshold %s)", obs, r.Unit, th)
}

// summarize scores the live alerts with the back-test's detection maths,
// so the demo and `churnctl backtest` report the same figures.
func summarize(bank *simulate.Bank, alerts []*cwv1.Alert) *Summary {
	s := &Summary{Customers: len(bank.Customers), AlertsByRule: map[string]int{}, AlertsBySeverity: map[string]int{}}
	best := cwv1.Severity_SEVERITY_UNSPECIFIED
	for _, a := range alerts {
		if a.Severity > best || (a.Severity == best && a.CustomerId < s.SampleCustomer) {
			best, s.SampleCustomer = a.Severity, a.CustomerId
		}
		s.Alerts++
		s.AlertsBySeverity[strings.TrimPrefix(a.Severity.String(), "SEVERITY_")]++
		for _, r := range a.Reasons {
			s.AlertsByRule[r.RuleId]++
		}
	}
	_, labels := simfeed.FromBank(&simulate.Bank{Labels: bank.Labels})
	var start, end time.Time
	if n := len(bank.Events); n > 0 {
		start, _ = time.Parse(time.RFC3339, bank.Events[0].OccurredAt)
		last, _ := time.Parse(time.RFC3339, bank.Events[n-1].OccurredAt)
		end = time.Date(last.Year(), last.Month(), last.Day()+1, 0, 0, 0, 0, time.UTC)
	}
	d := backtest.Score(alerts, labels, start, end)
	s.Detection = d
	s.Churners = d.Churners
	s.TruePositives = d.TruePositives
	s.Precision, s.Recall, s.MedianLeadDays = d.Precision, d.Recall, d.MedianLeadDays
	return s
}

// Print writes the closing summary.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "\n── summary ─────────────────────────────────────────────\n")
	fmt.Fprintf(w, "events through the pipeline: %d in %s (%.0f events/s on the embedded broker)\n", s.Events, s.Elapsed.Round(time.Millisecond), s.EventsPerSecond)
	fmt.Fprintf(w, "customers: %d, of whom labelled churners: %d\n", s.Customers, s.Churners)
	fmt.Fprintf(w, "alerts: %d  by severity: %s\n", s.Alerts, fmtSeverities(s.AlertsBySeverity))
	fmt.Fprintf(w, "reasons by rule: %s\n", fmtCounts(s.AlertsByRule))
	fmt.Fprintf(w, "detection: precision %.2f, recall %.2f (alert before churn date + 30 days), median lead time %.0f days before churn\n", s.Precision, s.Recall, s.MedianLeadDays)
}

// severities, most severe first.
var severities = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW"}

func fmtSeverities(m map[string]int) string {
	var parts []string
	for _, k := range severities {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	for k, n := range m {
		if !slices.Contains(severities, k) {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	return strings.Join(parts, ", ")
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// PrintSignIn tells how to open the console in dev mode: a /dev/login link
// for a manager and one for a branch head.
func PrintSignIn(w io.Writer, consoleURL, manager, branch string) {
	fmt.Fprintf(w, "console: %s\n", consoleURL)
	fmt.Fprintf(w, "  sign in as manager %s:      %s/dev/login?sub=%s&role=manager\n", manager, consoleURL, url.QueryEscape(manager))
	fmt.Fprintf(w, "  sign in as head of branch %s: %s/dev/login?sub=head-%s&role=branch_head&branch=%s\n", branch, consoleURL, url.QueryEscape(branch), url.QueryEscape(branch))
	fmt.Fprintf(w, "  (dev mode only: any sub, role manager|branch_head|ops|admin, branch for branch heads)\n")
}
