// Shadow sets on the Thresholds page (ShadowService, docs/rules.md "Shadow
// thresholds"): proposed threshold sets that run live beside the set in
// force and notify no one. The list of running and stopped sets, Stop with
// a confirmation, the form that starts one, and the report comparing each
// set with live. The rules service decides and checks everything; its
// refusals are shown as it words them.
import { useEffect, useRef, useState } from "preact/hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import type { GetShadowReportResponse, ShadowSet } from "../gen/churnwatch/v1/shadow_service_pb";
import type { ThresholdSetting } from "../gen/churnwatch/v1/thresholds_pb";
import { problem, useApi } from "../api/clients";
import { formatTime } from "../format";
import { Link } from "../router";
import type { ChangeRow } from "../thresholds/shadow";
import { changedSettings, reportSince, reportTables, shadowState, startSettings } from "../thresholds/shadow";
import { ReportTable } from "./ReportTable";

// refusal words a failed call: the rules service's own text when it refused
// what was asked (a bad key or value, a name in use, a fourth set), the
// console's usual sentence with what to do next otherwise.
function refusal(e: unknown, doing: string): string {
  const err = ConnectError.from(e);
  const refused = [Code.InvalidArgument, Code.AlreadyExists, Code.ResourceExhausted, Code.NotFound].includes(err.code);
  if (refused && err.rawMessage) return `The rules service refused to ${doing}: ${err.rawMessage}`;
  return problem(e, doing).message;
}

export const reportHref = (name: string) => `/thresholds?report=${encodeURIComponent(name || "all")}#shadow-report`;

export function ShadowSets({ settings, report, onSignedOut }: { settings: ThresholdSetting[]; report: string; onSignedOut: () => void }) {
  const api = useApi();
  const [sets, setSets] = useState<ShadowSet[] | null>(null);
  const [failure, setFailure] = useState("");
  const [tick, setTick] = useState(0);
  const reload = () => setTick((n) => n + 1);

  useEffect(() => {
    let gone = false;
    api.shadow.listShadows({}).then(
      (r) => { if (!gone) { setSets(r.shadows); setFailure(""); } },
      (e) => {
        if (gone) return;
        if (ConnectError.from(e).code === Code.Unauthenticated) onSignedOut();
        setFailure(problem(e, "list the shadow sets").message);
      },
    );
    return () => { gone = true; };
  }, [tick]);

  const running = sets?.filter((s) => shadowState(s) === "running") ?? [];
  const stopped = sets?.filter((s) => shadowState(s) === "stopped") ?? [];
  return (
    <section aria-labelledby="shadow-h">
      <h2 id="shadow-h">Shadow sets</h2>
      <p>
        A shadow set is a proposed change of thresholds that runs on today's events beside the set in force, without notifying anyone:
        no alert reaches an inbox, a stream or an e-mail. Its report shows what it would have raised, next to what the live set raised
        since it started. At most 3 run at once; a stopped set keeps its name and its report.
      </p>
      {failure && <p role="alert" class="error">{failure}</p>}
      {!sets && !failure && <p class="empty" role="status">Loading the shadow sets…</p>}
      {sets && (
        <>
          <h3>Running ({running.length} of 3)</h3>
          {running.length === 0 ? <p class="empty">No shadow set is running.</p> : running.map((s) => <ShadowCard key={s.name} s={s} onDone={reload} />)}
          <h3>Stopped</h3>
          {stopped.length === 0 ? <p class="empty">No shadow set has been stopped.</p> : stopped.map((s) => <ShadowCard key={s.name} s={s} onDone={reload} />)}
          {sets.length > 1 && <p><Link href={reportHref("")}>Report of all sets side by side</Link></p>}
        </>
      )}
      {report && <ShadowReport key={`${report}/${tick}`} name={report === "all" ? "" : report} />}
      <StartShadow settings={settings} onDone={reload} />
    </section>
  );
}

function ShadowCard({ s, onDone }: { s: ShadowSet; onDone: () => void }) {
  const api = useApi();
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState("");
  const state = shadowState(s);
  // Keyboard focus follows the confirmation: to its harmless choice when it
  // opens, back to Stop when it is cancelled.
  const keep = useRef<HTMLButtonElement>(null);
  const stopButton = useRef<HTMLButtonElement>(null);
  const asked = useRef(false);
  useEffect(() => {
    if (confirming) keep.current?.focus();
    else if (asked.current) stopButton.current?.focus();
    asked.current = confirming;
  }, [confirming]);
  const stop = async () => {
    setBusy(true);
    setFailure("");
    try {
      await api.shadow.stopShadow({ name: s.name });
      setConfirming(false);
      onDone();
    } catch (e) {
      setFailure(refusal(e, `stop ${s.name}`));
    } finally {
      setBusy(false);
    }
  };
  return (
    <article class="proposal" aria-labelledby={`shadow-${s.name}`}>
      <h4 id={`shadow-${s.name}`}>Shadow set {s.name}: {state}</h4>
      <p>
        Started by <strong>{s.actor || "—"}</strong> {formatTime(s.startedAt)} from live version {String(s.baseVersion)}
        {s.stoppedAt ? `; stopped ${formatTime(s.stoppedAt)}` : "; scoring every new event"}
        {s.purgedAt ? `; purged ${formatTime(s.purgedAt)}, so it has no report any more` : ""}. Reason: “{s.reason}”
      </p>
      <ul aria-label={`Changes of ${s.name}`}>
        {changedSettings(s.settings).map((kv) => <li><code>{kv.key}</code> → <strong>{kv.value}</strong></li>)}
      </ul>
      <div class="buttons">
        {!s.purgedAt && <Link href={reportHref(s.name)} class="button-link">Report of {s.name}</Link>}
        {state === "running" && !confirming && (
          <button type="button" class="secondary" ref={stopButton} onClick={() => setConfirming(true)}>Stop {s.name}</button>
        )}
      </div>
      {confirming && (
        <div class="card" role="group" aria-label={`Stop ${s.name}?`}>
          <p>
            Stop <strong>{s.name}</strong>? It stops scoring new events for good: a stopped set cannot be restarted, and its name cannot be used
            again. Its report stays readable.
          </p>
          <div class="buttons">
            <button type="button" disabled={busy} onClick={stop}>Yes, stop {s.name}</button>
            <button type="button" class="secondary" ref={keep} disabled={busy} onClick={() => setConfirming(false)}>Keep it running</button>
          </div>
        </div>
      )}
      {failure && <p role="alert" class="error">{failure}</p>}
    </article>
  );
}

function StartShadow({ settings, onDone }: { settings: ThresholdSetting[]; onDone: () => void }) {
  const api = useApi();
  const first = settings[0]?.key ?? "";
  const [name, setName] = useState("");
  const [reason, setReason] = useState("");
  const [rows, setRows] = useState<ChangeRow[]>([{ key: first, value: "" }]);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState("");
  const [done, setDone] = useState("");
  const now = (key: string) => settings.find((x) => x.key === key)?.value ?? "";
  const edit = (i: number, row: Partial<ChangeRow>) => setRows(rows.map((r, j) => (j === i ? { ...r, ...row } : r)));
  const submit = async (e: Event) => {
    e.preventDefault();
    setDone("");
    const checked = startSettings(rows);
    if ("error" in checked) return setFailure(checked.error);
    if (!name.trim()) return setFailure("Give the set a name: 1 to 32 of a-z, 0-9 and '-'.");
    if (!reason.trim()) return setFailure("Say why: a reason is required, and it is shown with the set.");
    setBusy(true);
    setFailure("");
    try {
      const r = await api.shadow.startShadow({ name: name.trim(), reason: reason.trim(), settings: checked.settings });
      setDone(`Shadow set ${r.shadow?.name} started from live version ${String(r.shadow?.baseVersion)}. It scores every new event beside the live set; nothing is notified.`);
      setName("");
      setReason("");
      setRows([{ key: first, value: "" }]);
      onDone();
    } catch (err) {
      setFailure(refusal(err, "start the shadow set"));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="start-shadow-h">
      <h3 id="start-shadow-h">Start a shadow set</h3>
      <label>
        Name of the set
        <input value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby="shadow-name-help" autocomplete="off" />
      </label>
      <p class="note" id="shadow-name-help">1 to 32 of a-z, 0-9 and '-'. A name is never used twice, not even after the set is stopped.</p>
      {rows.map((r, i) => (
        <fieldset class="change">
          <legend>Change {i + 1}</legend>
          <label>
            Threshold to change
            <select value={r.key} onChange={(e) => edit(i, { key: e.currentTarget.value })}>
              {settings.map((x) => <option value={x.key}>{x.key} (now {x.value})</option>)}
            </select>
          </label>
          <label>
            Value in the shadow set
            <input value={r.value} onInput={(e) => edit(i, { value: e.currentTarget.value })} placeholder={now(r.key)} />
          </label>
          {rows.length > 1 && (
            <div class="buttons">
              <button type="button" class="secondary" onClick={() => setRows(rows.filter((_, j) => j !== i))}>Remove change {i + 1}</button>
            </div>
          )}
        </fieldset>
      ))}
      <div class="buttons">
        <button type="button" class="secondary" onClick={() => setRows([...rows, { key: first, value: "" }])}>Add another threshold</button>
      </div>
      <label>
        Why run it
        <textarea value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      </label>
      <div class="buttons"><button type="submit" disabled={busy}>Start the shadow set</button></div>
      {failure && <p role="alert" class="error">{failure}</p>}
      <p role="status" class="done">{done}</p>
    </form>
  );
}

function ShadowReport({ name }: { name: string }) {
  const api = useApi();
  const [resp, setResp] = useState<GetShadowReportResponse | null>(null);
  const [failure, setFailure] = useState("");
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    let gone = false;
    api.shadow.getShadowReport({ name }).then(
      (r) => { if (!gone) setResp(r); },
      (e) => { if (!gone) setFailure(refusal(e, `read the report of ${name || "the shadow sets"}`)); },
    );
    return () => { gone = true; };
  }, [name]);
  // Opened from a set's card: take the keyboard and the screen reader there.
  useEffect(() => { heading.current?.focus(); }, []);
  const since = resp ? reportSince(resp) : undefined;
  const tables = resp ? reportTables(resp) : [];
  return (
    <section class="report" id="shadow-report" aria-labelledby="shadow-report-h">
      <h3 id="shadow-report-h" tabIndex={-1} ref={heading}>Report: {name ? `${name} against live` : "every shadow set against live"}</h3>
      {failure && <p role="alert" class="error">{failure}</p>}
      {!resp && !failure && <p class="empty" role="status">Loading the report…</p>}
      {resp && (
        <>
          <p>
            For the same live events, the alerts each set raised{since ? ` since ${formatTime(since.startedAt)}, when ${since.name} started` : ""}.
            The <strong>live</strong> row is the set in force: the alerts relationship managers really got in that time.
          </p>
          <ul class="note">
            <li>
              <strong>Judged</strong> are the alerted customers whose live alert was resolved with an outcome; <strong>true</strong> are those
              retained or churned (a false alarm is false, unreachable is not judged); <strong>precision</strong> is true ÷ judged. A customer
              alerted only by a shadow set has no outcome, since no relationship manager saw it: a shadow set's precision rests on the
              customers live alerted too.
            </li>
            <li><strong>Only this set alerted</strong> counts the customers this set alerted and no other set in the report did.</li>
            <li>An alert with several rules counts once under each of them in "by rule".</li>
            <li>The live set's severities are not kept with the figures this report reads ("not kept"); the live alerts themselves are in the inbox.</li>
          </ul>
          {tables.map((t) => <ReportTable t={t} />)}
          <p><Link href="/thresholds">Close the report</Link></p>
        </>
      )}
    </section>
  );
}
