package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

func TestRoleMatrix(t *testing.T) {
	e := start(t, nil)
	e.profile("C1", "rm-1", "br-1", cwv1.Tier_TIER_MASS)
	e.profile("C2", "rm-2", "br-2", cwv1.Tier_TIER_MASS)
	resolveTarget := map[string]string{"manager": "RM", "branch_head": "RB", "ops": "RO", "admin": "RA"}
	for _, c := range resolveTarget {
		mgr := "rm-3"
		if c == "RM" {
			mgr = "rm-1"
		}
		e.profile(c, mgr, "br-1", cwv1.Tier_TIER_MASS)
	}
	e.profilesCaughtUp()
	for _, c := range []string{"C1", "C2", "RM", "RB", "RO", "RA"} {
		e.signal("s-"+c, c, "closure", 70)
	}
	own := e.alertOf("C1", nil).AlertId
	other := e.alertOf("C2", nil).AlertId
	for _, c := range resolveTarget {
		e.alertOf(c, nil)
	}

	type principal struct {
		name, sub string
		role      auth.Role
		branch    string
	}
	principals := []principal{
		{"manager", "rm-1", auth.RoleManager, ""},
		{"branch_head", "bh-1", auth.RoleBranchHead, "br-1"},
		{"ops", "ops-1", auth.RoleOps, ""},
		{"admin", "admin-1", auth.RoleAdmin, ""},
		{"ingest", "ing-1", auth.RoleIngest, ""},
		{"none", "", "", ""},
	}
	until := timestamppb.New(time.Now().Add(48 * time.Hour))
	for _, p := range principals {
		cl := e.client(p.sub, p.role, p.branch)
		ctx := context.Background()
		deny := codes.PermissionDenied
		if p.role == "" {
			deny = codes.Unauthenticated
		}
		allowed := p.role != auth.RoleIngest && p.role != ""
		wantOwn, wantOther := codes.OK, codes.OK
		if !allowed {
			wantOwn, wantOther = deny, deny
		} else if p.role == auth.RoleManager || p.role == auth.RoleBranchHead {
			wantOther = codes.PermissionDenied // C2 is rm-2's, in br-2
		}
		check := func(rpc, target string, want codes.Code, err error) {
			t.Helper()
			if got := status.Code(err); got != want {
				t.Errorf("%s %s on %s: got %v, want %v (%v)", p.name, rpc, target, got, want, err)
			}
		}
		for target, id := range map[string]string{"own": own, "other": other} {
			want := wantOwn
			if target == "other" {
				want = wantOther
			}
			_, err := cl.GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: id})
			check("GetAlert", target, want, err)
			_, err = cl.AcknowledgeAlert(ctx, &cwv1.AcknowledgeAlertRequest{AlertId: id, Note: "on it"})
			check("AcknowledgeAlert", target, want, err)
			_, err = cl.SnoozeAlert(ctx, &cwv1.SnoozeAlertRequest{AlertId: id, Until: until})
			check("SnoozeAlert", target, want, err)
		}
		// Resolve: each allowed role closes its own target; the other
		// manager's alert stays untouchable.
		if allowed {
			_, err := cl.ResolveAlert(ctx, &cwv1.ResolveAlertRequest{AlertId: e.alertOf(resolveTarget[p.name], nil).AlertId, Outcome: cwv1.Outcome_OUTCOME_RETAINED, Note: "kept"})
			check("ResolveAlert", "own", codes.OK, err)
		}
		// Resolving the other manager's alert: denied to the narrowed roles
		// (ops and admin are shown allowed on it by the calls above).
		if wantOther != codes.OK {
			_, err := cl.ResolveAlert(ctx, &cwv1.ResolveAlertRequest{AlertId: other, Outcome: cwv1.Outcome_OUTCOME_RETAINED})
			check("ResolveAlert", "other", wantOther, err)
		}

		lr, err := cl.ListAlerts(ctx, &cwv1.ListAlertsRequest{})
		if allowed {
			check("ListAlerts", "-", codes.OK, err)
			for _, a := range lr.GetAlerts() {
				if p.role == auth.RoleManager && a.ManagerId != "rm-1" || p.role == auth.RoleBranchHead && a.BranchId != "br-1" {
					t.Errorf("%s listed an alert not routed to it: %s", p.name, a.AlertId)
				}
			}
			if len(lr.GetAlerts()) == 0 {
				t.Errorf("%s listed nothing", p.name)
			}
		} else {
			check("ListAlerts", "-", deny, err)
		}
		_, err = cl.GetRulePrecision(ctx, &cwv1.GetRulePrecisionRequest{})
		if allowed {
			check("GetRulePrecision", "-", codes.OK, err)
		} else {
			check("GetRulePrecision", "-", deny, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		st, err := cl.Subscribe(sctx, &cwv1.SubscribeRequest{})
		if err == nil {
			_, err = st.Recv() // allowed callers all have an open alert: the snapshot
		}
		cancel()
		if allowed {
			check("Subscribe", "-", codes.OK, err)
		} else {
			check("Subscribe", "-", deny, err)
		}
	}
	// Precision: four RETAINED closures.
	pr, err := e.admin().GetRulePrecision(context.Background(), &cwv1.GetRulePrecisionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Rules) != 1 || pr.Rules[0].RuleId != "closure" || pr.Rules[0].Retained != 4 || pr.Rules[0].Precision != 1 {
		t.Fatalf("precision: %v", pr.Rules)
	}
}

func TestDeniedAccessLogged(t *testing.T) {
	logs := &syncBuffer{}
	e := startLogged(t, nil, logs)
	e.profile("C1", "rm-1", "br-1", cwv1.Tier_TIER_MASS)
	e.profilesCaughtUp()
	e.signal("s1", "C1", "closure", 70)
	id := e.alertOf("C1", nil).AlertId
	tok := e.keys.Token(t, "rm-2", auth.RoleManager, "")
	_, err := e.client("rm-2", auth.RoleManager, "").AcknowledgeAlert(context.Background(), &cwv1.AcknowledgeAlertRequest{AlertId: id})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("other manager ack: %v", err)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "alert access denied") {
			line = l
		}
	}
	if !strings.Contains(line, `"principal":"rm-2"`) || !strings.Contains(line, `"role":"manager"`) ||
		!strings.Contains(line, `"method":"/churnwatch.v1.AlertService/AcknowledgeAlert"`) || !strings.Contains(line, `"ref":"`+auth.Ref(id)+`"`) {
		t.Fatalf("denial not logged with principal, role, method and the alert's ref: %q", line)
	}
	if strings.Contains(logs.String(), id) {
		t.Fatal("the alert id (which holds the customer id) reached the logs")
	}
	if strings.Contains(logs.String(), tok[:20]) || strings.Contains(logs.String(), "Bearer") {
		t.Fatal("a token reached the logs")
	}
	if a := e.alertOf("C1", nil); a.State != cwv1.AlertState_ALERT_STATE_OPEN || a.Version != 1 {
		t.Fatalf("denied ack changed the alert: %v v%d", a.State, a.Version)
	}
}

func TestRoutingAndReassignment(t *testing.T) {
	e := start(t, nil)
	e.profile("C10", "rm-1", "br-1", cwv1.Tier_TIER_MASS)
	e.profile("C11", "", "br-1", cwv1.Tier_TIER_BASIC) // unassigned
	e.profilesCaughtUp()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rm1, _ := e.client("rm-1", auth.RoleManager, "").Subscribe(ctx, &cwv1.SubscribeRequest{})
	bh, _ := e.client("bh-1", auth.RoleBranchHead, "br-1").Subscribe(ctx, &cwv1.SubscribeRequest{})
	rm2, _ := e.client("rm-2", auth.RoleManager, "").Subscribe(ctx, &cwv1.SubscribeRequest{})
	// Make sure the streams are registered before the alerts exist: each
	// stream sees them either live or in its snapshot, both carry the alert.
	e.signal("s10", "C10", "complaints", 65)
	e.signal("s11", "C11", "salary.stopped", 45)
	a10 := e.alertOf("C10", nil)
	e.alertOf("C11", nil)

	u := recv(t, rm1)
	if u.Alert.CustomerId != "C10" {
		t.Fatalf("rm-1 got %s", u.Alert.CustomerId)
	}
	got := map[string]*cwv1.AlertUpdate{}
	for len(got) < 2 {
		u := recv(t, bh)
		got[u.Alert.CustomerId] = u
	}
	if u := got["C11"]; u.Change == cwv1.AlertChange_ALERT_CHANGE_CREATED && !u.Notify {
		t.Errorf("branch head not notified of an unassigned customer's alert")
	}
	if u := got["C10"]; u.Change == cwv1.AlertChange_ALERT_CHANGE_CREATED && u.Notify {
		t.Errorf("branch head notified of an assigned customer's new alert")
	}
	lr, err := e.client("rm-1", auth.RoleManager, "").ListAlerts(ctx, &cwv1.ListAlertsRequest{})
	if err != nil || len(lr.Alerts) != 1 || lr.Alerts[0].CustomerId != "C10" {
		t.Fatalf("rm-1 list: %v %v", err, lr.GetAlerts())
	}
	lr, err = e.client("bh-1", auth.RoleBranchHead, "br-1").ListAlerts(ctx, &cwv1.ListAlertsRequest{})
	if err != nil || len(lr.Alerts) != 2 {
		t.Fatalf("branch head list: %v %v", err, lr.GetAlerts())
	}

	// The customer moves to rm-2: the open alert follows.
	e.profile("C10", "rm-2", "br-1", cwv1.Tier_TIER_MASS)
	u = recv(t, rm1)
	if u.Change != cwv1.AlertChange_ALERT_CHANGE_REASSIGNED || u.Notify || u.Alert.ManagerId != "rm-2" {
		t.Fatalf("old manager: %v notify=%v manager=%s", u.Change, u.Notify, u.Alert.ManagerId)
	}
	u = recv(t, rm2)
	if u.Change != cwv1.AlertChange_ALERT_CHANGE_REASSIGNED || !u.Notify || u.Alert.AlertId != a10.AlertId {
		t.Fatalf("new manager: %v notify=%v", u.Change, u.Notify)
	}
	if _, err := e.client("rm-1", auth.RoleManager, "").GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: a10.AlertId}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("old manager still sees the alert: %v", err)
	}
	lr, err = e.client("rm-2", auth.RoleManager, "").ListAlerts(ctx, &cwv1.ListAlertsRequest{})
	if err != nil || len(lr.Alerts) != 1 || lr.Alerts[0].AlertId != a10.AlertId {
		t.Fatalf("rm-2 list: %v %v", err, lr.GetAlerts())
	}
	lr, _ = e.client("rm-1", auth.RoleManager, "").ListAlerts(ctx, &cwv1.ListAlertsRequest{})
	if len(lr.GetAlerts()) != 0 {
		t.Fatalf("rm-1 still lists %d alerts", len(lr.GetAlerts()))
	}

	// An unknown customer (no profile): only ops and admins see it.
	s := sig("s12", "C12", "outflow.large", 50)
	s.UnknownCustomer = true
	e.produce(e.signals, "C12", s)
	a12 := e.alertOf("C12", nil)
	if !a12.UnknownCustomer || a12.BranchId != "" {
		t.Fatalf("unknown customer alert: %v", a12)
	}
	if _, err := e.client("bh-1", auth.RoleBranchHead, "br-1").GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: a12.AlertId}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("branch head sees an unknown customer's alert: %v", err)
	}
	if _, err := e.client("ops-1", auth.RoleOps, "").GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: a12.AlertId}); err != nil {
		t.Fatalf("ops: %v", err)
	}
}

func TestMergeRenotifyAndKafka(t *testing.T) {
	e := start(t, nil)
	e.profile("CM", "rm-1", "br-1", cwv1.Tier_TIER_POTENTIAL)
	e.profilesCaughtUp()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := e.client("rm-1", auth.RoleManager, "").Subscribe(ctx, &cwv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.signal("m1", "CM", "activity.drop", 45)
	a := e.alertOf("CM", nil)
	if a.Severity != cwv1.Severity_SEVERITY_MEDIUM || a.Tier != cwv1.Tier_TIER_POTENTIAL || a.RecommendedAction == "" {
		t.Fatalf("created: %v", a)
	}
	u := recv(t, st)
	if !u.Notify || (u.Change != cwv1.AlertChange_ALERT_CHANGE_CREATED && u.Change != cwv1.AlertChange_ALERT_CHANGE_SNAPSHOT) {
		t.Fatalf("first update: %v notify=%v", u.Change, u.Notify)
	}
	e.signal("m2", "CM", "complaints", 55)
	u = recv(t, st)
	if u.Change != cwv1.AlertChange_ALERT_CHANGE_UPDATED || u.Notify || len(u.Alert.Reasons) != 2 {
		t.Fatalf("same band: %v notify=%v reasons=%d", u.Change, u.Notify, len(u.Alert.Reasons))
	}
	e.signal("m3", "CM", "outflow.large", 82)
	u = recv(t, st)
	if u.Change != cwv1.AlertChange_ALERT_CHANGE_SEVERITY_RAISED || !u.Notify || u.Alert.Severity != cwv1.Severity_SEVERITY_CRITICAL || u.Alert.AlertId != a.AlertId {
		t.Fatalf("raised: %v notify=%v sev=%v", u.Change, u.Notify, u.Alert.Severity)
	}
	// A duplicate delivery changes nothing.
	e.signal("m3", "CM", "outflow.large", 82)
	e.signalsCaughtUp()
	got, err := e.admin().GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: a.AlertId})
	if err != nil {
		t.Fatal(err)
	}
	if got.Alert.Version != 3 || len(got.Alert.History) != 3 || len(got.Alert.Reasons) != 3 {
		t.Fatalf("after duplicate: version %d, history %d, reasons %d", got.Alert.Version, len(got.Alert.History), len(got.Alert.Reasons))
	}
	lr, _ := e.admin().ListAlerts(ctx, &cwv1.ListAlertsRequest{CustomerId: "CM"})
	if len(lr.GetAlerts()) != 1 {
		t.Fatalf("%d alerts for one customer", len(lr.GetAlerts()))
	}
	lr, _ = e.admin().ListAlerts(ctx, &cwv1.ListAlertsRequest{RuleId: "complaints", Severities: []cwv1.Severity{cwv1.Severity_SEVERITY_CRITICAL}})
	if len(lr.GetAlerts()) != 1 {
		t.Fatalf("filter by rule and severity: %d", len(lr.GetAlerts()))
	}
	lr, _ = e.admin().ListAlerts(ctx, &cwv1.ListAlertsRequest{Severities: []cwv1.Severity{cwv1.Severity_SEVERITY_LOW}})
	if len(lr.GetAlerts()) != 0 {
		t.Fatalf("filter by severity LOW: %d", len(lr.GetAlerts()))
	}

	// After resolving, the next signal opens a new alert.
	if _, err := e.admin().ResolveAlert(ctx, &cwv1.ResolveAlertRequest{AlertId: a.AlertId, Outcome: cwv1.Outcome_OUTCOME_FALSE_ALARM, Note: "moved savings internally"}); err != nil {
		t.Fatal(err)
	}
	e.signal("m4", "CM", "closure", 70)
	b := e.alertOf("CM", func(x *cwv1.Alert) bool { return x.AlertId != a.AlertId })
	if b.State != cwv1.AlertState_ALERT_STATE_OPEN || b.Version != 1 {
		t.Fatalf("new alert: %v", b)
	}

	// Every change is on churnwatch.alerts.v1, readable by kcat: created,
	// updated, raised, resolved, created.
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat not found on PATH: install it (apt-get install kcat; make test's setup does)")
	}
	var lines []string
	waitFor(t, 20*time.Second, "5 alert updates on the topic via kcat", func() bool {
		out, err := exec.Command("kcat", "-b", e.kafka.Brokers[0], "-C", "-t", e.cfg.Common.Topics.Alerts, "-e", "-q", "-f", "%k %S\n").Output()
		if err != nil {
			return false
		}
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(l, "CM ") {
				lines = append(lines, l)
			}
		}
		return len(lines) >= 5
	})
	if len(lines) != 5 {
		t.Fatalf("kcat read %d updates for CM, want 5: %q", len(lines), lines)
	}
	// kcat sees the CloudEvents headers of every record (binary mode).
	out, err := exec.Command("kcat", "-b", e.kafka.Brokers[0], "-C", "-t", e.cfg.Common.Topics.Alerts, "-e", "-q", "-f", "%k\t%h\n").Output()
	if err != nil {
		t.Fatalf("kcat headers: %v", err)
	}
	var created int
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		for _, want := range []string{"ce_specversion=1.0", "ce_source=churnwatch/alerts", "ce_id=", "ce_type=com.churnwatch.alert.",
			"content-type=application/protobuf; messageType=churnwatch.v1.AlertUpdate"} {
			if !strings.Contains(l, want) {
				t.Fatalf("kcat: record without %s: %q", want, l)
			}
		}
		if strings.HasPrefix(l, "CM\t") && strings.Contains(l, "ce_type=com.churnwatch.alert.created") {
			created++
		}
	}
	if created != 2 {
		t.Fatalf("kcat: %d com.churnwatch.alert.created records for CM, want 2:\n%s", created, out)
	}
}

func TestEscalationWithClock(t *testing.T) {
	e := start(t, nil)
	e.profile("CH", "rm-1", "br-1", cwv1.Tier_TIER_HIGH_NET_WORTH)
	e.profile("CS", "rm-1", "br-1", cwv1.Tier_TIER_BASIC)
	e.profilesCaughtUp()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bh, err := e.client("bh-1", auth.RoleBranchHead, "br-1").Subscribe(ctx, &cwv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.signal("h1", "CH", "outflow.large", 70)
	e.signal("s1", "CS", "complaints", 50)
	a := e.alertOf("CH", nil)
	if !strings.Contains(a.RecommendedAction, "within 4 h") {
		t.Fatalf("HNW action: %q", a.RecommendedAction)
	}
	cs := e.alertOf("CS", nil)
	for seen := 0; seen < 2; seen++ {
		recv(t, bh) // created (or snapshot) of both
	}
	if _, err := e.client("rm-1", auth.RoleManager, "").SnoozeAlert(ctx, &cwv1.SnoozeAlertRequest{AlertId: cs.AlertId, Until: timestamppb.New(e.clock.Now().Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if u := recv(t, bh); u.Change != cwv1.AlertChange_ALERT_CHANGE_SNOOZED || u.Notify {
		t.Fatalf("snoozed: %v notify=%v", u.Change, u.Notify)
	}
	e.clock.Add(3*time.Hour + 59*time.Minute)
	// The snooze (1 h) ended; the HNW SLA (4 h) has not.
	n, err := e.app.RunEscalations(ctx)
	if err != nil || n != 1 {
		t.Fatalf("scan at 3h59: %d %v", n, err)
	}
	if u := recv(t, bh); u.Change != cwv1.AlertChange_ALERT_CHANGE_UNSNOOZED || u.Alert.CustomerId != "CS" {
		t.Fatalf("unsnooze: %v %s", u.Change, u.Alert.CustomerId)
	}
	e.clock.Add(time.Minute)
	if n, err := e.app.RunEscalations(ctx); err != nil || n != 1 {
		t.Fatalf("scan at 4h: %d %v", n, err)
	}
	u := recv(t, bh)
	if u.Change != cwv1.AlertChange_ALERT_CHANGE_ESCALATED || !u.Notify || u.Alert.State != cwv1.AlertState_ALERT_STATE_ESCALATED || u.Alert.AlertId != a.AlertId {
		t.Fatalf("escalation for the branch head: %v notify=%v %v", u.Change, u.Notify, u.Alert.State)
	}
	if n, err := e.app.RunEscalations(ctx); err != nil || n != 0 {
		t.Fatalf("second scan escalated again: %d %v", n, err)
	}
	ack, err := e.client("rm-1", auth.RoleManager, "").AcknowledgeAlert(ctx, &cwv1.AcknowledgeAlertRequest{AlertId: a.AlertId, Note: "called"})
	if err != nil || ack.Alert.State != cwv1.AlertState_ALERT_STATE_ACKNOWLEDGED {
		t.Fatalf("ack after escalation: %v %v", err, ack.GetAlert().GetState())
	}
	body := metricsText(t, e)
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool not found on PATH (make test's setup installs it)")
	}
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{`churnwatch_alert_escalations_total{tier="high_net_worth"} 1`, `churnwatch_alerts_open{severity="high",tier="high_net_worth"} 1`, "churnwatch_alert_ack_time_seconds_count 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func metricsText(t *testing.T, e *env) string {
	t.Helper()
	resp, err := http.Get("http://" + e.app.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type seenSet map[string]int64

func (s seenSet) add(u *cwv1.AlertUpdate) bool {
	k := u.Alert.AlertId
	if v, ok := s[k]; ok && v >= u.Alert.Version {
		return false
	}
	s[k] = u.Alert.Version
	return true
}

func TestSubscribeResume(t *testing.T) {
	e := start(t, nil)
	for i := range 8 {
		e.profile(fmt.Sprintf("R%d", i), "rm-r", "br-1", cwv1.Tier_TIER_MASS)
	}
	e.profilesCaughtUp()
	cl := e.client("rm-r", auth.RoleManager, "")
	ctx, cancel := context.WithCancel(context.Background())
	st, err := cl.Subscribe(ctx, &cwv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.signal("r0", "R0", "closure", 70)
	first := recv(t, st)
	if first.Alert.CustomerId != "R0" || first.Cursor == "" {
		t.Fatalf("first: %v", first)
	}
	cancel() // disconnected

	// Missed while away: five new alerts and a merge into R0.
	for i := 1; i <= 5; i++ {
		e.signal(fmt.Sprintf("r%d", i), fmt.Sprintf("R%d", i), "closure", 70)
	}
	e.signal("r0b", "R0", "complaints", 90)
	e.signalsCaughtUp()

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	st2, err := cl.Subscribe(ctx2, &cwv1.SubscribeRequest{Cursor: first.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	seen := seenSet{}
	seen.add(first)
	fresh := 0
	for fresh < 6 {
		if seen.add(recv(t, st2)) {
			fresh++
		}
	}
	if seen[first.Alert.AlertId] != 2 {
		t.Fatalf("R0's merge missed: version %d", seen[first.Alert.AlertId])
	}
	// Then live, on the same stream.
	e.signal("r6", "R6", "closure", 70)
	u := recv(t, st2)
	if u.Alert.CustomerId != "R6" || !seen.add(u) {
		t.Fatalf("live after replay: %s", u.Alert.CustomerId)
	}
	if len(seen) != 7 {
		t.Fatalf("saw %d alerts, want 7", len(seen))
	}

	// A cursor of another audience is refused.
	other, err := e.client("rm-x", auth.RoleManager, "").Subscribe(context.Background(), &cwv1.SubscribeRequest{Cursor: first.Cursor})
	if err == nil {
		_, err = other.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("foreign cursor: %v", err)
	}
}

func TestSlowSubscriberCutOffAndResume(t *testing.T) {
	e := start(t, func(c *cfgT) { c.SubscriberQueue = 2 })
	ops := e.smallWindowClient("ops-1", auth.RoleOps)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := ops.Subscribe(ctx, &cwv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1500
	msgs := make([]kafkaMsg, 0, n)
	for i := range n {
		msgs = append(msgs, kmsg(fmt.Sprintf("S%04d", i), sig(fmt.Sprintf("sl%d", i), fmt.Sprintf("S%04d", i), "closure", 70)))
	}
	e.produceAll(msgs)
	e.signalsCaughtUp()

	// Never read until everything is in; then read: the stream ends with
	// RESOURCE_EXHAUSTED after what was buffered.
	seen := seenSet{}
	var last string
	var end error
	for {
		r, err := st.Recv()
		if err != nil {
			end = err
			break
		}
		seen.add(r.Update)
		last = r.Update.Cursor
	}
	if status.Code(end) != codes.ResourceExhausted || !strings.Contains(status.Convert(end).Message(), "resume") {
		t.Fatalf("slow subscriber: %v", end)
	}
	if len(seen) >= n {
		t.Fatalf("slow subscriber got everything (%d): the test did not exercise the cut-off", len(seen))
	}
	if !strings.Contains(metricsText(t, e), "churnwatch_alert_stream_cutoffs_total 1") {
		t.Error("cut-off not counted")
	}
	// Resume from the last cursor and read promptly: everything arrives.
	st2, err := ops.Subscribe(ctx, &cwv1.SubscribeRequest{Cursor: last})
	if err != nil {
		t.Fatal(err)
	}
	for len(seen) < n {
		seen.add(recv(t, st2))
	}
}

// TestUndecodableSignalGoesToTheDLQ: bad bytes on the signals topic are
// parked on the DLQ with the reason headers; the signal behind them on the
// same partition still becomes an alert.
func TestUndecodableSignalGoesToTheDLQ(t *testing.T) {
	e := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.signals.WriteMessages(ctx, kafka.Message{Key: []byte("C-DLQ"), Value: []byte("\xff\xff not a signal")}); err != nil {
		t.Fatal(err)
	}
	e.signal("s-dlq-1", "C-DLQ", "outflow.large", 80)
	e.alertOf("C-DLQ", func(*cwv1.Alert) bool { return true })
	e.signalsCaughtUp()

	r := kafka.NewReader(kafkax.ReaderConfig(kafkax.Plain(e.kafka.Brokers), "dlq-check", e.cfg.Common.Topics.DLQ))
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("read dlq: %v", err)
	}
	if string(m.Value) != "\xff\xff not a signal" || string(m.Key) != "C-DLQ" {
		t.Fatalf("DLQ record %q/%q", m.Key, m.Value)
	}
	// Written without CloudEvents headers, it gets a dead-letter identity.
	for k, want := range map[string]string{kafkax.HeaderReasonClass: "decode", kafkax.HeaderSourceTopic: e.cfg.Common.Topics.Signals,
		kafkax.HeaderCESpecVersion: "1.0", kafkax.HeaderCEType: kafkax.TypeDeadLetter,
		kafkax.HeaderCEID: e.cfg.Common.Topics.Signals + "/" + kafkax.Header(m, kafkax.HeaderSourcePartition) + "/" + kafkax.Header(m, kafkax.HeaderSourceOffset)} {
		if got := kafkax.Header(m, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if got := kafkax.Header(m, kafkax.HeaderReason); !strings.HasPrefix(got, "decode: ") {
		t.Errorf("cw-reason = %q", got)
	}
}
