package app_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// What an RM needs on the alert: the customer's name, reassignment by the
// branch head (never by a manager) audited with the note, and listings by
// manager, overdue, sorted by severity or due time.
func TestReassignNameAndListFilters(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	e.produce(e.custs, "C1", &cwv1.CustomerProfile{CustomerId: "C1", ManagerId: "rm-1", BranchId: "br-1", Tier: cwv1.Tier_TIER_HIGH_NET_WORTH, DisplayName: "Wang L."})
	e.produce(e.custs, "C2", &cwv1.CustomerProfile{CustomerId: "C2", ManagerId: "rm-1", BranchId: "br-1", Tier: cwv1.Tier_TIER_BASIC, DisplayName: "Li Q."})
	e.produce(e.custs, "C3", &cwv1.CustomerProfile{CustomerId: "C3", ManagerId: "rm-2", BranchId: "br-1", Tier: cwv1.Tier_TIER_MASS})
	e.profilesCaughtUp()
	e.signal("s1", "C1", "balance_drop", 45) // MEDIUM, HNW: due in 4h
	e.signal("s2", "C2", "balance_drop", 85) // CRITICAL, BASIC: due in 72h
	e.signal("s3", "C3", "balance_drop", 65) // HIGH, MASS: due in 24h
	e.signalsCaughtUp()
	a1 := e.alertOf("C1", nil)
	if a1.CustomerDisplayName != "Wang L." {
		t.Errorf("display name %q", a1.CustomerDisplayName)
	}
	e.alertOf("C2", nil)
	e.alertOf("C3", nil)

	// Reassign.
	rm := e.client("rm-1", auth.RoleManager, "")
	if _, err := rm.ReassignAlert(ctx, &cwv1.ReassignAlertRequest{AlertId: a1.AlertId, ManagerId: "rm-2", Note: "x"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("manager reassigning: %v", err)
	}
	other := e.client("bh-2", auth.RoleBranchHead, "br-2")
	if _, err := other.ReassignAlert(ctx, &cwv1.ReassignAlertRequest{AlertId: a1.AlertId, ManagerId: "rm-2", Note: "x"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("other branch's head reassigning: %v", err)
	}
	bh := e.client("bh-1", auth.RoleBranchHead, "br-1")
	if _, err := bh.ReassignAlert(ctx, &cwv1.ReassignAlertRequest{AlertId: a1.AlertId, ManagerId: "rm-2"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no note: %v", err)
	}
	resp, err := bh.ReassignAlert(ctx, &cwv1.ReassignAlertRequest{AlertId: a1.AlertId, ManagerId: "rm-2", Note: "rm-1 on leave"})
	if err != nil || resp.Alert.ManagerId != "rm-2" || resp.Alert.Version != a1.Version+1 {
		t.Fatalf("reassign: %v %v", resp, err)
	}
	got, err := e.admin().GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: a1.AlertId})
	if err != nil {
		t.Fatal(err)
	}
	h := got.Alert.History[len(got.Alert.History)-1]
	if h.Change != cwv1.AlertChange_ALERT_CHANGE_REASSIGNED || h.Actor != "bh-1" || h.Note != "rm-1 on leave" {
		t.Errorf("history %v", h)
	}
	if _, err := e.client("rm-2", auth.RoleManager, "").GetAlert(ctx, &cwv1.GetAlertRequest{AlertId: a1.AlertId}); err != nil {
		t.Errorf("the new manager cannot see it: %v", err)
	}

	// Filters and sort.
	adm := e.admin()
	ids := func(r *cwv1.ListAlertsResponse) []string {
		var out []string
		for _, a := range r.Alerts {
			out = append(out, a.CustomerId)
		}
		return out
	}
	list := func(req *cwv1.ListAlertsRequest) []string {
		t.Helper()
		r, err := adm.ListAlerts(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return ids(r)
	}
	if got := list(&cwv1.ListAlertsRequest{ManagerId: "rm-2", Sort: cwv1.ListAlertsSort_LIST_ALERTS_SORT_SEVERITY}); len(got) != 2 || got[0] != "C3" || got[1] != "C1" {
		t.Errorf("rm-2 by severity: %v, want [C3 C1]", got)
	}
	if got := list(&cwv1.ListAlertsRequest{Sort: cwv1.ListAlertsSort_LIST_ALERTS_SORT_DUE}); len(got) != 3 || got[0] != "C1" || got[1] != "C3" || got[2] != "C2" {
		t.Errorf("by due: %v, want [C1 C3 C2]", got)
	}
	if got := list(&cwv1.ListAlertsRequest{Overdue: true}); len(got) != 0 {
		t.Errorf("overdue before any deadline: %v", got)
	}
	e.clock.Add(25 * time.Hour)
	if got := list(&cwv1.ListAlertsRequest{Overdue: true, Sort: cwv1.ListAlertsSort_LIST_ALERTS_SORT_DUE}); len(got) != 2 || got[0] != "C1" || got[1] != "C3" {
		t.Errorf("overdue after 25h: %v, want [C1 C3]", got)
	}
	r, err := adm.ListAlerts(ctx, &cwv1.ListAlertsRequest{Sort: cwv1.ListAlertsSort_LIST_ALERTS_SORT_SEVERITY, PageSize: 2})
	if err != nil || len(r.Alerts) != 2 || r.NextPageToken == "" {
		t.Fatalf("page 1: %v %v", r, err)
	}
	r2, err := adm.ListAlerts(ctx, &cwv1.ListAlertsRequest{Sort: cwv1.ListAlertsSort_LIST_ALERTS_SORT_SEVERITY, PageSize: 2, PageToken: r.NextPageToken})
	if err != nil || len(r2.Alerts) != 1 || r2.Alerts[0].CustomerId != "C1" || r2.NextPageToken != "" {
		t.Errorf("page 2: %v %v", r2, err)
	}
	// A manager asking for someone else's alerts sees none.
	r3, err := rm.ListAlerts(ctx, &cwv1.ListAlertsRequest{ManagerId: "rm-2"})
	if err != nil || len(r3.Alerts) != 0 {
		t.Errorf("rm-1 listing rm-2's: %v %v", ids(r3), err)
	}
}
