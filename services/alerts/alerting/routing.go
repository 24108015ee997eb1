package alerting

import (
	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// Routing policy: who sees an alert and who is notified of a change. An
// audience is a name ("all", "m:MANAGER", "b:BRANCH") that the store uses
// for its listing indexes and audience streams, Subscribe for the stream a
// principal reads and the receivers for their match.roles; the rules are
// here once, pure, so that every one of them routes the same way.

// AudienceAll is the audience of ops and admins: every alert.
const AudienceAll = "all"

// ManagerAudience is the audience of one relationship manager.
func ManagerAudience(manager string) string { return "m:" + manager }

// BranchAudience is the audience of one branch head.
func BranchAudience(branch string) string { return "b:" + branch }

// Audience is one audience a change goes to and whether its readers are
// notified.
type Audience struct {
	Name   string
	Notify bool
}

// BranchHeadNotified reports whether the branch head is a notified audience
// of a: for customers without a manager, and once the alert is escalated.
func BranchHeadNotified(a *cwv1.Alert) bool {
	return a.GetBranchId() != "" && (a.GetManagerId() == "" || a.GetState() == cwv1.AlertState_ALERT_STATE_ESCALATED)
}

// Audiences routes a change: ops/admin (all) and the manager get the
// change's notify; the branch head sees every change of the branch but is
// notified only when BranchHeadNotified; after a reassignment the previous
// manager and branch get it once, quietly. AudienceAll is always first.
func Audiences(ch Change) []Audience {
	var out []Audience
	idx := map[string]int{}
	add := func(name string, notify bool) {
		if i, ok := idx[name]; ok {
			out[i].Notify = out[i].Notify || notify
			return
		}
		idx[name] = len(out)
		out = append(out, Audience{name, notify})
	}
	a := ch.Alert
	add(AudienceAll, ch.Notify)
	if a.GetManagerId() != "" {
		add(ManagerAudience(a.GetManagerId()), ch.Notify)
	}
	if a.GetBranchId() != "" {
		add(BranchAudience(a.GetBranchId()), ch.Notify && BranchHeadNotified(a))
	}
	if b := ch.Before; b != nil {
		if b.GetManagerId() != "" {
			add(ManagerAudience(b.GetManagerId()), false)
		}
		if b.GetBranchId() != "" {
			add(BranchAudience(b.GetBranchId()), false)
		}
	}
	return out
}

// AudienceOf is the audience holding what p sees, by the scope of p's role
// in the one policy table (auth.ScopeOf); false when p sees no alerts.
func AudienceOf(p auth.Principal) (string, bool) {
	switch auth.ScopeOf(p.Role) {
	case auth.ScopeAll:
		return AudienceAll, true
	case auth.ScopeBranch:
		return BranchAudience(p.Branch), p.Branch != ""
	case auth.ScopeOwn:
		return ManagerAudience(p.Subject), p.Subject != ""
	}
	return "", false
}

// Visible reports whether p may see and act on a: ops and admins every
// alert, a branch head its branch's, a manager its customers'. An alert of
// an unknown customer (no branch, no manager) is only for ops and admins.
func Visible(p auth.Principal, a *cwv1.Alert) bool {
	return p.Sees(a.GetManagerId(), a.GetBranchId())
}

// InRoleAudience reports whether an alert is for a receiver's audience
// role (match.roles): manager when the alert has a manager, branch_head
// when BranchHeadNotified, ops and admin always.
func InRoleAudience(role string, a *cwv1.Alert) bool {
	switch role {
	case "manager":
		return a.GetManagerId() != ""
	case "branch_head":
		return BranchHeadNotified(a)
	}
	return true
}
