// Thresholds (SPEC §6): the values in force per rule and tier with their
// version; four-eyes proposals with their back-test side by side, approved
// or rejected by a second principal; shadow sets and their report
// (?report=NAME|all); the audit history. Ops and admins
// only (auth.Access); the rules service decides who may do what.
import { useEffect, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import type { ThresholdChange, ThresholdProposal, ThresholdSet, ThresholdBacktest } from "../gen/churnwatch/v1/thresholds_pb";
import { ThresholdChangeKind, ThresholdProposalState } from "../gen/churnwatch/v1/thresholds_pb";
import type { Problem } from "../api/clients";
import { problem, useApi } from "../api/clients";
import { managesThresholds } from "../api/session";
import { formatTime, tierLabel } from "../format";
import { Tier } from "../gen/churnwatch/v1/common_pb";
import { backtestSummary, decided, matrix, proposalStateLabel, ratio, tierKeys } from "../thresholds/keys";
import { Link } from "../router";
import { ShadowSets } from "../components/ShadowSets";

const tierColumn: Record<string, string> = {
  "": "All tiers",
  HIGH_NET_WORTH: tierLabel[Tier.HIGH_NET_WORTH],
  POTENTIAL: tierLabel[Tier.POTENTIAL],
  MASS: tierLabel[Tier.MASS],
  BASIC: tierLabel[Tier.BASIC],
};

interface Loaded {
  set: ThresholdSet;
  proposals: ThresholdProposal[];
  changes: ThresholdChange[];
}

export function Thresholds({ query }: { query: URLSearchParams }) {
  const api = useApi();
  const s = api.session;
  const [data, setData] = useState<Loaded | null>(null);
  const [failure, setFailure] = useState<Problem | null>(null);
  const [tick, setTick] = useState(0);
  const reload = () => setTick((n) => n + 1);
  const allowed = managesThresholds(s);

  useEffect(() => {
    if (!allowed) return;
    let gone = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    (async () => {
      try {
        const [t, p, c] = await Promise.all([
          api.rules.getThresholds({}),
          api.rules.listThresholdProposals({ limit: 50 }),
          api.rules.listThresholdChanges({ limit: 50 }),
        ]);
        if (gone) return;
        setData({ set: t.thresholds!, proposals: p.proposals, changes: c.changes });
        setFailure(null);
        // A proposal still being back-tested by the server: look again soon.
        if (p.proposals.some((x) => !decided(x.state) && x.state !== ThresholdProposalState.PENDING)) timer = setTimeout(reload, 2000);
      } catch (e) {
        if (gone) return;
        const pr = problem(e, "load the thresholds");
        if (pr.code === Code.Unauthenticated) api.signedOut();
        setFailure(pr);
      }
    })();
    return () => { gone = true; if (timer) clearTimeout(timer); };
  }, [tick, allowed]);

  if (!allowed) {
    return (
      <section>
        <h1>Thresholds</h1>
        <p>Thresholds are read and changed by operations and administrators only. <Link href="/">Go to the inbox</Link>.</p>
      </section>
    );
  }
  const open = data?.proposals.filter((p) => !decided(p.state)) ?? [];
  return (
    <section>
      <h1>Thresholds</h1>
      {failure && <p role="alert" class="error">{failure.message}</p>}
      {!data && !failure && <p class="empty" role="status">Loading the thresholds…</p>}
      {data && (
        <>
          <p>
            Version <strong>{String(data.set.version)}</strong> is in force
            {data.set.updatedAt ? `, set ${formatTime(data.set.updatedAt)}` : ""}
            {data.set.updatedBy ? ` by ${data.set.updatedBy}` : ""}{data.set.reason ? `: “${data.set.reason}”` : ""}.
          </p>
          <Values set={data.set} />
          <Propose set={data.set} onDone={reload} />
          <h2>Proposals waiting for a decision</h2>
          {open.length === 0 ? <p class="empty">No proposal is waiting.</p> : open.map((p) => <ProposalCard key={p.id} p={p} me={s.sub} onDone={reload} />)}
          <ShadowSets settings={data.set.settings} report={query.get("report") ?? ""} onSignedOut={api.signedOut} />
          <h2>History</h2>
          <History changes={data.changes} />
        </>
      )}
    </section>
  );
}

function Values({ set }: { set: ThresholdSet }) {
  const rows = matrix(set.settings);
  const cols = ["", ...tierKeys].filter((t) => rows.some((r) => r.cells[t]));
  return (
    <div class="scroll" tabIndex={0}>
      <table class="grid">
        <caption>Thresholds in force (version {String(set.version)})</caption>
        <thead><tr><th scope="col">Rule</th><th scope="col">Setting</th>{cols.map((c) => <th scope="col">{tierColumn[c]}</th>)}</tr></thead>
        <tbody>
          {rows.map((r) => (
            <tr>
              <th scope="row">{r.ruleLabel}</th>
              <td><code>{r.base}</code></td>
              {cols.map((c) => <td>{r.cells[c]?.value ?? "—"}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Propose({ set, onDone }: { set: ThresholdSet; onDone: () => void }) {
  const api = useApi();
  const [key, setKey] = useState(set.settings[0]?.key ?? "");
  const [value, setValue] = useState("");
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState("");
  const [done, setDone] = useState("");
  const current = set.settings.find((x) => x.key === key)?.value ?? "";
  const submit = async (e: Event) => {
    e.preventDefault();
    setDone("");
    if (!value.trim()) return setFailure("Enter the new value.");
    if (!reason.trim()) return setFailure("Say why: a reason is required, and the approver reads it.");
    setBusy(true);
    setFailure("");
    try {
      const r = await api.rules.proposeThresholdChange({ expectedVersion: set.version, settings: [{ key, value: value.trim() }], reason: reason.trim() });
      setDone(`Proposal ${r.proposal?.id} made (${key} ${current} → ${value.trim()}). A second person — an admin, or operations other than you — must approve it before it goes live.`);
      setValue("");
      setReason("");
      onDone();
    } catch (err) {
      setFailure(problem(err, "propose the change").message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="propose-h">
      <h2 id="propose-h">Propose a change</h2>
      <label>
        Setting
        <select value={key} onChange={(e) => setKey(e.currentTarget.value)}>
          {set.settings.map((x) => <option value={x.key}>{x.key} (now {x.value})</option>)}
        </select>
      </label>
      <label>
        New value
        <input value={value} onInput={(e) => setValue(e.currentTarget.value)} placeholder={current} />
      </label>
      <label>
        Reason
        <textarea value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      </label>
      <div class="buttons"><button type="submit" disabled={busy}>Propose</button></div>
      {failure && <p role="alert" class="error">{failure}</p>}
      <p role="status" class="done">{done}</p>
    </form>
  );
}

function ProposalCard({ p, me, onDone }: { p: ThresholdProposal; me: string; onDone: () => void }) {
  const api = useApi();
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState("");
  const own = p.proposer === me;
  const pending = p.state === ThresholdProposalState.PENDING;
  const decide = async (approve: boolean) => {
    if (!approve && !note.trim()) return setFailure("Say why you reject it: a reason is required.");
    setBusy(true);
    setFailure("");
    try {
      if (approve) await api.rules.approveThresholdChange({ proposalId: p.id, reason: note.trim() });
      else await api.rules.rejectThresholdChange({ proposalId: p.id, reason: note.trim() });
      onDone();
    } catch (err) {
      setFailure(problem(err, approve ? "approve the proposal" : "reject the proposal").message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <article class="proposal" aria-labelledby={`h-${p.id}`}>
      <h3 id={`h-${p.id}`}>Proposal {p.id}: {proposalStateLabel(p.state)}</h3>
      <p>
        Proposed by <strong>{p.proposer}</strong> {formatTime(p.proposedAt)} against version {String(p.baseVersion)}; decide before {formatTime(p.expiresAt)}.
        Reason: “{p.reason}”
      </p>
      <ul>
        {p.changes.map((c) => <li><code>{c.key}</code>: {c.oldValue || "—"} → <strong>{c.newValue}</strong></li>)}
      </ul>
      <Backtest bt={p.backtest} id={p.id} />
      {pending && own && (
        <p class="note" id={`own-${p.id}`}>
          You proposed this, so you cannot approve or reject it: four eyes means a second person decides — an admin, or operations other than you.
        </p>
      )}
      {pending && !own && (
        <div class="card">
          <label>
            Note (required to reject)
            <textarea value={note} onInput={(e) => setNote(e.currentTarget.value)} />
          </label>
          <div class="buttons">
            <button type="button" disabled={busy} onClick={() => decide(true)}>Approve</button>
            <button type="button" class="secondary" disabled={busy} onClick={() => decide(false)}>Reject</button>
          </div>
          {failure && <p role="alert" class="error">{failure}</p>}
        </div>
      )}
    </article>
  );
}

function Backtest({ bt, id }: { bt: ThresholdBacktest | undefined; id: string }) {
  if (!bt) return <p class="empty">No back-test yet.</p>;
  return (
    <div class="backtest">
      <p>
        Back-test over {bt.history || "the recent events"} ({String(bt.customers)} customers, {String(bt.eventsAccepted)} events,
        {" "}{formatTime(bt.start)} to {formatTime(bt.end)}; computed by {bt.computedBy || "—"}), starting from version {String(bt.baselineVersion)}.
      </p>
      <div class="side">
        <div class="scroll" tabIndex={0}>
          <table class="grid">
            <caption>Alerts before and after {id}, per rule and tier</caption>
            <thead><tr>{["Rule", "Tier", "Before", "After", "Gained the rule", "Lost the rule"].map((c) => <th scope="col">{c}</th>)}</tr></thead>
            <tbody>
              <tr><th scope="row">All alerts</th><td>all tiers</td><td>{bt.alertsBefore}</td><td>{bt.alertsAfter}</td><td /><td /></tr>
              {bt.rules.map((r) => (
                <tr>
                  <th scope="row">{r.ruleId}</th>
                  <td>{tierLabel[r.tier] ?? r.tier}</td>
                  <td>{r.before}</td><td>{r.after}</td><td>{r.added}</td><td>{r.removed}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div class="scroll" tabIndex={0}>
          <table class="grid">
            <caption>Detection before and after {id}</caption>
            <thead><tr><th scope="col">Measure</th><th scope="col">Before</th><th scope="col">After</th></tr></thead>
            <tbody>
              {bt.detectionBefore && bt.detectionAfter ? (
                <>
                  <tr><th scope="row">Precision</th><td>{ratio(bt.detectionBefore.precision)}</td><td>{ratio(bt.detectionAfter.precision)}</td></tr>
                  <tr><th scope="row">Recall</th><td>{ratio(bt.detectionBefore.recall)}</td><td>{ratio(bt.detectionAfter.recall)}</td></tr>
                  <tr><th scope="row">Labelled customers</th><td>{bt.detectionBefore.labelledCustomers}</td><td>{bt.detectionAfter.labelledCustomers}</td></tr>
                </>
              ) : (
                <tr><th scope="row">Precision and recall</th><td colSpan={2}>not measured: no outcomes to judge by</td></tr>
              )}
            </tbody>
          </table>
        </div>
      </div>
    </div>
  );
}

function History({ changes }: { changes: ThresholdChange[] }) {
  if (changes.length === 0) return <p class="empty">No change yet.</p>;
  return (
    <div class="scroll" tabIndex={0}>
      <table class="grid">
        <caption>Threshold changes, newest first</caption>
        <thead><tr>{["Version", "When", "How", "Proposed by", "Approved by", "Reason", "Change", "Back-test"].map((c) => <th scope="col">{c}</th>)}</tr></thead>
        <tbody>
          {changes.map((c) => {
            const proposal = c.kind === ThresholdChangeKind.PROPOSAL;
            return (
              <tr>
                <th scope="row">{String(c.previousVersion)} → {String(c.version)}</th>
                <td>{formatTime(c.changedAt)}</td>
                <td>{proposal ? `four eyes (${c.proposalId})` : "direct"}</td>
                <td>{proposal ? c.proposer : c.actor}</td>
                <td>{proposal ? c.approver : "— (direct change by an admin)"}</td>
                <td>{c.reason}{c.approvalReason ? ` · approver: “${c.approvalReason}”` : ""}</td>
                <td>{c.changes.map((x) => <div><code>{x.key}</code> {x.oldValue || "—"} → {x.newValue}</div>)}</td>
                <td>{c.backtest ? backtestSummary(c.backtest) : "—"}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
