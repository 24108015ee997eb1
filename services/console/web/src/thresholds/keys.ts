// Threshold keys ("RULE.FIELD.TIER", "RULE.FIELD.TIER.CUR", "RULE.FIELD")
// laid out as a matrix: one row per rule and field, one column per tier.
import type { ThresholdBacktest, ThresholdSetting } from "../gen/churnwatch/v1/thresholds_pb";
import { ThresholdProposalState } from "../gen/churnwatch/v1/thresholds_pb";
import { Tier } from "../gen/churnwatch/v1/common_pb";
import { ruleLabel, rules } from "../format";

export const tierKeys = ["HIGH_NET_WORTH", "POTENTIAL", "MASS", "BASIC"] as const;

export interface KeyParts {
  // The key without its tier ("outflow.large.amount", "outflow.large.amount.CZK").
  base: string;
  rule: string;
  field: string;
  // "" when the key applies to every tier.
  tier: string;
}

export function parseKey(key: string): KeyParts {
  const parts = key.split(".");
  const ti = parts.findIndex((p) => (tierKeys as readonly string[]).includes(p));
  const tier = ti >= 0 ? parts[ti] : "";
  const baseParts = ti >= 0 ? [...parts.slice(0, ti), ...parts.slice(ti + 1)] : parts;
  const base = baseParts.join(".");
  const rule = rules.map((r) => r.id).filter((id) => base === id || base.startsWith(id + ".")).sort((a, b) => b.length - a.length)[0] ?? "";
  return { base, rule, field: rule ? base.slice(rule.length + 1) : base, tier };
}

export interface MatrixRow {
  base: string;
  rule: string;
  ruleLabel: string;
  field: string;
  // tier ("" = every tier) → { key, value }.
  cells: Record<string, { key: string; value: string }>;
}

export function matrix(settings: ThresholdSetting[]): MatrixRow[] {
  const rows = new Map<string, MatrixRow>();
  for (const s of settings) {
    const p = parseKey(s.key);
    let row = rows.get(p.base);
    if (!row) {
      row = { base: p.base, rule: p.rule, ruleLabel: p.rule ? ruleLabel(p.rule) : "General", field: p.field, cells: {} };
      rows.set(p.base, row);
    }
    row.cells[p.tier] = { key: s.key, value: s.value };
  }
  return [...rows.values()].sort((a, b) => a.base.localeCompare(b.base));
}

// stateLabel names a proposal state; a state added to the proto after this
// build is shown by its enum name.
export function proposalStateLabel(s: ThresholdProposalState): string {
  switch (s) {
    case ThresholdProposalState.PENDING:
      return "Waiting for approval";
    case ThresholdProposalState.APPROVED:
      return "Approved";
    case ThresholdProposalState.REJECTED:
      return "Rejected";
    case ThresholdProposalState.EXPIRED:
      return "Expired: not decided in time";
  }
  const name = (ThresholdProposalState as unknown as Record<number, string>)[s];
  if (name === "BACKTESTING") return "Back-testing: the rules service is replaying its events";
  return name ? name.toLowerCase().replaceAll("_", " ") : `state ${s}`;
}

// decided: the proposal can no longer be approved or rejected.
export function decided(s: ThresholdProposalState): boolean {
  return s === ThresholdProposalState.APPROVED || s === ThresholdProposalState.REJECTED || s === ThresholdProposalState.EXPIRED;
}

const ratio = (v: number) => `${(100 * v).toFixed(1)}%`;

// backtestSummary is one line: alerts and detection before → after.
export function backtestSummary(bt: ThresholdBacktest | undefined): string {
  if (!bt) return "no back-test";
  let s = `alerts ${bt.alertsBefore} → ${bt.alertsAfter}`;
  if (bt.detectionBefore && bt.detectionAfter) {
    s += `; precision ${ratio(bt.detectionBefore.precision)} → ${ratio(bt.detectionAfter.precision)}`;
    s += `; recall ${ratio(bt.detectionBefore.recall)} → ${ratio(bt.detectionAfter.recall)}`;
  }
  return s;
}

export const tierWord = (t: Tier) => Tier[t] ?? String(t);
export { ratio };
