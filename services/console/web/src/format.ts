// Words the RM reads: enum values, rule ids and times, said the way a
// relationship manager says them. Times are in the browser's own zone, with
// the zone shown.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Severity, Stage, Tier } from "./gen/churnwatch/v1/common_pb";
import { AlertChange, AlertState, Outcome } from "./gen/churnwatch/v1/alerts_pb";

export const severityLabel: Record<Severity, string> = {
  [Severity.UNSPECIFIED]: "Unknown",
  [Severity.LOW]: "Low",
  [Severity.MEDIUM]: "Medium",
  [Severity.HIGH]: "High",
  [Severity.CRITICAL]: "Critical",
};

export const tierLabel: Record<Tier, string> = {
  [Tier.UNSPECIFIED]: "Unknown",
  [Tier.HIGH_NET_WORTH]: "High net worth",
  [Tier.POTENTIAL]: "Potential",
  [Tier.MASS]: "Mass",
  [Tier.BASIC]: "Basic",
};

export const stageLabel: Record<Stage, string> = {
  [Stage.UNSPECIFIED]: "Unknown",
  [Stage.ACTIVE]: "Active",
  [Stage.DECLINING]: "Declining",
  [Stage.CHURNED]: "Churned",
  [Stage.WON_BACK]: "Won back",
};

export const stateLabel: Record<AlertState, string> = {
  [AlertState.UNSPECIFIED]: "Unknown",
  [AlertState.OPEN]: "Open",
  [AlertState.ACKNOWLEDGED]: "Acknowledged",
  [AlertState.RESOLVED]: "Resolved",
  [AlertState.SNOOZED]: "Snoozed",
  [AlertState.ESCALATED]: "Escalated",
};

export const outcomeLabel: Record<Outcome, string> = {
  [Outcome.UNSPECIFIED]: "None",
  [Outcome.RETAINED]: "Retained: the customer stays",
  [Outcome.CHURNED]: "Churned: the customer left",
  [Outcome.UNREACHABLE]: "Unreachable: could not reach the customer",
  [Outcome.FALSE_ALARM]: "False alarm: no risk after all",
};

export const changeLabel: Record<AlertChange, string> = {
  [AlertChange.UNSPECIFIED]: "Changed",
  [AlertChange.CREATED]: "Alert raised",
  [AlertChange.UPDATED]: "New warning signs added",
  [AlertChange.SEVERITY_RAISED]: "Severity rose",
  [AlertChange.ACKNOWLEDGED]: "Acknowledged",
  [AlertChange.RESOLVED]: "Resolved",
  [AlertChange.SNOOZED]: "Snoozed",
  [AlertChange.UNSNOOZED]: "Snooze ended",
  [AlertChange.ESCALATED]: "Escalated to the branch head",
  [AlertChange.REASSIGNED]: "Reassigned",
  [AlertChange.SNAPSHOT]: "Current state",
};

// The rule catalogue of SPEC §4 in the RM's words. An unknown rule id (a rule
// added after this build) is shown as it is.
export const rules: { id: string; label: string }[] = [
  { id: "dormancy.declining", label: "No activity for a long time" },
  { id: "dormancy.churned", label: "Dormant: no activity for half a year" },
  { id: "activity.drop", label: "Activity fell sharply" },
  { id: "outflow.large", label: "Large transfer to another bank" },
  { id: "outflow.drain", label: "Balance moving to other banks" },
  { id: "salary.stopped", label: "Salary stopped arriving" },
  { id: "closure", label: "Account closed or product cancelled" },
  { id: "complaints", label: "Complaints" },
  { id: "winback", label: "Churned customer is back" },
];

export function ruleLabel(id: string): string {
  return rules.find((r) => r.id === id)?.label ?? id;
}

// withUnit says what the figures of an explanation are counted in. A
// "ratio" is of the customer's usual activity for activity.drop and of the
// balance for the outflow rules.
export function withUnit(value: string, unit: string, ruleId = ""): string {
  if (!value) return "—";
  if (unit === "ratio") {
    if (ruleId === "activity.drop") return `${value} of the usual activity`;
    if (ruleId.startsWith("outflow.")) return `${value} of the balance`;
    return value;
  }
  return unit && unit !== "count" ? `${value} ${unit}` : value;
}

const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

// timeZoneName is the browser's zone, shown once on every page.
export function timeZoneName(): string {
  return zone;
}

// dateStyle/timeStyle cannot be combined with timeZoneName, so the parts
// are spelled out.
const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZoneName: "short",
});

export function formatTime(ts: Timestamp | undefined): string {
  if (!ts) return "—";
  return timeFormat.format(timestampDate(ts));
}

const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

export function formatDay(ts: Timestamp | undefined): string {
  if (!ts) return "—";
  return dayFormat.format(timestampDate(ts));
}

// relativeDue says how long until (or since) an acknowledgement deadline.
export function relativeDue(due: Timestamp | undefined, now: Date): string {
  if (!due) return "";
  const ms = timestampDate(due).getTime() - now.getTime();
  const mins = Math.round(Math.abs(ms) / 60000);
  const span = mins < 60 ? `${mins} min` : mins < 48 * 60 ? `${Math.round(mins / 60)} h` : `${Math.round(mins / 1440)} days`;
  return ms < 0 ? `${span} overdue` : `in ${span}`;
}

export const roleLabel: Record<string, string> = {
  manager: "Relationship manager",
  branch_head: "Branch head",
  ops: "Operations",
  admin: "Administrator",
};
