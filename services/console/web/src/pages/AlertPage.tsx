// The alert page: why the customer is at risk (every reason with its
// figures and events), what to do, what has happened so far, the customer's
// risk now, and the lifecycle actions.
import { useEffect, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Alert } from "../gen/churnwatch/v1/alerts_pb";
import { AlertState, Outcome } from "../gen/churnwatch/v1/alerts_pb";
import type { GetCustomerRiskResponse } from "../gen/churnwatch/v1/rules_admin_service_pb";
import type { Problem } from "../api/clients";
import { problem, useApi } from "../api/clients";
import { historyLines } from "../alerts/history";
import { offered } from "../alerts/actions";
import { isOverdue } from "../alerts/inbox";
import { riskSeries } from "../alerts/risk";
import { formatTime, outcomeLabel, ruleLabel, severityLabel, stageLabel, stateLabel, tierLabel, withUnit } from "../format";
import { Link } from "../router";
import { RiskChart } from "../components/RiskChart";

type Load =
  | { kind: "loading" }
  | { kind: "ok"; alert: Alert }
  | { kind: "not-yours" }
  | { kind: "missing" }
  | { kind: "failed"; problem: Problem };

export function AlertPage({ alertId }: { alertId: string }) {
  const api = useApi();
  const [load, setLoad] = useState<Load>({ kind: "loading" });
  const fetchAlert = async () => {
    try {
      const res = await api.alerts.getAlert({ alertId });
      if (!res.alert) setLoad({ kind: "missing" });
      else setLoad({ kind: "ok", alert: res.alert });
    } catch (e) {
      const p = problem(e, "load the alert");
      if (p.code === Code.Unauthenticated) api.signedOut();
      else if (p.code === Code.PermissionDenied) setLoad({ kind: "not-yours" });
      else if (p.code === Code.NotFound) setLoad({ kind: "missing" });
      else setLoad({ kind: "failed", problem: p });
    }
  };
  useEffect(() => {
    void fetchAlert();
  }, [alertId]);

  switch (load.kind) {
    case "loading":
      return <p class="empty">Loading the alert…</p>;
    case "not-yours":
      return (
        <section class="refused">
          <h1>Not yours</h1>
          <p>This alert belongs to a customer you do not look after, so churnwatch does not show it to you.</p>
          <p>If you think it should be yours, ask your branch head to reassign it. <Link href="/">Back to your inbox</Link>.</p>
        </section>
      );
    case "missing":
      return (
        <section>
          <h1>No such alert</h1>
          <p>There is no alert {alertId}. <Link href="/">Back to the inbox</Link>.</p>
        </section>
      );
    case "failed":
      return (
        <section>
          <h1>The alert could not be loaded</h1>
          <p role="alert" class="error">{load.problem.message}</p>
          <p><button type="button" onClick={() => void fetchAlert()}>Try again</button></p>
        </section>
      );
    case "ok":
      return <AlertView alert={load.alert} reload={fetchAlert} replace={(a) => setLoad({ kind: "ok", alert: a })} />;
  }
}

function AlertView({ alert: a, reload, replace }: { alert: Alert; reload: () => Promise<void>; replace: (a: Alert) => void }) {
  const now = new Date();
  const overdue = isOverdue(a, now);
  const name = a.customerDisplayName || "(no name on file)";
  return (
    <article class="alert-page">
      <p class="crumbs"><Link href="/">Inbox</Link> › {a.customerId}</p>
      <h1>{name} <span class="cust-id">{a.customerId}</span></h1>
      <dl class="facts">
        <div><dt>State</dt><dd data-testid="alert-state">{stateLabel[a.state]}</dd></div>
        <div><dt>Severity</dt><dd><span class={`sev sev-${severityLabel[a.severity].toLowerCase()}`}>{severityLabel[a.severity]}</span></dd></div>
        <div><dt>Risk score</dt><dd>{a.score} of 100</dd></div>
        <div><dt>Stage</dt><dd>{stageLabel[a.stage]}</dd></div>
        <div><dt>Tier</dt><dd>{tierLabel[a.tier]}</dd></div>
        <div><dt>Manager</dt><dd>{a.managerId || "unassigned"}{a.branchId ? ` · branch ${a.branchId}` : ""}</dd></div>
        <div><dt>Raised</dt><dd>{formatTime(a.createdAt)}</dd></div>
        <div><dt>Acknowledge by</dt><dd>{formatTime(a.ackDueAt)}{overdue && <strong class="badge overdue-badge"> Overdue</strong>}</dd></div>
        {a.state === AlertState.SNOOZED && <div><dt>Snoozed until</dt><dd>{formatTime(a.snoozedUntil)}</dd></div>}
        {a.state === AlertState.RESOLVED && <div><dt>Outcome</dt><dd>{outcomeLabel[a.outcome]}{a.note ? ` — ${a.note}` : ""}</dd></div>}
      </dl>
      <section aria-labelledby="todo">
        <h2 id="todo">What to do</h2>
        <p class="action">{a.recommendedAction || "No recommended action for this case: use your judgement and note what you did."}</p>
        <Actions alert={a} reload={reload} replace={replace} />
      </section>
      <section aria-labelledby="why">
        <h2 id="why">Why churnwatch warns</h2>
        <div class="table-wrap">
          <table class="reasons">
            <caption>Reasons</caption>
            <thead>
              <tr><th scope="col">Rule</th><th scope="col">Observed</th><th scope="col">Threshold</th><th scope="col">Threshold version</th><th scope="col">Triggering events</th><th scope="col">In plain words</th></tr>
            </thead>
            <tbody>
              {a.reasons.map((r) => (
                <tr>
                  <td data-label="Rule">{ruleLabel(r.ruleId)} <code>{r.ruleId}</code></td>
                  <td data-label="Observed">{withUnit(r.observed, r.unit, r.ruleId)}</td>
                  <td data-label="Threshold">{withUnit(r.threshold, r.unit, r.ruleId)}</td>
                  <td data-label="Threshold version">{String(r.thresholdVersion)}</td>
                  <td data-label="Triggering events">{r.eventIds.length ? r.eventIds.map((id) => <code class="event-id">{id}</code>) : "—"}</td>
                  <td data-label="In plain words">{r.detail || "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <CustomerRisk customerId={a.customerId} />
      <section aria-labelledby="history">
        <h2 id="history">History</h2>
        <div class="table-wrap">
          <table class="history">
            <caption>Alert history</caption>
            <thead><tr><th scope="col">Version</th><th scope="col">When</th><th scope="col">Who</th><th scope="col">What changed</th><th scope="col">Note</th></tr></thead>
            <tbody>
              {historyLines(a.history).map((h) => (
                <tr>
                  <td data-label="Version">{String(h.version)}</td>
                  <td data-label="When">{formatTime(h.entry.at)}</td>
                  <td data-label="Who">{h.who}</td>
                  <td data-label="What changed">{h.what}</td>
                  <td data-label="Note">{h.entry.note || "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
    </article>
  );
}

type Open = "none" | "snooze" | "resolve" | "reassign";

function localInput(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function Actions({ alert: a, reload, replace }: { alert: Alert; reload: () => Promise<void>; replace: (a: Alert) => void }) {
  const api = useApi();
  const can = offered(a, api.session);
  const [open, setOpen] = useState<Open>("none");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<Problem | null>(null);
  const [done, setDone] = useState("");
  const [outcome, setOutcome] = useState<Outcome>(Outcome.UNSPECIFIED);
  const [note, setNote] = useState("");
  const [until, setUntil] = useState(() => localInput(new Date(Date.now() + 24 * 3600 * 1000)));
  const [manager, setManager] = useState("");

  const run = async (doing: string, call: () => Promise<{ alert?: Alert }>, said: string) => {
    setBusy(true);
    setFailure(null);
    setDone("");
    try {
      const res = await call();
      if (res.alert) replace(res.alert);
      setOpen("none");
      setNote("");
      setDone(said);
      await reload(); // the history comes with GetAlert only
    } catch (e) {
      const p = problem(e, doing);
      if (p.code === Code.Unauthenticated) api.signedOut();
      setFailure(p);
    } finally {
      setBusy(false);
    }
  };

  const cancel = <button type="button" class="secondary" onClick={() => setOpen("none")}>Cancel</button>;
  return (
    <div class="actions">
      <div class="buttons">
        {can.acknowledge && (
          <button type="button" disabled={busy}
            onClick={() => void run("acknowledge the alert", () => api.alerts.acknowledgeAlert({ alertId: a.alertId }), "Acknowledged.")}>
            Acknowledge
          </button>
        )}
        {can.snooze && <button type="button" disabled={busy} aria-expanded={open === "snooze"} onClick={() => setOpen("snooze")}>Snooze</button>}
        {can.resolve && <button type="button" disabled={busy} aria-expanded={open === "resolve"} onClick={() => setOpen("resolve")}>Resolve</button>}
        {can.reassign && <button type="button" disabled={busy} aria-expanded={open === "reassign"} onClick={() => setOpen("reassign")}>Reassign</button>}
      </div>
      {open === "resolve" && (
        <form class="card" aria-label="Resolve the alert" onSubmit={(e) => {
          e.preventDefault();
          void run("resolve the alert", () => api.alerts.resolveAlert({ alertId: a.alertId, outcome, note }), "Resolved.");
        }}>
          <label>
            Outcome
            <select required value={outcome === Outcome.UNSPECIFIED ? "" : Outcome[outcome]}
              onChange={(e) => setOutcome(e.currentTarget.value ? Outcome[e.currentTarget.value as keyof typeof Outcome] : Outcome.UNSPECIFIED)}>
              <option value="">Choose how it ended…</option>
              {[Outcome.RETAINED, Outcome.CHURNED, Outcome.UNREACHABLE, Outcome.FALSE_ALARM].map((o) => <option value={Outcome[o]}>{outcomeLabel[o]}</option>)}
            </select>
          </label>
          <label>
            Note
            <textarea required value={note} onInput={(e) => setNote(e.currentTarget.value)} placeholder="What you did and what the customer said" />
          </label>
          <div class="buttons"><button type="submit" disabled={busy}>Confirm</button>{cancel}</div>
        </form>
      )}
      {open === "snooze" && (
        <form class="card" aria-label="Snooze the alert" onSubmit={(e) => {
          e.preventDefault();
          const when = new Date(until);
          if (isNaN(when.getTime()) || when.getTime() <= Date.now()) {
            setFailure({ code: Code.InvalidArgument, message: "Choose a time in the future to snooze until." });
            return;
          }
          void run("snooze the alert", () => api.alerts.snoozeAlert({ alertId: a.alertId, until: timestampFromDate(when), note }), `Snoozed until ${when.toLocaleString()}.`);
        }}>
          <label>
            Snooze until
            <input type="datetime-local" required value={until} onInput={(e) => setUntil(e.currentTarget.value)} />
          </label>
          <label>
            Note
            <textarea value={note} onInput={(e) => setNote(e.currentTarget.value)} placeholder="Why it can wait" />
          </label>
          <div class="buttons"><button type="submit" disabled={busy}>Confirm</button>{cancel}</div>
        </form>
      )}
      {open === "reassign" && (
        <form class="card" aria-label="Reassign the alert" onSubmit={(e) => {
          e.preventDefault();
          void run("reassign the alert", () => api.alerts.reassignAlert({ alertId: a.alertId, managerId: manager.trim(), note }), `Reassigned to ${manager.trim()}.`);
        }}>
          <label>
            New manager
            <input required value={manager} onInput={(e) => setManager(e.currentTarget.value)} placeholder="rm-002" />
          </label>
          <label>
            Note
            <textarea required value={note} onInput={(e) => setNote(e.currentTarget.value)} placeholder="Why this manager takes it over" />
          </label>
          <div class="buttons"><button type="submit" disabled={busy}>Confirm</button>{cancel}</div>
        </form>
      )}
      <p role="status" class="done">{done}</p>
      {failure && <p role="alert" class="error">{failure.message}</p>}
    </div>
  );
}

function CustomerRisk({ customerId }: { customerId: string }) {
  const api = useApi();
  const [risk, setRisk] = useState<GetCustomerRiskResponse | null>(null);
  const [failure, setFailure] = useState<Problem | null>(null);
  useEffect(() => {
    api.rules.getCustomerRisk({ customerId }).then(setRisk, (e) => {
      const p = problem(e, "load the customer's risk");
      if (p.code === Code.Unauthenticated) api.signedOut();
      setFailure(p);
    });
  }, [customerId]);
  const series = risk ? riskSeries(risk) : null;
  return (
    <section aria-labelledby="risk">
      <h2 id="risk">The customer's risk now</h2>
      {failure && <p role="alert" class="error">{failure.message}</p>}
      {!risk && !failure && <p class="empty">Loading the customer's risk…</p>}
      {risk && (
        <>
          <dl class="facts">
            <div><dt>Stage</dt><dd>{stageLabel[risk.stage]}</dd></div>
            <div><dt>Risk score</dt><dd>{risk.score} of 100 ({severityLabel[risk.severity]})</dd></div>
            <div><dt>Last own activity</dt><dd>{formatTime(risk.lastActivity)}</dd></div>
            <div><dt>Bank time (events seen up to)</dt><dd>{formatTime(risk.partitionClock)}</dd></div>
            <div><dt>Thresholds version</dt><dd>{String(risk.thresholdVersion)}</dd></div>
          </dl>
          {risk.liveSignals.length > 0 && (
            <ul class="signals" aria-label="Warning signs in force">
              {risk.liveSignals.map((s) => (
                <li><strong>{ruleLabel(s.ruleId)}</strong> ({formatTime(s.eventTime)}){s.explanation?.detail ? `: ${s.explanation.detail}` : ""}</li>
              ))}
            </ul>
          )}
          {series ? (
            <RiskChart series={series} label={`Transactions per day and end-of-day balance, last ${series.days.length} days`} />
          ) : (
            <p class="empty" data-testid="no-daily">The risk service does not send the customer's daily activity and balance yet, so no chart is shown.</p>
          )}
        </>
      )}
    </section>
  );
}
