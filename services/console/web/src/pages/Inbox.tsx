// The inbox: every open alert the caller may see (a manager: own customers;
// a branch head: the branch, with a relationship-manager filter; ops and
// admins: all), most urgent first, updated live from the Subscribe stream.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import type { Alert } from "../gen/churnwatch/v1/alerts_pb";
import { AlertChange } from "../gen/churnwatch/v1/alerts_pb";
import { Severity, Tier } from "../gen/churnwatch/v1/common_pb";
import type { Problem } from "../api/clients";
import { problem, useApi } from "../api/clients";
import { seesManagers } from "../api/session";
import type { AlertStore, Filters, StateFilter } from "../alerts/inbox";
import { applyUpdate, filtersFromQuery, filtersToQuery, isOverdue, listRequest, merge, rows, topReason } from "../alerts/inbox";
import type { LiveStatus } from "../alerts/live";
import { follow } from "../alerts/live";
import { formatTime, relativeDue, ruleLabel, rules, severityLabel, stageLabel, stateLabel, tierLabel } from "../format";
import { alertPath, Link, navigate } from "../router";

const severities = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW];
const tiers = [Tier.HIGH_NET_WORTH, Tier.POTENTIAL, Tier.MASS, Tier.BASIC];
const stateChoices: { value: StateFilter; label: string }[] = [
  { value: "open", label: "Waiting for action (open, acknowledged, escalated)" },
  { value: "OPEN", label: "Open" },
  { value: "ACKNOWLEDGED", label: "Acknowledged" },
  { value: "ESCALATED", label: "Escalated" },
  { value: "SNOOZED", label: "Snoozed" },
  { value: "RESOLVED", label: "Resolved" },
];
const any = { value: "", label: "Any" };

// Choice is one labelled filter drop-down.
function Choice(props: { label: string; value: string; options: { value: string; label: string }[]; onChange: (v: string) => void }) {
  return (
    <label>
      {props.label}
      <select value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        {props.options.map((o) => <option value={o.value}>{o.label}</option>)}
      </select>
    </label>
  );
}

// At most this many pages of ListAlerts (200 each) are loaded at once.
const maxPages = 10;

function heading(role: string, branch: string): string {
  if (role === "manager") return "My customers at risk";
  if (role === "branch_head") return branch ? `Branch ${branch}: customers at risk` : "My branch: customers at risk";
  return "All customers at risk";
}

function liveText(s: LiveStatus): string {
  switch (s.kind) {
    case "connecting":
      return "Connecting to live updates…";
    case "live":
      return "Live: new alerts appear here as they are raised.";
    case "retrying":
      return `Connection lost; reconnecting in ${Math.ceil(s.inMs / 1000)} s. Nothing is missed meanwhile.`;
    case "stopped":
      return `Live updates stopped: ${s.reason || "the service refused the stream"}. Reload the page to try again.`;
  }
}

export function Inbox({ query }: { query: URLSearchParams }) {
  const api = useApi();
  const filters = filtersFromQuery(query);
  const key = filtersToQuery(filters);
  const [store, setStore] = useState<AlertStore>(new Map());
  const [fresh, setFresh] = useState<ReadonlySet<string>>(new Set());
  const [loading, setLoading] = useState(true);
  const [failure, setFailure] = useState<Problem | null>(null);
  const [live, setLive] = useState<LiveStatus>({ kind: "connecting" });
  const [announce, setAnnounce] = useState("");
  const [now, setNow] = useState(() => new Date());

  useEffect(() => {
    const t = setInterval(() => setNow(new Date()), 30000);
    return () => clearInterval(t);
  }, []);

  // The list for the current filters, from ListAlerts.
  useEffect(() => {
    let stop = false;
    setLoading(true);
    setFailure(null);
    (async () => {
      let token = "";
      for (let page = 0; page < maxPages; page++) {
        const res = await api.alerts.listAlerts(listRequest(filters, token));
        if (stop) return;
        setStore((s) => merge(s, res.alerts));
        token = res.nextPageToken;
        if (!token) break;
      }
      setLoading(false);
    })().catch((e) => {
      if (stop) return;
      const p = problem(e, "load the alerts");
      if (p.code === Code.Unauthenticated) api.signedOut();
      setFailure(p);
      setLoading(false);
    });
    return () => {
      stop = true;
    };
  }, [key]);

  // One live stream for the page's lifetime, whatever the filters.
  useEffect(() => {
    const ctl = new AbortController();
    void follow(api.alerts, {
      signal: ctl.signal,
      onStatus: (s) => {
        setLive(s);
        if (s.kind === "stopped" && s.code === Code.Unauthenticated) api.signedOut();
      },
      onUpdate: (u) => {
        setStore((s) => {
          const r = applyUpdate(s, u);
          if (r.fresh && u.alert && u.change !== AlertChange.SNAPSHOT) {
            const a = u.alert;
            setFresh((f) => new Set(f).add(a.alertId));
            setAnnounce(`New alert: ${a.customerDisplayName || a.customerId}, ${severityLabel[a.severity]}`);
          }
          return r.store;
        });
      },
    });
    return () => ctl.abort();
  }, []);

  const shown = useMemo(() => rows(store, filters), [store, key]);
  const managers = useMemo(() => {
    const m = new Set<string>();
    for (const a of store.values()) if (a.managerId) m.add(a.managerId);
    if (filters.manager) m.add(filters.manager);
    return [...m].sort();
  }, [store, filters.manager]);

  const set = (patch: Partial<Filters>) => navigate("/" + filtersToQuery({ ...filters, ...patch }), true);
  const many = seesManagers(api.session);

  return (
    <section>
      <h1>{heading(api.session.role, api.session.branch)}</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <Choice label="Severity" value={filters.severity === null ? "" : Severity[filters.severity]}
          options={[any, ...severities.map((v) => ({ value: Severity[v], label: severityLabel[v] }))]}
          onChange={(v) => set({ severity: v ? Severity[v as keyof typeof Severity] : null })} />
        <Choice label="Rule" value={filters.rule} options={[any, ...rules.map((r) => ({ value: r.id, label: r.label }))]}
          onChange={(v) => set({ rule: v })} />
        <Choice label="Tier" value={filters.tier === null ? "" : Tier[filters.tier]}
          options={[any, ...tiers.map((v) => ({ value: Tier[v], label: tierLabel[v] }))]}
          onChange={(v) => set({ tier: v ? Tier[v as keyof typeof Tier] : null })} />
        <Choice label="State" value={filters.state} options={stateChoices} onChange={(v) => set({ state: v as StateFilter })} />
        {many && (
          <Choice label="Relationship manager" value={filters.manager}
            options={[{ value: "", label: "All managers" }, ...managers.map((m) => ({ value: m, label: m }))]}
            onChange={(v) => set({ manager: v })} />
        )}
      </form>
      <p role="status" class={`live live-${live.kind}`}>{liveText(live)}</p>
      <p class="sr-only" aria-live="polite">{announce}</p>
      {failure && <p role="alert" class="error">{failure.message}</p>}
      <AlertTable alerts={shown} now={now} fresh={fresh} showManager={many} loading={loading} />
    </section>
  );
}

function AlertTable(props: { alerts: Alert[]; now: Date; fresh: ReadonlySet<string>; showManager: boolean; loading: boolean }) {
  const body = useRef<HTMLTableSectionElement>(null);
  // Arrow keys move between rows, Home/End to the first/last, Enter opens.
  const onKey = (e: KeyboardEvent, a: Alert) => {
    const row = e.currentTarget as HTMLTableRowElement;
    const all = Array.from(body.current?.querySelectorAll<HTMLTableRowElement>(":scope > tr") ?? []);
    const i = all.indexOf(row);
    const go = (j: number) => {
      const r = all[Math.max(0, Math.min(all.length - 1, j))];
      r?.focus();
    };
    if (e.key === "Enter") navigate(alertPath(a.alertId));
    else if (e.key === "ArrowDown") go(i + 1);
    else if (e.key === "ArrowUp") go(i - 1);
    else if (e.key === "Home") go(0);
    else if (e.key === "End") go(all.length - 1);
    else return;
    e.preventDefault();
  };
  return (
    <div class="table-wrap">
      <table class="alerts">
        <caption>Alerts</caption>
        <thead>
          <tr>
            <th scope="col">Customer</th>
            <th scope="col">Tier</th>
            <th scope="col">Severity</th>
            <th scope="col">Score</th>
            <th scope="col">Stage</th>
            <th scope="col">Top reason</th>
            <th scope="col">Acknowledge by</th>
            <th scope="col">State</th>
            {props.showManager && <th scope="col">Manager</th>}
          </tr>
        </thead>
        <tbody ref={body}>
          {props.alerts.map((a) => {
            const overdue = isOverdue(a, props.now);
            const reason = topReason(a);
            return (
              <tr key={a.alertId} tabIndex={0} data-alert-id={a.alertId}
                class={`sev-${severityLabel[a.severity].toLowerCase()}${overdue ? " overdue" : ""}`}
                onKeyDown={(e) => onKey(e, a)} onClick={() => navigate(alertPath(a.alertId))}>
                <td data-label="Customer">
                  <span>
                    <Link href={alertPath(a.alertId)} tabIndex={-1}>
                      <span class="cust-id">{a.customerId}</span>{" "}
                      <span class="cust-name">{a.customerDisplayName || "(no name on file)"}</span>
                    </Link>
                    {props.fresh.has(a.alertId) && <span class="badge new">New</span>}
                  </span>
                </td>
                <td data-label="Tier">{tierLabel[a.tier]}</td>
                <td data-label="Severity"><span class={`sev sev-${severityLabel[a.severity].toLowerCase()}`}>{severityLabel[a.severity]}</span></td>
                <td data-label="Score">{a.score}</td>
                <td data-label="Stage">{stageLabel[a.stage]}</td>
                <td data-label="Top reason">{reason ? ruleLabel(reason.ruleId) : "—"}</td>
                <td data-label="Acknowledge by">
                  <span>
                    {formatTime(a.ackDueAt)}
                    {overdue && <span class="badge overdue-badge"> Overdue</span>}
                    {!overdue && a.ackDueAt && <span class="due-rel"> ({relativeDue(a.ackDueAt, props.now)})</span>}
                  </span>
                </td>
                <td data-label="State">{stateLabel[a.state]}</td>
                {props.showManager && <td data-label="Manager">{a.managerId || "unassigned"}</td>}
              </tr>
            );
          })}
        </tbody>
      </table>
      {!props.loading && props.alerts.length === 0 && <p class="empty">No alerts match. Nobody on this list needs you right now.</p>}
      {props.loading && <p class="empty">Loading alerts…</p>}
    </div>
  );
}
