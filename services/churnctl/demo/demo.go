// Package demo streams a simulated bank through a churnwatch stack and
// shows the alerts as they arrive, then a detection summary: `churnwatch
// demo` and `make demo`.
package demo

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/backtest"
	"github.com/churnwatch/churnwatch/services/churnctl/cli"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
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
		custs = append(custs, backtest.IncomingCustomer(c))
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
	go w.watch(sctx, ac)

	start := time.Now()
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
		events = events[:0]
		return nil
	}
	for _, e := range bank.Events {
		events = append(events, backtest.IncomingEvent(e))
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
	if err := WaitCaughtUp(ctx, st, 5*time.Minute); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	stopWatch()

	alerts, err := listAll(ctx, cwv1.NewAlertServiceClient(ac))
	if err != nil {
		return nil, err
	}
	sum := summarize(bank, alerts)
	sum.Events = accepted
	sum.Elapsed = elapsed
	sum.EventsPerSecond = float64(accepted) / elapsed.Seconds()
	sum.Print(out)
	return sum, nil
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

type watcher struct {
	mu        sync.Mutex
	out       io.Writer
	max       int
	shown     int
	seen      int
	last      time.Time
	rulesSeen map[string]bool
}

func newWatcher(out io.Writer, max int) *watcher {
	return &watcher{out: out, max: max, rulesSeen: map[string]bool{}}
}

// watch prints, as the stream delivers them, the first alerts, the first
// alert of every rule and every alert that becomes CRITICAL, up to max
// lines, then a running count.
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
		switch {
		case w.shown < w.max && (w.shown < 8 || newRule || critical):
			w.shown++
			prefix := "new"
			if !created {
				prefix = "up "
			}
			fmt.Fprintln(w.out, prefix+Line(u.Alert))
		case time.Since(w.last) > 2*time.Second:
			w.last = time.Now()
			fmt.Fprintf(w.out, "  … %d alerts so far\n", w.seen)
		}
		w.mu.Unlock()
	}
}

// Line renders an alert on one line: severity, customer, tier, reasons, action.
func Line(a *cwv1.Alert) string {
	var reasons []string
	for _, r := range a.Reasons {
		reasons = append(reasons, fmt.Sprintf("%s %s (threshold %s %s)", r.RuleId, r.Observed, r.Threshold, r.Unit))
	}
	sev := strings.TrimPrefix(a.Severity.String(), "SEVERITY_")
	tier := strings.TrimPrefix(a.Tier.String(), "TIER_")
	when := ""
	if a.FirstSignalAt != nil {
		when = a.FirstSignalAt.AsTime().Format("2006-01-02")
	}
	return fmt.Sprintf("  %s %-8s %-8s %-14s %s → %s", when, sev, a.CustomerId, tier, strings.Join(reasons, "; "), a.RecommendedAction)
}

// summarize scores the live alerts with the back-test's detection maths,
// so the demo and `churnctl backtest` report the same figures.
func summarize(bank *simulate.Bank, alerts []*cwv1.Alert) *Summary {
	s := &Summary{Customers: len(bank.Customers), AlertsByRule: map[string]int{}, AlertsBySeverity: map[string]int{}}
	for _, a := range alerts {
		s.Alerts++
		s.AlertsBySeverity[strings.TrimPrefix(a.Severity.String(), "SEVERITY_")]++
		for _, r := range a.Reasons {
			s.AlertsByRule[r.RuleId]++
		}
	}
	_, labels := backtest.FromBank(&simulate.Bank{Labels: bank.Labels})
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
	fmt.Fprintf(w, "alerts: %d  by severity: %s\n", s.Alerts, fmtCounts(s.AlertsBySeverity))
	fmt.Fprintf(w, "reasons by rule: %s\n", fmtCounts(s.AlertsByRule))
	fmt.Fprintf(w, "detection: precision %.2f, recall %.2f (alert before churn date + 30 days), median lead time %.0f days before churn\n", s.Precision, s.Recall, s.MedianLeadDays)
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
