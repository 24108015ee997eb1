package demo_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/testkit"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
)

// syncBuffer collects the services' logs from several goroutines.
type syncBuffer = testkit.SyncBuffer

var (
	progressRe = regexp.MustCompile(`(?m)^  events \d+/\d+ streamed \(\d+%\) · \d+ events/s · ETA [0-9hms.…]+ · scored up to \S+ · \d+ alerts so far$`)
	alertRe    = regexp.MustCompile(`(?m)^(new|up ) (\d{4}-\d{2}-\d{2}) (\S+)`)
	severityRe = regexp.MustCompile(`by severity: CRITICAL \d+, HIGH \d+, MEDIUM \d+, LOW \d+`)
	signInRe   = regexp.MustCompile(`sign in as manager (\S+):\s+(http://\S+/dev/login\?sub=\S+&role=manager)`)
	branchRe   = regexp.MustCompile(`sign in as head of branch \S+: (http://\S+/dev/login\?sub=\S+&role=branch_head&branch=\S+)`)
)

// TestDemoExplainsItselfAndServes runs `churnwatch demo --serve` on a
// small bank and reads its terminal output as a new user would: the legend,
// event progress with rate and ETA, alert lines in event-time order with
// figures that say direction and unit, severities most severe first, the
// console's sign-in links, what to try next. The stack then keeps serving:
// the manager's link signs a browser in, and that manager's inbox through
// the console is not empty. Ctrl-C (ctx) ends it.
func TestDemoExplainsItselfAndServes(t *testing.T) {
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		sum *demo.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := demo.Run(ctx, demo.Options{Customers: 300, Months: 12, Seed: 3, Out: out, Dir: t.TempDir(), Serve: true, Progress: 200 * time.Millisecond})
		done <- result{sum, err}
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(out.String(), "Ctrl-C stops them") {
		select {
		case r := <-done:
			t.Fatalf("demo ended before serving: %v\n%s", r.err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not reach serving within 3 minutes:\n%s", out.String())
		}
	}
	text := out.String()
	if !strings.Contains(text, demo.Legend) {
		t.Errorf("no legend line:\n%s", text)
	}
	if !progressRe.MatchString(text) {
		t.Errorf("no event progress line (events, rate, ETA):\n%s", text)
	}
	lines := alertRe.FindAllStringSubmatch(text, -1)
	if len(lines) < 5 {
		t.Fatalf("only %d alert lines:\n%s", len(lines), text)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i][2] < lines[i-1][2] {
			t.Errorf("alert lines out of event-time order: %s after %s", lines[i][0], lines[i-1][0])
		}
	}
	if !strings.Contains(text, "(fires at ≤ 0.50)") && !strings.Contains(text, "(fires at ≥ ") {
		t.Errorf("no figure with its direction:\n%s", text)
	}
	if !severityRe.MatchString(text) {
		t.Errorf("severities not most severe first:\n%s", text)
	}
	next := strings.Index(text, "what to try next:")
	if next < 0 || next < strings.Index(text, "── summary") {
		t.Errorf("no closing 'what to try next' after the summary:\n%s", text)
	}
	m := signInRe.FindStringSubmatch(text)
	b := branchRe.FindStringSubmatch(text)
	if m == nil || b == nil {
		t.Fatalf("no /dev/login links for a manager and a branch head:\n%s", text)
	}

	// The stack still serves: the manager's link signs in, the inbox has alerts.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.Get(m[2])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	base := strings.SplitN(m[2], "/dev/login", 2)[0]
	req, _ := http.NewRequest(http.MethodPost, base+"/rpc/churnwatch.v1.AlertService/ListAlerts", strings.NewReader(`{"pageSize":5}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"alertId"`) || !strings.Contains(string(body), `"managerId":"`+m[1]+`"`) {
		t.Fatalf("%s's inbox through the console: %d %s", m[1], resp.StatusCode, body)
	}

	cancel()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("demo --serve after Ctrl-C: %v", r.err)
		}
		if r.sum.Alerts == 0 {
			t.Fatal("summary counts no alerts")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo --serve did not stop after Ctrl-C")
	}
}

func TestFigureSaysDirectionAndUnit(t *testing.T) {
	for _, c := range []struct {
		r    *cwv1.Explanation
		want string
	}{
		{&cwv1.Explanation{RuleId: "activity.drop", Observed: "0.26", Threshold: "0.5", Unit: "ratio"}, "0.26 of the usual activity (fires at ≤ 0.5)"},
		{&cwv1.Explanation{RuleId: "dormancy.declining", Observed: "91", Threshold: "90", Unit: "days"}, "91 days without customer activity (fires at ≥ 90)"},
		{&cwv1.Explanation{RuleId: "outflow.large", Observed: "12500.00", Threshold: "10000.00", Unit: "EUR"}, "12500.00 EUR sent to another bank at once (fires at ≥ 10000.00)"},
		{&cwv1.Explanation{RuleId: "complaints", Observed: "-0.70", Threshold: "-0.6", Unit: "sentiment"}, "complaint sentiment -0.70 (fires at ≤ -0.6)"},
	} {
		if got := demo.Figure(c.r); got != c.want {
			t.Errorf("Figure(%s) = %q, want %q", c.r.RuleId, got, c.want)
		}
	}
}
