// The shadow report (ShadowService.GetShadowReport) laid out as tables,
// the way `churnctl shadow report` lays it out for a terminal: per set —
// live first, then each shadow set — the alerts raised by rule, severity
// and tier, the customers only that set alerted, and precision with the
// counts it comes from. It counts the RPC's alerts; it judges nothing.
import type { GetShadowReportResponse, ShadowSet, ShadowSetReport } from "../gen/churnwatch/v1/shadow_service_pb";
import type { ThresholdSetting } from "../gen/churnwatch/v1/thresholds_pb";
import { Severity, Tier } from "../gen/churnwatch/v1/common_pb";
import type { Table } from "../kpis/report";
import { ruleLabel, severityLabel, tierLabel } from "../format";

// shadowState says whether a set still scores events.
export function shadowState(s: ShadowSet): "running" | "stopped" {
  return s.stoppedAt ? "stopped" : "running";
}

// changedSettings are a set's changed settings in key order.
export function changedSettings(settings: ThresholdSetting[]): ThresholdSetting[] {
  return [...settings].sort((a, b) => a.key.localeCompare(b.key));
}

export interface ChangeRow {
  key: string;
  value: string;
}

// startSettings checks the form's rows before they go to StartShadow: at
// least one, every value filled in, no setting twice. The rules service
// checks keys and values (range, unit) and its refusal is shown as it is.
export function startSettings(rows: ChangeRow[]): { settings: ChangeRow[] } | { error: string } {
  const out: ChangeRow[] = [];
  const seen = new Set<string>();
  for (const [i, r] of rows.entries()) {
    const key = r.key.trim();
    const value = r.value.trim();
    if (!key) return { error: `Change ${i + 1}: choose the setting.` };
    if (!value) return { error: `Change ${i + 1} (${key}): enter the value the shadow set should use.` };
    if (seen.has(key)) return { error: `Change ${i + 1}: ${key} is changed twice; keep one of them.` };
    seen.add(key);
    out.push({ key, value });
  }
  if (out.length === 0) return { error: "Add at least one setting to change: a shadow set equal to the live one shows nothing." };
  return { settings: out };
}

// precision is "0.75 (3 of 4 judged)", or why there is none yet.
export function precision(r: ShadowSetReport): string {
  if (r.judged <= 0) return "not measured: none judged yet";
  return `${(r.correct / r.judged).toFixed(2)} (${r.correct} of ${r.judged} judged)`;
}

const setLabel = (r: ShadowSetReport) => (r.live ? "live" : r.name);

const severityOrder: Severity[] = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW];
const tierOrder: Tier[] = [Tier.HIGH_NET_WORTH, Tier.POTENTIAL, Tier.MASS, Tier.BASIC, Tier.UNSPECIFIED];

// countBy counts a set's alerts per key; an alert with several rules counts
// once for each of them, as in churnctl.
function countBy<K>(r: ShadowSetReport, keys: (a: ShadowSetReport["alerts"][number]) => K[]): Map<K, number> {
  const m = new Map<K, number>();
  for (const a of r.alerts) for (const k of keys(a)) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

const listed = (ids: string[], most = 20) =>
  ids.length === 0 ? "—" : ids.length <= most ? ids.join(", ") : `${ids.slice(0, most).join(", ")} … and ${ids.length - most} more`;

// reportTables lays out one GetShadowReport answer. Every table has a
// column (or row) per set, live first, as the RPC orders them.
export function reportTables(resp: GetShadowReportResponse): Table[] {
  const sets = resp.sets;
  const names = sets.map(setLabel);
  const summary: Table = {
    caption: "Alerts and precision per set",
    columns: ["Set", "Alerts", "Only this set alerted", "Judged", "True", "Precision"],
    rows: sets.map((r) => [setLabel(r), String(r.alerts.length), String(r.onlyThisSet.length), String(r.judged), String(r.correct), precision(r)]),
    empty: "No set to report.",
  };

  const byRule = sets.map((r) => countBy(r, (a) => a.ruleIds));
  const rules = [...new Set(byRule.flatMap((m) => [...m.keys()]))].sort();
  const rule: Table = {
    caption: "Alerts by rule, per set",
    columns: ["Rule", ...names],
    rows: rules.map((id) => [`${ruleLabel(id)} (${id})`, ...byRule.map((m) => String(m.get(id) ?? 0))]),
    empty: "No set has raised an alert since the reported sets started.",
  };

  const bySev = sets.map((r) => countBy<Severity>(r, (a) => (a.severity === Severity.UNSPECIFIED ? [] : [a.severity])));
  const sevs = severityOrder.filter((s) => bySev.some((m) => m.has(s)));
  const severity: Table = {
    caption: "Alerts by severity, per set",
    columns: ["Severity", ...names],
    // The live side has no severities (the rules service's alert facts keep
    // none): its cells say so rather than show a zero.
    rows: sevs.map((s) => [severityLabel[s], ...sets.map((r, i) => (r.live ? "not kept" : String(bySev[i].get(s) ?? 0)))]),
    empty: "No shadow set has raised an alert yet, so there is no severity to show.",
  };

  const byTier = sets.map((r) => countBy(r, (a) => [a.tier]));
  const tiers = tierOrder.filter((t) => byTier.some((m) => m.has(t)));
  const tier: Table = {
    caption: "Alerts by tier, per set",
    columns: ["Tier", ...names],
    rows: tiers.map((t) => [tierLabel[t], ...byTier.map((m) => String(m.get(t) ?? 0))]),
    empty: "No set has raised an alert since the reported sets started.",
  };

  const only: Table = {
    caption: "Customers only one set alerted",
    columns: ["Set", "Customers", "Which"],
    rows: sets.filter((r) => r.onlyThisSet.length > 0).map((r) => [setLabel(r), String(r.onlyThisSet.length), listed(r.onlyThisSet)]),
    empty: "Every alerted customer was alerted by more than one set, or no set has alerted anyone yet.",
  };
  return [summary, rule, severity, tier, only];
}

// reportSince is the earliest start of the reported shadow sets: the live
// side counts the alerts created since then.
export function reportSince(resp: GetShadowReportResponse): ShadowSet | undefined {
  return resp.sets
    .map((r) => r.shadow)
    .filter((s): s is ShadowSet => !!s?.startedAt)
    .sort((a, b) => Number(a.startedAt!.seconds - b.startedAt!.seconds))[0];
}
