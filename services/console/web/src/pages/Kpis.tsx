// The retention KPIs of one month (SPEC §9) from KpiService.GetKpis: a
// branch head sees their branch, ops and admins the bank (or one branch).
// Every number on the page and in the downloaded report is laid out by
// kpis/report.ts, the port of `churnctl report`, from the one RPC answer.
import { useEffect, useMemo, useState } from "preact/hooks";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { GetKpisResponse, ResponseTime } from "../gen/churnwatch/v1/kpi_service_pb";
import { Tier } from "../gen/churnwatch/v1/common_pb";
import type { Problem } from "../api/clients";
import { problem, useApi } from "../api/clients";
import { seesKpis } from "../api/session";
import type { Format } from "../kpis/report";
import { build, duration, mimeType, render, tierName } from "../kpis/report";
import { changeInWords, monthOf, rmsBehind, trendOf } from "../kpis/figures";
import { tierLabel } from "../format";
import { Link, navigate } from "../router";
import { TrendChart } from "../components/TrendChart";
import { ReportTable } from "../components/ReportTable";

const formatLabel: Record<Format, string> = { md: "Markdown (.md)", csv: "CSV (.csv)", html: "HTML page (.html)" };

function download(body: string, format: Format, name: string) {
  const url = URL.createObjectURL(new Blob([body], { type: `${mimeType[format]};charset=utf-8` }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function Kpis({ query }: { query: URLSearchParams }) {
  const api = useApi();
  const s = api.session;
  const month = query.get("month") ?? "";
  const branch = s.role === "branch_head" ? "" : (query.get("branch") ?? "");
  const [resp, setResp] = useState<GetKpisResponse | null>(null);
  const [failure, setFailure] = useState<Problem | null>(null);
  const [branches, setBranches] = useState<string[]>([]);
  const [format, setFormat] = useState<Format>("md");
  const allowed = seesKpis(s);
  const set = (m: string, b: string) => {
    const q = new URLSearchParams();
    if (m) q.set("month", m);
    if (b) q.set("branch", b);
    navigate(`/kpis?${q}`, true);
  };

  useEffect(() => {
    if (!allowed) return;
    let gone = false;
    setFailure(null);
    (async () => {
      try {
        if (!month) {
          // No month chosen: the latest month whose figures are final (closed
          // by event time), else the month event time has reached.
          const probe = await api.kpis.getKpis({ month: monthOf(new Date()), monthsBack: 1 });
          const reached = monthOf(probe.eventTime ? timestampDate(probe.eventTime) : new Date());
          const year = await api.kpis.getKpis({ month: reached, branchId: branch, monthsBack: 12 });
          if (!gone) set([...year.months].reverse().find((m) => m.closed)?.month ?? reached, branch);
          return;
        }
        const r = await api.kpis.getKpis({ month, branchId: branch, monthsBack: 12 });
        if (gone) return;
        setResp(r);
        if (!branch) setBranches(r.months[r.months.length - 1]?.branches.map((b) => b.branchId) ?? []);
      } catch (e) {
        if (gone) return;
        const p = problem(e, `load the KPIs of ${month || "this month"}`);
        if (p.code === 16) api.signedOut();
        setFailure(p);
      }
    })();
    return () => { gone = true; };
  }, [month, branch, allowed]);

  const report = useMemo(() => (resp && resp.months.length ? build(resp) : null), [resp]);
  const churn = useMemo(() => (resp ? trendOf(resp, "churnRate") : null), [resp]);
  const retention = useMemo(() => (resp ? trendOf(resp, "retentionRate") : null), [resp]);

  if (!allowed) {
    return (
      <section>
        <h1>Retention KPIs</h1>
        <p>
          The KPIs are a branch's or the bank's figures, not one relationship manager's book, so they are shown to branch heads,
          operations and administrators only. Your customers at risk are in <Link href="/">your inbox</Link>.
        </p>
      </section>
    );
  }
  const scope = resp?.branchId ? `branch ${resp.branchId}` : s.role === "branch_head" ? "my branch" : "the bank";
  const cur = resp?.months[resp.months.length - 1];
  const behind = cur ? rmsBehind(cur.alerts?.responseTimes ?? [], 5) : [];
  const fileName = `churnwatch-report-${month}${resp?.branchId ? `-${resp.branchId}` : ""}.${format}`;
  const table = (caption: string) => report?.tables.find((t) => t.caption.startsWith(caption));

  return (
    <section>
      <h1>Retention KPIs: {scope}</h1>
      <div class="filters">
        <label>
          Month
          <input type="month" value={month} max={monthOf(new Date())} onChange={(e) => e.currentTarget.value && set(e.currentTarget.value, branch)} />
        </label>
        {s.role !== "branch_head" && (
          <label>
            Branch
            <select value={branch} onChange={(e) => set(month, e.currentTarget.value)}>
              <option value="">The whole bank</option>
              {[...new Set([...branches, ...(branch ? [branch] : [])])].map((b) => <option value={b}>{b || "(no branch)"}</option>)}
            </select>
          </label>
        )}
        <label>
          Report format
          <select value={format} onChange={(e) => setFormat(e.currentTarget.value as Format)}>
            {(Object.keys(formatLabel) as Format[]).map((f) => <option value={f}>{formatLabel[f]}</option>)}
          </select>
        </label>
        <div class="filters-action">
          <button type="button" disabled={!report} onClick={() => report && download(render(report, format), format, fileName)}>
            Download the monthly report
          </button>
        </div>
      </div>
      {failure && <p role="alert" class="error">{failure.message}</p>}
      {!resp && !failure && <p class="empty" role="status">Loading the KPIs…</p>}
      {report && cur && churn && retention && (
        <>
          {report.notes.map((n) => <p class="note">{n}</p>)}
          <ul class="figures" aria-label="Headline figures">
            {["Churn rate", "Retention rate (month)", "Retention rate (quarter to date)", "Win-backs (CHURNED → WON_BACK)", "Alerts raised"].map((name) => {
              const row = report.tables[0].rows.find((r) => r[0] === name);
              return row && (
                <li class="figure">
                  <span class="figure-name">{name}</span>
                  <strong class="figure-value">{row[1]}</strong>
                  <span class="figure-change">{changeInWords(row[3], name)} on {report.tables[0].columns[2]}</span>
                </li>
              );
            })}
          </ul>
          <ReportTable t={report.tables[0]} cell={(c, row, i) => (i === row.length - 1 ? changeInWords(c, row[0]) : c)} />
          <h2>The last 12 months by tier</h2>
          <div class="charts">
            <TrendChart trend={churn} unit="Churn rate (%)" label={`Churn rate by tier, ${resp!.months[0].month} to ${cur.month}, per cent of the customers not churned at the month's start`} />
            <TrendChart trend={retention} unit="Retention rate (%)" label={`Retention rate by tier, ${resp!.months[0].month} to ${cur.month}, per cent`} />
          </div>
          <details>
            <summary>The charts' numbers as a table</summary>
            <div class="scroll" tabIndex={0}>
              <table class="grid">
                <caption>Churn and retention by tier, month by month</caption>
                <thead>
                  <tr><th scope="col">Month</th>{churn.lines.map((l) => <><th scope="col">{l.label}: churn</th><th scope="col">{l.label}: retention</th></>)}</tr>
                </thead>
                <tbody>
                  {resp!.months.map((m, i) => (
                    <tr>
                      <th scope="row">{m.month}</th>
                      {churn.lines.map((l, j) => <><td>{fmtRate(l.values[i])}</td><td>{fmtRate(retention.lines[j].values[i])}</td></>)}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </details>
          <h2>Relationship managers furthest behind their SLA</h2>
          <Behind rows={behind} />
          {table("By tier") && <ReportTable t={table("By tier")!} />}
          {!resp!.branchId && table("By branch") && <ReportTable t={table("By branch")!} />}
          {table("Tiers and branches whose churn rose") && <ReportTable t={table("Tiers and branches whose churn rose")!} />}
          {table("Top reasons") && <ReportTable t={table("Top reasons")!} />}
          {table("Overdue alerts by RM") && <ReportTable t={table("Overdue alerts by RM")!} />}
        </>
      )}
    </section>
  );
}

const fmtRate = (v: number | null) => (v === null ? "—" : `${v.toFixed(2)}%`);

function Behind({ rows }: { rows: ResponseTime[] }) {
  if (rows.length === 0) return <p class="empty">No relationship manager acknowledged late or has an overdue alert this month.</p>;
  return (
    <div class="scroll" tabIndex={0}>
      <table class="grid">
        <caption>Most breaches of the tier SLA first (time to acknowledge)</caption>
        <thead><tr>{["Relationship manager", "Tier", "Breached", "Within SLA", "Median", "p90", "SLA"].map((c) => <th scope="col">{c}</th>)}</tr></thead>
        <tbody>
          {rows.map((r) => (
            <tr>
              <th scope="row">{r.managerId}</th>
              <td>{tierLabel[r.tier as Tier] ?? tierName(r.tier)}</td>
              <td>{String(r.breached)}</td>
              <td>{String(r.withinSla)}</td>
              <td>{duration(r.medianSeconds)}</td>
              <td>{duration(r.p90Seconds)}{r.slaSeconds > 0n && r.p90Seconds > r.slaSeconds ? " (over the SLA)" : ""}</td>
              <td>{duration(r.slaSeconds)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}


