// Shadow sets on /thresholds against an in-memory ShadowService that keeps
// the rules service's rules (names a-z 0-9 -, never reused, at most 3
// running, known keys only) and words its refusals the same way; and the
// report's layout (thresholds/shadow.ts) on a fixed GetShadowReport answer.
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { RulesAdminService } from "../../src/gen/churnwatch/v1/rules_admin_service_pb";
import { AlertService } from "../../src/gen/churnwatch/v1/alert_service_pb";
import { ThresholdSetSchema } from "../../src/gen/churnwatch/v1/thresholds_pb";
import type { ShadowSet } from "../../src/gen/churnwatch/v1/shadow_service_pb";
import { GetShadowReportResponseSchema, ShadowService, ShadowSetSchema } from "../../src/gen/churnwatch/v1/shadow_service_pb";
import { Outcome } from "../../src/gen/churnwatch/v1/alerts_pb";
import { Severity, Tier } from "../../src/gen/churnwatch/v1/common_pb";
import { clients } from "../../src/api/clients";
import { Shell } from "../../src/app";
import { precision, reportTables, startSettings } from "../../src/thresholds/shadow";
import { session } from "./fixtures";

afterEach(() => cleanup());

const started = new Date("2025-08-01T08:00:00Z");

function report(name = "looser") {
  return create(GetShadowReportResponseSchema, {
    sets: [
      {
        name: "live", live: true, judged: 2, correct: 1, onlyThisSet: ["c-3"],
        alerts: [
          { customerId: "c-1", ruleIds: ["outflow.large"], tier: Tier.MASS, outcome: Outcome.RETAINED },
          { customerId: "c-2", ruleIds: ["activity.drop", "outflow.large"], tier: Tier.MASS, outcome: Outcome.FALSE_ALARM },
          { customerId: "c-3", ruleIds: ["activity.drop"], tier: Tier.HIGH_NET_WORTH },
        ],
      },
      {
        name, judged: 1, correct: 1, onlyThisSet: ["c-7", "c-8"],
        shadow: { name, startedAt: timestampFromDate(started), baseVersion: 4n, reason: "earlier MASS outflows", actor: "ops-1" },
        alerts: [
          { customerId: "c-1", ruleIds: ["outflow.large"], tier: Tier.MASS, severity: Severity.HIGH, outcome: Outcome.RETAINED },
          { customerId: "c-7", ruleIds: ["outflow.large"], tier: Tier.MASS, severity: Severity.LOW },
          { customerId: "c-8", ruleIds: ["salary.stopped"], tier: Tier.POTENTIAL, severity: Severity.LOW },
        ],
      },
    ],
  });
}

describe("shadow report layout", () => {
  it("puts live first and each set beside it: alerts, customers only it alerted, judged, true, precision", () => {
    const [summary] = reportTables(report());
    expect(summary.columns).toEqual(["Set", "Alerts", "Only this set alerted", "Judged", "True", "Precision"]);
    expect(summary.rows).toEqual([
      ["live", "3", "1", "2", "1", "0.50 (1 of 2 judged)"],
      ["looser", "3", "2", "1", "1", "1.00 (1 of 1 judged)"],
    ]);
  });

  it("counts alerts by rule (once per rule of an alert), by severity (live: not kept) and by tier, per set", () => {
    const [, rule, severity, tier, only] = reportTables(report());
    expect(rule.columns).toEqual(["Rule", "live", "looser"]);
    expect(rule.rows).toEqual([
      ["Activity fell sharply (activity.drop)", "2", "0"],
      ["Large transfer to another bank (outflow.large)", "2", "2"],
      ["Salary stopped arriving (salary.stopped)", "0", "1"],
    ]);
    expect(severity.rows).toEqual([["High", "not kept", "1"], ["Low", "not kept", "2"]]);
    expect(tier.rows).toEqual([["High net worth", "1", "0"], ["Potential", "0", "1"], ["Mass", "2", "2"]]);
    expect(only.rows).toEqual([["live", "1", "c-3"], ["looser", "2", "c-7, c-8"]]);
  });

  it("says so when nothing is judged or raised, rather than show 0 %", () => {
    const empty = create(GetShadowReportResponseSchema, { sets: [{ name: "live", live: true }, { name: "quiet" }] });
    expect(precision(empty.sets[1])).toBe("not measured: none judged yet");
    const [summary, rule, severity, , only] = reportTables(empty);
    expect(summary.rows.map((r) => r[0])).toEqual(["live", "quiet"]);
    expect(rule.rows).toEqual([]);
    expect(rule.empty).toMatch(/No set has raised an alert/);
    expect(severity.rows).toEqual([]);
    expect(only.rows).toEqual([]);
  });

  it("lists at most 20 customers only one set alerted, and says how many more", () => {
    const ids = Array.from({ length: 23 }, (_, i) => `c-${i}`);
    const r = create(GetShadowReportResponseSchema, { sets: [{ name: "live", live: true }, { name: "wide", onlyThisSet: ids }] });
    expect(reportTables(r)[4].rows[0][2]).toBe(`${ids.slice(0, 20).join(", ")} … and 3 more`);
  });

  it("checks the form's changes: one at least, each with a value, none twice", () => {
    expect(startSettings([])).toEqual({ error: expect.stringMatching(/at least one setting/) });
    expect(startSettings([{ key: "a.b", value: " " }])).toEqual({ error: "Change 1 (a.b): enter the value the shadow set should use." });
    expect(startSettings([{ key: "a.b", value: "1" }, { key: "a.b", value: "2" }])).toEqual({ error: "Change 2: a.b is changed twice; keep one of them." });
    expect(startSettings([{ key: " a.b", value: "1 " }, { key: "c.d", value: "2" }])).toEqual({ settings: [{ key: "a.b", value: "1" }, { key: "c.d", value: "2" }] });
  });
});

// shadowService keeps sets the way the rules service does, with its words.
function shadowService(caller: string) {
  const keys = new Map([["outflow.large.amount.MASS", "10000"], ["activity.drop.p.MASS", "0.01"]]);
  const sets: ShadowSet[] = [];
  const asked: string[] = [];
  const transport = createRouterTransport((r: ConnectRouter) => {
    r.service(AlertService, {});
    r.service(RulesAdminService, {
      getThresholds: () => ({ thresholds: create(ThresholdSetSchema, { version: 4n, settings: [...keys].map(([key, value]) => ({ key, value })) }) }),
      listThresholdChanges: () => ({ changes: [] }),
      listThresholdProposals: () => ({ proposals: [] }),
    });
    r.service(ShadowService, {
      listShadows: () => { asked.push("list"); return { shadows: sets }; },
      startShadow(req) {
        if (!/^[a-z0-9-]{1,32}$/.test(req.name)) throw new ConnectError("shadow set name must be 1 to 32 of a-z, 0-9, '-'", Code.InvalidArgument);
        if (sets.filter((s) => !s.stoppedAt).length >= 3) {
          throw new ConnectError("at most 3 shadow sets run at once: stop one first (churnctl thresholds shadow --stop NAME)", Code.ResourceExhausted);
        }
        for (const s of req.settings) if (!keys.has(s.key)) throw new ConnectError(`unknown threshold key ${s.key}`, Code.InvalidArgument);
        if (sets.some((s) => s.name === req.name)) throw new ConnectError("a shadow set of that name exists (running or stopped): choose another name", Code.AlreadyExists);
        const s = create(ShadowSetSchema, { name: req.name, settings: req.settings, reason: req.reason, actor: caller, startedAt: timestampFromDate(started), baseVersion: 4n });
        sets.push(s);
        return { shadow: s };
      },
      stopShadow(req) {
        const s = sets.find((x) => x.name === req.name);
        if (!s) throw new ConnectError("no shadow set of that name", Code.NotFound);
        s.stoppedAt = timestampFromDate(new Date("2025-08-02T08:00:00Z"));
        return { shadow: s };
      },
      getShadowReport(req) {
        asked.push(`report ${req.name}`);
        return report(req.name || "looser");
      },
    });
  });
  return { transport, sets, asked };
}

function open(role: string, sub: string, svc: ReturnType<typeof shadowService>, path = "/thresholds") {
  history.replaceState(null, "", path);
  render(<Shell api={{ ...clients(svc.transport), session: session(role, sub), signedOut: () => {} }} />);
}

const startForm = () => screen.getByRole("form", { name: "Start a shadow set" });

describe("/thresholds shadow sets", () => {
  it("ops start a set with two changes, see it running, are shown the service's refusal of a name in use, stop it after confirming", async () => {
    const svc = shadowService("ops-1");
    open("ops", "ops-1", svc);
    await screen.findByText("No shadow set is running.");
    const form = startForm();
    fireEvent.input(within(form).getByLabelText("Name of the set"), { target: { value: "looser" } });
    fireEvent.click(within(form).getByRole("button", { name: "Add another threshold" }));
    const changes = within(form).getAllByRole("group");
    fireEvent.change(within(changes[0]).getByLabelText("Threshold to change"), { target: { value: "outflow.large.amount.MASS" } });
    fireEvent.input(within(changes[0]).getByLabelText("Value in the shadow set"), { target: { value: "8000" } });
    fireEvent.change(within(changes[1]).getByLabelText("Threshold to change"), { target: { value: "activity.drop.p.MASS" } });
    fireEvent.input(within(changes[1]).getByLabelText("Value in the shadow set"), { target: { value: "0.05" } });
    fireEvent.click(within(form).getByRole("button", { name: "Start the shadow set" }));
    expect(within(form).getByRole("alert").textContent).toBe("Say why: a reason is required, and it is shown with the set.");
    expect(svc.sets).toHaveLength(0);
    fireEvent.input(within(form).getByLabelText("Why run it"), { target: { value: "earlier MASS outflows" } });
    fireEvent.click(within(form).getByRole("button", { name: "Start the shadow set" }));
    const card = await screen.findByRole("article", { name: "Shadow set looser: running" });
    expect(svc.sets.map((s) => [s.name, s.actor, s.settings.map((x) => `${x.key}=${x.value}`)])).toEqual([
      ["looser", "ops-1", ["outflow.large.amount.MASS=8000", "activity.drop.p.MASS=0.05"]],
    ]);
    expect(within(card).getByRole("list", { name: "Changes of looser" }).textContent).toBe("activity.drop.p.MASS → 0.05outflow.large.amount.MASS → 8000");
    expect(card.textContent).toContain("Started by ops-1");
    expect(card.textContent).toContain("from live version 4");
    expect(card.textContent).toContain("“earlier MASS outflows”");
    expect(within(form).getByRole("status").textContent).toMatch(/Shadow set looser started from live version 4/);

    // The same name again: the service's own words.
    fireEvent.input(within(form).getByLabelText("Name of the set"), { target: { value: "looser" } });
    fireEvent.input(within(form).getByLabelText("Value in the shadow set"), { target: { value: "7000" } });
    fireEvent.input(within(form).getByLabelText("Why run it"), { target: { value: "again" } });
    fireEvent.click(within(form).getByRole("button", { name: "Start the shadow set" }));
    await waitFor(() => expect(within(form).getByRole("alert").textContent).toBe(
      "The rules service refused to start the shadow set: a shadow set of that name exists (running or stopped): choose another name"));

    // Stop asks first; keeping it running changes nothing.
    fireEvent.click(within(card).getByRole("button", { name: "Stop looser" }));
    const confirm = within(card).getByRole("group", { name: /^Stop looser\?/ });
    await waitFor(() => expect(document.activeElement?.textContent).toBe("Keep it running"));
    fireEvent.click(within(confirm).getByRole("button", { name: "Keep it running" }));
    expect(svc.sets[0].stoppedAt).toBeUndefined();
    await waitFor(() => expect(document.activeElement?.textContent).toBe("Stop looser"));
    fireEvent.click(within(card).getByRole("button", { name: "Stop looser" }));
    fireEvent.click(within(card).getByRole("button", { name: "Yes, stop looser" }));
    const stopped = await screen.findByRole("article", { name: "Shadow set looser: stopped" });
    expect(stopped.textContent).toMatch(/; stopped \S+/);
    expect(within(stopped).queryByRole("button", { name: "Stop looser" })).toBeNull();
    expect(screen.getByText("No shadow set is running.")).toBeTruthy();
  });

  it("shows a refused key and a fourth set in the service's words", async () => {
    const svc = shadowService("ops-1");
    open("ops", "ops-1", svc);
    const form = await waitFor(startForm);
    const start = async (name: string, value: string) => {
      fireEvent.input(within(form).getByLabelText("Name of the set"), { target: { value: name } });
      fireEvent.input(within(form).getByLabelText("Value in the shadow set"), { target: { value } });
      fireEvent.input(within(form).getByLabelText("Why run it"), { target: { value: "try" } });
      fireEvent.click(within(form).getByRole("button", { name: "Start the shadow set" }));
    };
    await start("Bad Name", "1");
    await waitFor(() => expect(within(form).getByRole("alert").textContent).toBe(
      "The rules service refused to start the shadow set: shadow set name must be 1 to 32 of a-z, 0-9, '-'"));
    for (const n of ["a", "b", "c"]) {
      await start(n, "1");
      await screen.findByRole("article", { name: `Shadow set ${n}: running` });
    }
    await start("d", "1");
    await waitFor(() => expect(within(form).getByRole("alert").textContent).toMatch(/refused to start the shadow set: at most 3 shadow sets run at once/));
    expect(svc.sets.map((s) => s.name)).toEqual(["a", "b", "c"]);
    // Several sets: one report of them all, side by side.
    fireEvent.click(screen.getByRole("link", { name: "Report of all sets side by side" }));
    expect(location.search).toBe("?report=all");
    await screen.findByRole("heading", { name: "Report: every shadow set against live" });
    await screen.findByRole("table", { name: "Alerts and precision per set" });
    expect(svc.asked).toContain("report ");
  });

  it("opens a set's report as tables with live and the set, and says what precision means", async () => {
    const svc = shadowService("ops-1");
    svc.sets.push(create(ShadowSetSchema, { name: "looser", startedAt: timestampFromDate(started), baseVersion: 4n, reason: "r", actor: "ops-1", settings: [{ key: "outflow.large.amount.MASS", value: "8000" }] }));
    open("ops", "ops-1", svc);
    const card = await screen.findByRole("article", { name: "Shadow set looser: running" });
    fireEvent.click(within(card).getByRole("link", { name: "Report of looser" }));
    expect(location.search).toBe("?report=looser");
    const summary = await screen.findByRole("table", { name: "Alerts and precision per set" });
    expect(svc.asked).toContain("report looser");
    const rows = within(summary).getAllByRole("row").slice(1).map((r) => [...r.children].map((c) => c.textContent));
    expect(rows).toEqual([["live", "3", "1", "2", "1", "0.50 (1 of 2 judged)"], ["looser", "3", "2", "1", "1", "1.00 (1 of 1 judged)"]]);
    expect(within(summary).getAllByRole("rowheader").map((h) => h.getAttribute("scope"))).toEqual(["row", "row"]);
    expect(within(summary).getAllByRole("columnheader").every((h) => h.getAttribute("scope") === "col")).toBe(true);
    for (const t of ["Alerts by rule, per set", "Alerts by severity, per set", "Alerts by tier, per set", "Customers only one set alerted"]) {
      expect(screen.getByRole("table", { name: t })).toBeTruthy();
    }
    expect(screen.getByText(/A customer alerted only by a shadow set has no outcome, since no\s+relationship manager saw it/)).toBeTruthy();
    expect(document.activeElement?.textContent).toBe("Report: looser against live");
  });

  it("says a purged set was purged and offers no report of it", async () => {
    const svc = shadowService("ops-1");
    svc.sets.push(create(ShadowSetSchema, { name: "gone", settings: [{ key: "activity.drop.p.MASS", value: "0.05" }], reason: "tried",
      actor: "ops-2", startedAt: timestampFromDate(started), stoppedAt: timestampFromDate(new Date("2025-08-02T08:00:00Z")),
      purgedAt: timestampFromDate(new Date("2025-08-03T08:00:00Z")), baseVersion: 4n }));
    open("ops", "ops-1", svc);
    const card = await screen.findByRole("article", { name: "Shadow set gone: stopped" });
    expect(card.textContent).toMatch(/; purged \S+.*, so it has no report any more/);
    expect(within(card).queryByRole("link", { name: "Report of gone" })).toBeNull();
  });

  it("is not offered to a manager, and asks the shadow service nothing", async () => {
    const svc = shadowService("rm-001");
    open("manager", "rm-001", svc);
    await screen.findByText(/read and changed by operations and administrators only/);
    expect(screen.queryByRole("heading", { name: "Shadow sets" })).toBeNull();
    expect(svc.asked).toEqual([]);
  });
});
