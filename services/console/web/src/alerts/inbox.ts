// The inbox's list logic: which alerts it shows under which filters, in
// which order, and how a streamed update changes the list. Pure functions,
// so the unit tests and the page share one definition. Access (who may see
// which alert) is decided by the alerts service, never here.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Alert, AlertUpdate } from "../gen/churnwatch/v1/alerts_pb";
import { AlertState } from "../gen/churnwatch/v1/alerts_pb";
import { Severity, Tier } from "../gen/churnwatch/v1/common_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListAlertsRequestSchema } from "../gen/churnwatch/v1/alert_service_pb";

// StateFilter "open" means every alert still waiting for the RM: open,
// acknowledged or escalated (not resolved, not snoozed).
export type StateFilter = "open" | "OPEN" | "ACKNOWLEDGED" | "ESCALATED" | "SNOOZED" | "RESOLVED";

export interface Filters {
  severity: Severity | null;
  rule: string;
  tier: Tier | null;
  state: StateFilter;
  manager: string;
}

export const noFilters: Filters = { severity: null, rule: "", tier: null, state: "open", manager: "" };

const openStates = [AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.ESCALATED];

export function statesOf(f: StateFilter): AlertState[] {
  return f === "open" ? openStates : [AlertState[f]];
}

// listRequest is the ListAlerts query for the filters: the API does the
// filtering and the first ordering.
export function listRequest(f: Filters, pageToken = ""): MessageInitShape<typeof ListAlertsRequestSchema> {
  return {
    states: statesOf(f.state),
    severities: f.severity === null ? [] : [f.severity],
    tiers: f.tier === null ? [] : [f.tier],
    ruleId: f.rule,
    managerId: f.manager,
    pageSize: 200,
    pageToken,
  };
}

// matches applies the same filters to an alert that arrived on the stream.
export function matches(a: Alert, f: Filters): boolean {
  if (!statesOf(f.state).includes(a.state)) return false;
  if (f.severity !== null && a.severity !== f.severity) return false;
  if (f.tier !== null && a.tier !== f.tier) return false;
  if (f.rule && !a.reasons.some((r) => r.ruleId === f.rule)) return false;
  if (f.manager && a.managerId !== f.manager) return false;
  return true;
}

// isOverdue: not acknowledged by its deadline (open or escalated, due time
// passed), as ListAlerts' overdue filter defines it.
export function isOverdue(a: Alert, now: Date): boolean {
  if (a.state !== AlertState.OPEN && a.state !== AlertState.ESCALATED) return false;
  return !!a.ackDueAt && timestampDate(a.ackDueAt).getTime() < now.getTime();
}

function dueMillis(a: Alert): number {
  return a.ackDueAt ? timestampDate(a.ackDueAt).getTime() : Number.POSITIVE_INFINITY;
}

// byUrgency: most severe first, then the earliest acknowledgement deadline
// (alerts without one last), then customer id so the order is stable.
export function byUrgency(a: Alert, b: Alert): number {
  return b.severity - a.severity || dueMillis(a) - dueMillis(b) || a.customerId.localeCompare(b.customerId);
}

// AlertStore holds the newest known version of every alert the page has
// seen, from ListAlerts pages and the stream alike.
export type AlertStore = ReadonlyMap<string, Alert>;

// merge puts alerts into the store, keeping the newer version when both are
// known (the stream is at-least-once and may replay older versions).
export function merge(store: AlertStore, alerts: Alert[]): AlertStore {
  const next = new Map(store);
  for (const a of alerts) {
    const have = next.get(a.alertId);
    if (!have || a.version >= have.version) next.set(a.alertId, a);
  }
  return next;
}

// applyUpdate merges one streamed update. It reports whether the update was
// new to the store (not a replay of a version already shown).
export function applyUpdate(store: AlertStore, u: AlertUpdate): { store: AlertStore; fresh: boolean } {
  const a = u.alert;
  if (!a) return { store, fresh: false };
  const have = store.get(a.alertId);
  if (have && have.version >= a.version) return { store, fresh: false };
  return { store: merge(store, [a]), fresh: !have };
}

// rows is what the inbox table shows.
export function rows(store: AlertStore, f: Filters): Alert[] {
  return [...store.values()].filter((a) => matches(a, f)).sort(byUrgency);
}

// topReason is the reason to show in one line: the latest rule hit.
export function topReason(a: Alert) {
  return a.reasons.length ? a.reasons[a.reasons.length - 1] : undefined;
}

// Filters travel in the page's query string so a filtered inbox can be
// bookmarked and shared.
export function filtersFromQuery(q: URLSearchParams): Filters {
  const sev = q.get("severity");
  const tier = q.get("tier");
  const state = q.get("state") as StateFilter | null;
  return {
    severity: sev && sev in Severity && isNaN(Number(sev)) ? Severity[sev as keyof typeof Severity] : null,
    tier: tier && tier in Tier && isNaN(Number(tier)) ? Tier[tier as keyof typeof Tier] : null,
    rule: q.get("rule") ?? "",
    state: state && ["open", "OPEN", "ACKNOWLEDGED", "ESCALATED", "SNOOZED", "RESOLVED"].includes(state) ? state : "open",
    manager: q.get("manager") ?? "",
  };
}

export function filtersToQuery(f: Filters): string {
  const q = new URLSearchParams();
  if (f.severity !== null) q.set("severity", Severity[f.severity]);
  if (f.tier !== null) q.set("tier", Tier[f.tier]);
  if (f.rule) q.set("rule", f.rule);
  if (f.state !== "open") q.set("state", f.state);
  if (f.manager) q.set("manager", f.manager);
  const s = q.toString();
  return s ? "?" + s : "";
}
