package alerting_test

import (
	"testing"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

func TestAudiencesRouteAndNotify(t *testing.T) {
	e, c := engine(), customer()
	ch, _ := e.Signal(c, signal("s1", "outflow.large", 65, "120000"), t0)
	got := alerting.Audiences(ch)
	want := []alerting.Audience{{"all", true}, {"m:rm-1", true}, {"b:br-1", false}}
	if len(got) != len(want) {
		t.Fatalf("audiences %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("audiences %v, want %v (the branch head of an assigned customer is not notified)", got, want)
		}
	}
	esc, ok := e.Escalate(ch.Alert, t0.Add(5*time.Hour))
	if !ok {
		t.Fatal("not escalated")
	}
	if a := alerting.Audiences(esc); a[2] != (alerting.Audience{"b:br-1", true}) {
		t.Fatalf("escalated: %v, want the branch head notified", a)
	}
	moved, ok := e.Reassign(ch.Alert, &cwv1.CustomerProfile{CustomerId: "C1", ManagerId: "rm-2", BranchId: "br-2", Tier: cwv1.Tier_TIER_HIGH_NET_WORTH}, t0)
	if !ok {
		t.Fatal("not reassigned")
	}
	a := alerting.Audiences(moved)
	names := map[string]bool{}
	for _, x := range a {
		names[x.Name] = x.Notify
	}
	if n, ok := names["m:rm-1"]; !ok || n {
		t.Fatalf("reassigned: %v, want the old manager told quietly", a)
	}
	if !names["m:rm-2"] {
		t.Fatalf("reassigned: %v, want the new manager notified", a)
	}
	unassigned := &cwv1.Alert{BranchId: "br-1", State: cwv1.AlertState_ALERT_STATE_OPEN}
	if !alerting.BranchHeadNotified(unassigned) || !alerting.InRoleAudience("branch_head", unassigned) || alerting.InRoleAudience("manager", unassigned) {
		t.Fatal("an unassigned customer's alert is for its branch head")
	}
}

func TestAudienceOfAndVisible(t *testing.T) {
	a := &cwv1.Alert{ManagerId: "rm-1", BranchId: "br-1"}
	for _, c := range []struct {
		p    auth.Principal
		aud  string
		ok   bool
		sees bool
	}{
		{auth.Principal{Subject: "rm-1", Role: auth.RoleManager}, "m:rm-1", true, true},
		{auth.Principal{Subject: "rm-2", Role: auth.RoleManager}, "m:rm-2", true, false},
		{auth.Principal{Subject: "bh", Role: auth.RoleBranchHead, Branch: "br-1"}, "b:br-1", true, true},
		{auth.Principal{Subject: "bh", Role: auth.RoleBranchHead}, "", false, false},
		{auth.Principal{Subject: "ops-1", Role: auth.RoleOps}, "all", true, true},
		{auth.Principal{Subject: "ing", Role: auth.RoleIngest}, "", false, false},
	} {
		aud, ok := alerting.AudienceOf(c.p)
		if (ok && aud != c.aud) || ok != c.ok || alerting.Visible(c.p, a) != c.sees {
			t.Errorf("%s/%s: audience %q %v, sees %v; want %q %v %v", c.p.Role, c.p.Subject, aud, ok, alerting.Visible(c.p, a), c.aud, c.ok, c.sees)
		}
	}
}
