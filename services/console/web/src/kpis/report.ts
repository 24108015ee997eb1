// The monthly relationship-maintenance report (SPEC §9) from one
// KpiService.GetKpis answer: the one formatting module of the KPI page and
// of its download. It is a port of services/churnctl/report (report.go,
// render.go): the same sections, rows, columns and number formats, so the
// Markdown and CSV downloaded here equal `churnctl report --format md|csv`
// for the same month and branch. It computes no figure of its own: every
// number is the RPC's (the changes are differences of two of them).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Outcome } from "../gen/churnwatch/v1/alerts_pb";
import { Tier } from "../gen/churnwatch/v1/common_pb";
import type { Figures, GetKpisResponse, MonthKpis } from "../gen/churnwatch/v1/kpi_service_pb";

// Table is one section: a caption, column headings and rows whose first
// cell names the row; empty is said instead of a table without rows.
export interface Table {
  caption: string;
  columns: string[];
  rows: string[][];
  empty: string;
}

export interface Report {
  title: string;
  notes: string[];
  tables: Table[];
}

export const formats = ["md", "csv", "html"] as const;
export type Format = (typeof formats)[number];

const n = (v: bigint | number) => Number(v);

export function pct(v: number): string {
  return `${(100 * v).toFixed(2)}%`;
}

export function pp(d: number): string {
  const s = (100 * d).toFixed(2);
  return `${s.startsWith("-") ? "" : "+"}${s} pp`;
}

const num = (v: bigint | number) => String(v);

function signed(v: bigint | number): string {
  return v >= 0 ? `+${v}` : String(v);
}

// exponent is the currency's minor-unit digits (ISO 4217, as the browser
// knows it; 2 for a code it does not know, like services/platform/money).
function exponent(currency: string): number {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

// formatMinor renders minor units as a plain decimal ("120000.00").
export function formatMinor(v: bigint, currency: string): string {
  const exp = exponent(currency);
  const neg = v < 0n;
  let s = (neg ? -v : v).toString().padStart(exp + 1, "0");
  if (exp > 0) s = `${s.slice(0, s.length - exp)}.${s.slice(s.length - exp)}`;
  return neg ? `-${s}` : s;
}

const amount = (minor: bigint, cur: string) => `${formatMinor(minor, cur)} ${cur}`;
const signedAmount = (minor: bigint, cur: string) => `${minor >= 0n ? "+" : ""}${formatMinor(minor, cur)} ${cur}`;

export function duration(sec: bigint | number): string {
  const s = n(sec);
  if (s === 0) return "—";
  const h = Math.trunc(s / 3600);
  const m = Math.trunc(s / 60) % 60;
  return `${h}h${String(m).padStart(2, "0")}m`;
}

function rfc3339(ts: Timestamp | undefined): string {
  return (ts ? timestampDate(ts) : new Date(0)).toISOString().replace(/\.\d{3}Z$/, "Z");
}

const orDash = (s: string) => s || "—";
export const tierName = (t: Tier) => Tier[t] ?? String(t);
export const branchName = (b: string) => b || "(no branch)";
const rmName = (m: string) => m || "(unassigned: branch head)";

const zero = (): Figures => ({ customersByStage: undefined, notChurnedAtStart: 0n, enteredChurned: 0n, churnRate: 0, retentionRate: 0, quarterRetentionRate: 0, winBacks: 0n, balances: [] }) as unknown as Figures;

function stages(f: Figures | undefined) {
  const s = f?.customersByStage;
  return { active: s?.active ?? 0n, declining: s?.declining ?? 0n, churned: s?.churned ?? 0n, wonBack: s?.wonBack ?? 0n };
}

export function prevTier(prev: MonthKpis | undefined, tier: Tier): Figures {
  return prev?.tiers.find((t) => t.tier === tier)?.figures ?? zero();
}

export function prevBranch(prev: MonthKpis | undefined, branch: string): Figures {
  return prev?.branches.find((b) => b.branchId === branch)?.figures ?? zero();
}

// build lays out the report of resp's last month; the month before it, when
// resp has it, gives the changes.
export function build(resp: GetKpisResponse): Report {
  const ms = resp.months;
  if (ms.length === 0) throw new Error("the KPI answer has no month: choose a month");
  const cur = ms[ms.length - 1];
  const prev = ms.length > 1 ? ms[ms.length - 2] : undefined;
  const scope = resp.branchId ? `branch ${resp.branchId}` : "the bank";
  const r: Report = { title: `Relationship-maintenance report ${cur.month} — ${scope}`, notes: [], tables: [] };
  if (resp.eventTime) r.notes.push(`Event time reached ${rfc3339(resp.eventTime)}.`);
  if (!cur.closed) r.notes.push("The month is not closed by event time yet: its customer figures may still change.");
  r.notes.push(`Changes are on ${orDash(prev?.month ?? "")}. Definitions: docs/kpis.md.`);
  r.tables.push(kpiTable(cur, prev), tierTable(cur, prev), branchTable(cur, prev), roseTable(cur, prev));
  r.tables.push(reasonTable(cur), responseTable(cur), overdueTable(cur), precisionTable(cur));
  return r;
}

function kpiTable(cur: MonthKpis, prev: MonthKpis | undefined): Table {
  const c = cur.total ?? zero();
  const p = prev?.total ?? zero();
  const cs = stages(c);
  const ps = stages(p);
  const pm = orDash(prev?.month ?? "");
  const t: Table = { caption: `KPIs of ${cur.month} and the change on ${pm}`, columns: ["Figure", cur.month, pm, "Change"], rows: [], empty: "" };
  const count = (name: string, a: bigint, b: bigint) => t.rows.push([name, num(a), num(b), signed(a - b)]);
  const rate = (name: string, a: number, b: number) => t.rows.push([name, pct(a), pct(b), pp(a - b)]);
  count("Customers ACTIVE at month end", cs.active, ps.active);
  count("Customers DECLINING at month end", cs.declining, ps.declining);
  count("Customers CHURNED at month end", cs.churned, ps.churned);
  count("Customers WON_BACK at month end", cs.wonBack, ps.wonBack);
  count("Customers not CHURNED at month start", c.notChurnedAtStart, p.notChurnedAtStart);
  count("Customers entering CHURNED", c.enteredChurned, p.enteredChurned);
  rate("Churn rate", c.churnRate, p.churnRate);
  rate("Retention rate (month)", c.retentionRate, p.retentionRate);
  rate("Retention rate (quarter to date)", c.quarterRetentionRate, p.quarterRetentionRate);
  count("Win-backs (CHURNED → WON_BACK)", c.winBacks, p.winBacks);
  for (const b of c.balances) {
    t.rows.push([`Balances held (${b.currency})`, amount(b.heldMinor, b.currency), amount(b.heldMinor - b.changeMinor, b.currency), signedAmount(b.changeMinor, b.currency)]);
  }
  const ca = cur.alerts;
  const pa = prev?.alerts;
  count("Alerts raised", ca?.raised ?? 0n, pa?.raised ?? 0n);
  count("Alerts acknowledged", ca?.acknowledged ?? 0n, pa?.acknowledged ?? 0n);
  count("Alerts acknowledged within the tier SLA", ca?.acknowledgedWithinSla ?? 0n, pa?.acknowledgedWithinSla ?? 0n);
  count("Alerts escalated", ca?.escalated ?? 0n, pa?.escalated ?? 0n);
  count("Alerts resolved", ca?.resolved ?? 0n, pa?.resolved ?? 0n);
  const outcomes = (a: MonthKpis["alerts"]) => new Map((a?.resolvedByOutcome ?? []).map((o) => [o.outcome, o.alerts]));
  const co = outcomes(ca);
  const po = outcomes(pa);
  for (const o of [Outcome.RETAINED, Outcome.CHURNED, Outcome.UNREACHABLE, Outcome.FALSE_ALARM]) {
    count(`Alerts resolved ${Outcome[o]}`, co.get(o) ?? 0n, po.get(o) ?? 0n);
  }
  return t;
}

function balances(f: Figures): string {
  const parts = f.balances.map((b) => `${amount(b.heldMinor, b.currency)} (${signedAmount(b.changeMinor, b.currency)})`);
  return parts.length ? parts.join("; ") : "—";
}

const groupColumns = ["Churn rate", "Previous", "Change", "Retention", "Quarter retention", "Entering CHURNED", "Win-backs",
  "ACTIVE", "DECLINING", "CHURNED", "WON_BACK", "Balances held (change)"];

function groupRow(name: string, f: Figures | undefined, before: Figures): string[] {
  const g = f ?? zero();
  const s = stages(g);
  return [name, pct(g.churnRate), pct(before.churnRate), pp(g.churnRate - before.churnRate), pct(g.retentionRate), pct(g.quarterRetentionRate),
    num(g.enteredChurned), num(g.winBacks), num(s.active), num(s.declining), num(s.churned), num(s.wonBack), balances(g)];
}

function tierTable(cur: MonthKpis, prev: MonthKpis | undefined): Table {
  return { caption: "By tier", columns: ["Tier", ...groupColumns], empty: "No customers in scope.",
    rows: cur.tiers.map((tf) => groupRow(tierName(tf.tier), tf.figures, prevTier(prev, tf.tier))) };
}

function branchTable(cur: MonthKpis, prev: MonthKpis | undefined): Table {
  return { caption: "By branch", columns: ["Branch", ...groupColumns], empty: "No customers in scope.",
    rows: cur.branches.map((bf) => groupRow(branchName(bf.branchId), bf.figures, prevBranch(prev, bf.branchId))) };
}

function roseTable(cur: MonthKpis, prev: MonthKpis | undefined): Table {
  const rs: { name: string; now: number; was: number }[] = [];
  for (const tf of cur.tiers) {
    const was = prevTier(prev, tf.tier).churnRate;
    const now = tf.figures?.churnRate ?? 0;
    if (now > was) rs.push({ name: `tier ${tierName(tf.tier)}`, now, was });
  }
  for (const bf of cur.branches) {
    const was = prevBranch(prev, bf.branchId).churnRate;
    const now = bf.figures?.churnRate ?? 0;
    if (now > was) rs.push({ name: `branch ${branchName(bf.branchId)}`, now, was });
  }
  // Largest rise first (a stable sort, as churnctl's insertion sort).
  rs.sort((a, b) => (b.now - b.was) - (a.now - a.was));
  return { caption: "Tiers and branches whose churn rose", columns: ["Tier or branch", "Churn rate", "Previous", "Change"],
    empty: "Churn rose in no tier and no branch.", rows: rs.map((r) => [r.name, pct(r.now), pct(r.was), pp(r.now - r.was)]) };
}

function reasonTable(cur: MonthKpis): Table {
  return { caption: "Top reasons behind the month's alerts", columns: ["Rule", "Alerts raised with it"], empty: "No alert was raised in the month.",
    rows: (cur.alerts?.topReasons ?? []).map((r) => [r.ruleId, num(r.alerts)]) };
}

function responseTable(cur: MonthKpis): Table {
  return {
    caption: "Time to acknowledge against the tier SLA (per RM and tier; the tier's row is \"all RMs\"), most behind first",
    columns: ["RM", "Tier", "Acknowledged", "Median", "p90", "SLA", "Within SLA", "Breached"],
    empty: "No alert was acknowledged or overdue in the month.",
    rows: (cur.alerts?.responseTimes ?? []).map((r) => [r.managerId ? rmName(r.managerId) : "all RMs", tierName(r.tier), num(r.acknowledged),
      duration(r.medianSeconds), duration(r.p90Seconds), duration(r.slaSeconds), num(r.withinSla), num(r.breached)]),
  };
}

function overdueTable(cur: MonthKpis): Table {
  return { caption: "Overdue alerts by RM (open, not acknowledged, past the SLA at the month's end or now)",
    columns: ["RM", "Overdue alerts", "Oldest due"], empty: "No overdue alert.",
    rows: (cur.alerts?.overdue ?? []).map((o) => [rmName(o.managerId), num(o.overdue), rfc3339(o.oldestDueAt)]) };
}

function precisionTable(cur: MonthKpis): Table {
  return { caption: "Precision per rule (alerts resolved in the month)", columns: ["Rule", "RETAINED", "CHURNED", "UNREACHABLE", "FALSE_ALARM", "Precision"],
    empty: "No alert was resolved in the month.",
    rows: (cur.alerts?.precision ?? []).map((p) => [p.ruleId, num(p.retained), num(p.churned), num(p.unreachable), num(p.falseAlarm), pct(p.precision)]) };
}

const mdCell = (s: string) => s.replaceAll("|", "\\|");

export function markdown(r: Report): string {
  let b = `# ${r.title}\n\n`;
  for (const note of r.notes) b += `${note}\n`;
  for (const t of r.tables) {
    b += `\n## ${t.caption}\n\n`;
    if (t.rows.length === 0) {
      b += `${t.empty}\n`;
      continue;
    }
    b += `| ${t.columns.map(mdCell).join(" | ")} |\n`;
    b += `| ${t.columns.map((_, i) => (i === 0 ? ":---" : "---:")).join(" | ")} |\n`;
    for (const row of t.rows) b += `| ${row.map(mdCell).join(" | ")} |\n`;
  }
  return b;
}

// csvCell drops a leading "+" and defuses a cell a spreadsheet would run
// as a formula, as churnctl does.
function csvCell(v: string): string {
  let s = v.startsWith("+") ? v.slice(1) : v;
  if (s !== "" && "-=@".includes(s[0]) && Number.isNaN(Number(s))) s = `'${s}`;
  return s;
}

// quote follows Go's encoding/csv: quote a field with a comma, quote, line
// break or leading space.
function quote(s: string): string {
  if (s === "" || !(/[",\r\n]/.test(s) || s[0] === " " || s[0] === "\t")) return s;
  return `"${s.replaceAll('"', '""')}"`;
}

// csv is the report long: one line per cell, section,row,column,value.
export function csv(r: Report): string {
  const lines = [["section", "row", "column", "value"]];
  for (const t of r.tables) {
    for (const row of t.rows) {
      for (let i = 1; i < row.length && i < t.columns.length; i++) lines.push([csvCell(t.caption), csvCell(row[0]), csvCell(t.columns[i]), csvCell(row[i])]);
    }
  }
  return lines.map((l) => l.map(quote).join(",")).join("\n") + "\n";
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// html is a self-contained page with the same sections as churnctl's.
export function html(r: Report): string {
  const tables = r.tables.map((t) => t.rows.length
    ? `<table>\n<caption>${esc(t.caption)}</caption>\n<thead><tr>${t.columns.map((c) => `<th scope="col">${esc(c)}</th>`).join("")}</tr></thead>\n<tbody>\n${
      t.rows.map((row) => `<tr>${row.map((c, i) => (i === 0 ? `<th scope="row">${esc(c)}</th>` : `<td>${esc(c)}</td>`)).join("")}</tr>`).join("\n")}\n</tbody>\n</table>`
    : `<section aria-label="${esc(t.caption)}"><h2>${esc(t.caption)}</h2><p class="empty">${esc(t.empty)}</p></section>`).join("\n");
  return `<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>${esc(r.title)}</title>\n<style>
body { font-family: system-ui, sans-serif; color: #1b1f24; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; line-height: 1.4; }
table { border-collapse: collapse; margin: 1.5rem 0; width: 100%; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; font-size: 1.1rem; padding-bottom: 0.4rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.5rem; text-align: right; }
th[scope="row"], thead th:first-child { text-align: left; }
h2 { font-size: 1.1rem; } p.empty { font-style: italic; }
</style>\n</head>\n<body>\n<main>\n<h1>${esc(r.title)}</h1>\n${r.notes.map((x) => `<p class="note">${esc(x)}</p>`).join("\n")}\n${tables}\n</main>\n</body>\n</html>\n`;
}

export function render(r: Report, f: Format): string {
  return f === "md" ? markdown(r) : f === "csv" ? csv(r) : html(r);
}

export const mimeType: Record<Format, string> = { md: "text/markdown", csv: "text/csv", html: "text/html" };
