package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// Scope is how much of the bank's customers and alerts a role sees.
type Scope int

// Scopes, narrowest first.
const (
	ScopeNone   Scope = iota // no customer data (ingest)
	ScopeOwn                 // the customers whose manager is the principal
	ScopeBranch              // the customers of the principal's branch
	ScopeAll                 // every customer
)

func (s Scope) String() string {
	switch s {
	case ScopeOwn:
		return "own customers"
	case ScopeBranch:
		return "own branch"
	case ScopeAll:
		return "all"
	}
	return "none"
}

var (
	// Roles lists every role in the order the docs show them.
	Roles = []Role{RoleIngest, RoleManager, RoleBranchHead, RoleOps, RoleAdmin}

	ingestRoles = []Role{RoleIngest, RoleAdmin}
	alertRoles  = []Role{RoleManager, RoleBranchHead, RoleOps, RoleAdmin}
	opsRoles    = []Role{RoleOps, RoleAdmin}
)

// Access is the one access-policy table of churnwatch (SPEC §6): every
// RPC of every service and the roles that may call it. Every service's
// interceptor enforces it, docs/security-roles.md is generated from it, and
// a test checks that it names every method of the .proto services. What a
// caller then sees of customers and alerts is narrowed by ScopeOf.
var Access = Policy{
	// ingest may only publish.
	cwv1.IngestService_PublishEvents_FullMethodName:    ingestRoles,
	cwv1.IngestService_StreamEvents_FullMethodName:     ingestRoles,
	cwv1.IngestService_UpsertCustomers_FullMethodName:  ingestRoles,
	cwv1.IngestService_CloseBusinessDay_FullMethodName: ingestRoles,

	// Thresholds: ops and admin read; only admin changes directly.
	cwv1.RulesAdminService_GetThresholds_FullMethodName:        opsRoles,
	cwv1.RulesAdminService_ListThresholdChanges_FullMethodName: opsRoles,
	cwv1.RulesAdminService_UpdateThresholds_FullMethodName:     {RoleAdmin},
	// Four-eyes changes: ops and admin propose, approve and reject; the
	// handler refuses a proposer deciding its own proposal (SPEC §6).
	cwv1.RulesAdminService_ProposeThresholdChange_FullMethodName: opsRoles,
	cwv1.RulesAdminService_ListThresholdProposals_FullMethodName: opsRoles,
	cwv1.RulesAdminService_ApproveThresholdChange_FullMethodName: opsRoles,
	cwv1.RulesAdminService_RejectThresholdChange_FullMethodName:  opsRoles,
	// Shadow threshold sets: ops and admin start, stop and read them.
	cwv1.ShadowService_StartShadow_FullMethodName:     opsRoles,
	cwv1.ShadowService_StopShadow_FullMethodName:      opsRoles,
	cwv1.ShadowService_PurgeShadow_FullMethodName:     opsRoles,
	cwv1.ShadowService_ListShadows_FullMethodName:     opsRoles,
	cwv1.ShadowService_GetShadowReport_FullMethodName: opsRoles,
	// Customer risk: every alert role, narrowed by scope in the handler.
	cwv1.RulesAdminService_GetCustomerRisk_FullMethodName: alertRoles,

	// Alerts: every alert role, each alert narrowed by scope.
	cwv1.AlertService_Subscribe_FullMethodName:        alertRoles,
	cwv1.AlertService_ListAlerts_FullMethodName:       alertRoles,
	cwv1.AlertService_GetAlert_FullMethodName:         alertRoles,
	cwv1.AlertService_AcknowledgeAlert_FullMethodName: alertRoles,
	cwv1.AlertService_ResolveAlert_FullMethodName:     alertRoles,
	cwv1.AlertService_SnoozeAlert_FullMethodName:      alertRoles,
	// Reassigning: branch heads (their branch's alerts), ops and admin;
	// never a manager (SPEC §5).
	cwv1.AlertService_ReassignAlert_FullMethodName: {RoleBranchHead, RoleOps, RoleAdmin},
	// Bank-wide aggregates without customer data.
	cwv1.AlertService_GetRulePrecision_FullMethodName: alertRoles,

	// Retention KPIs (SPEC §9): branch heads (their branch, forced in the
	// handler), ops and admin (the bank). Managers are refused: the
	// figures are a branch's or the bank's, not one RM's book.
	cwv1.KpiService_GetKpis_FullMethodName: {RoleBranchHead, RoleOps, RoleAdmin},

	// Lag, readiness and versions are operational detail: ops and admin.
	cwv1.StatusService_GetStatus_FullMethodName: opsRoles,
}

// HTTPIntake is who may use the ingester's HTTP intake (POST /v1/events,
// /v1/customers): the same roles as IngestService.
var HTTPIntake = ingestRoles

// scopes is the role → alert and customer audience table.
var scopes = map[Role]Scope{
	RoleIngest:     ScopeNone,
	RoleManager:    ScopeOwn,
	RoleBranchHead: ScopeBranch,
	RoleOps:        ScopeAll,
	RoleAdmin:      ScopeAll,
}

// ScopeOf is which customers' alerts and risk a role sees.
func ScopeOf(r Role) Scope { return scopes[r] }

// Sees reports whether p may see a customer managed by manager in branch.
// A customer without a known manager or branch is seen by ScopeAll only.
func (p Principal) Sees(manager, branch string) bool {
	switch ScopeOf(p.Role) {
	case ScopeAll:
		return true
	case ScopeBranch:
		return branch != "" && branch == p.Branch
	case ScopeOwn:
		return manager != "" && manager == p.Subject
	}
	return false
}

// Ref is a non-identifying reference to a customer or alert id for logs
// and traces: the first 12 hex digits of its SHA-256. Support can match it
// against an id they already hold; it does not reveal the id.
func Ref(id string) string {
	if id == "" {
		return ""
	}
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:6])
}

// LogDenied logs one access denial: who, in which role, on which method,
// why, and a Ref of the object (never the id itself, nor the token).
func LogDenied(ctx context.Context, log *slog.Logger, msg string, p Principal, method, reason, ref string) {
	attrs := []any{"principal", p.Subject, "role", string(p.Role), "method", method, "reason", reason}
	if ref != "" {
		attrs = append(attrs, "ref", ref)
	}
	log.WarnContext(ctx, msg, attrs...)
}
