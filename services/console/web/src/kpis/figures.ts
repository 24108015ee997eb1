// What the KPI page derives from a GetKpis answer for showing it: changes
// in words, the chart series by tier, the RMs furthest behind their SLA.
// No figure is computed here that the RPC does not carry.
import type { GetKpisResponse, ResponseTime } from "../gen/churnwatch/v1/kpi_service_pb";
import { Tier } from "../gen/churnwatch/v1/common_pb";
import { tierLabel } from "../format";
import type { Trend } from "../components/TrendChart";

// monthOf is a date's UTC month, YYYY-MM (KPI months are UTC event time).
export function monthOf(d: Date): string {
  return d.toISOString().slice(0, 7);
}

// monthStart is the Unix second the UTC month YYYY-MM starts.
export function monthStart(m: string): number {
  const [y, mo] = m.split("-").map(Number);
  return Date.UTC(y, mo - 1, 1) / 1000;
}

// changeInWords says a report change cell ("+0.52 pp", "-3", "+1200.00 EUR")
// as direction and unit: "up 0.52 percentage points", "down 3 customers".
export function changeInWords(change: string, figure: string): string {
  const m = /^([+-])?(\d+(?:\.\d+)?)(?:\s+(.+))?$/.exec(change.trim());
  if (!m) return change;
  const [, sign, amount, unitRaw] = m;
  let unit = unitRaw ?? "";
  if (unit === "pp") unit = "percentage points";
  else if (!unit) unit = /^Alerts/.test(figure) ? "alerts" : /^(Customers|Win-backs)/.test(figure) ? "customers" : "";
  if (Number(amount) === 0) return "no change";
  if (amount === "1") unit = unit.replace(/^(customers|alerts)$/, (u) => u.slice(0, -1));
  const dir = sign === "-" ? "down" : "up";
  return `${dir} ${amount}${unit ? ` ${unit}` : ""}`;
}

const tiers = [Tier.HIGH_NET_WORTH, Tier.POTENTIAL, Tier.MASS, Tier.BASIC];

// trendOf is one rate per tier (and all tiers) over the answer's months, in
// per cent; a tier without customers in a month has no point there.
export function trendOf(resp: GetKpisResponse, rate: "churnRate" | "retentionRate"): Trend {
  const months = resp.months.map((m) => monthStart(m.month));
  const present = tiers.filter((t) => resp.months.some((m) => m.tiers.some((tf) => tf.tier === t)));
  const lines = [
    { label: "All tiers", values: resp.months.map((m) => (m.total && m.total.notChurnedAtStart > 0n ? 100 * m.total[rate] : null)) },
    ...present.map((t) => ({
      label: tierLabel[t],
      values: resp.months.map((m) => {
        const f = m.tiers.find((tf) => tf.tier === t)?.figures;
        return f && f.notChurnedAtStart > 0n ? 100 * f[rate] : null;
      }),
    })),
  ];
  return { months, lines };
}

// rmsBehind are the per-RM response times most behind the tier SLA: most
// breaches first, then the p90 furthest over the SLA.
export function rmsBehind(rts: ResponseTime[], n: number): ResponseTime[] {
  return rts
    .filter((r) => r.managerId !== "" && (r.breached > 0n || (r.slaSeconds > 0n && r.p90Seconds > r.slaSeconds)))
    .sort((a, b) => Number(b.breached - a.breached) || Number((b.p90Seconds - b.slaSeconds) - (a.p90Seconds - a.slaSeconds)))
    .slice(0, n);
}
