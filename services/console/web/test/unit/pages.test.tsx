// The pages against an in-memory AlertService / RulesAdminService
// (createRouterTransport: the same generated types as the real services).
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { AlertService, ListAlertsResponseSchema, SubscribeResponseSchema } from "../../src/gen/churnwatch/v1/alert_service_pb";
import { RulesAdminService, GetCustomerRiskResponseSchema } from "../../src/gen/churnwatch/v1/rules_admin_service_pb";
import type { ListAlertsRequest } from "../../src/gen/churnwatch/v1/alert_service_pb";
import { AlertChange, AlertHistoryEntrySchema, AlertState, Outcome } from "../../src/gen/churnwatch/v1/alerts_pb";
import type { Alert } from "../../src/gen/churnwatch/v1/alerts_pb";
import { Severity, Stage } from "../../src/gen/churnwatch/v1/common_pb";
import { clients } from "../../src/api/clients";
import { Shell } from "../../src/app";
import { alert, hour, session, update } from "./fixtures";

afterEach(() => cleanup());

// A small alerts service over a list, with a Subscribe stream the test feeds.
function bank(alerts: Alert[], opts: { denied?: string[] } = {}) {
  const listed: ListAlertsRequest[] = [];
  const calls: string[] = [];
  let push: ((a: Alert) => void) | null = null;
  const queue: Alert[] = [];
  const byId = new Map(alerts.map((a) => [a.alertId, a]));
  const change = (id: string, patch: Partial<Alert>, what: AlertChange) => {
    const a = byId.get(id)!;
    const next = alert({ ...a, ...patch, version: a.version + 1n,
      history: [...a.history, create(AlertHistoryEntrySchema, { version: a.version + 1n, change: what, actor: "rm-001", state: patch.state ?? a.state, severity: a.severity, note: patch.note ?? "" })] });
    byId.set(id, next);
    return { alert: next };
  };
  const routes = (r: ConnectRouter) => {
    r.service(AlertService, {
      listAlerts(req) {
        listed.push(req);
        const hit = [...byId.values()].filter((a) => req.states.includes(a.state) && (!req.managerId || a.managerId === req.managerId));
        return create(ListAlertsResponseSchema, { alerts: hit });
      },
      async *subscribe() {
        while (true) {
          const a = queue.shift() ?? (await new Promise<Alert>((resolve) => { push = resolve; }));
          yield create(SubscribeResponseSchema, { update: update(a, `c-${a.alertId}-${a.version}`, AlertChange.CREATED) });
        }
      },
      getAlert(req) {
        if (opts.denied?.includes(req.alertId)) throw new ConnectError("alert belongs to another manager", Code.PermissionDenied);
        const a = byId.get(req.alertId);
        if (!a) throw new ConnectError("no such alert", Code.NotFound);
        return { alert: a };
      },
      acknowledgeAlert(req) {
        calls.push(`ack ${req.alertId}`);
        return change(req.alertId, { state: AlertState.ACKNOWLEDGED }, AlertChange.ACKNOWLEDGED);
      },
      snoozeAlert(req) {
        calls.push(`snooze ${req.alertId} ${req.until ? timestampDate(req.until).toISOString() : "-"} ${req.note}`);
        return change(req.alertId, { state: AlertState.SNOOZED, snoozedUntil: req.until, note: req.note }, AlertChange.SNOOZED);
      },
      reassignAlert(req) {
        if (!req.note) throw new ConnectError("a reassignment needs a note", Code.InvalidArgument);
        calls.push(`reassign ${req.alertId} ${req.managerId} ${req.note}`);
        return change(req.alertId, { managerId: req.managerId, note: req.note }, AlertChange.REASSIGNED);
      },
      resolveAlert(req) {
        calls.push(`resolve ${req.alertId} ${Outcome[req.outcome]} ${req.note}`);
        return change(req.alertId, { state: AlertState.RESOLVED, outcome: req.outcome, note: req.note }, AlertChange.RESOLVED);
      },
    });
    r.service(RulesAdminService, {
      getCustomerRisk(req) {
        return create(GetCustomerRiskResponseSchema, { customerId: req.customerId, stage: Stage.DECLINING, score: 65, severity: Severity.HIGH, knownCustomer: true });
      },
    });
  };
  const transport = createRouterTransport(routes);
  return {
    transport, listed, calls,
    live(a: Alert) {
      byId.set(a.alertId, a);
      if (push) { const p = push; push = null; p(a); } else queue.push(a);
    },
  };
}

function open(path: string, b: ReturnType<typeof bank>, role = "manager", sub = "rm-001", branch = "") {
  history.replaceState(null, "", path);
  let signedOut = 0;
  render(<Shell api={{ ...clients(b.transport), session: session(role, sub, branch), signedOut: () => { signedOut++; } }} />);
  return { signedOut: () => signedOut };
}

const past = timestampFromDate(new Date(Date.now() - hour));

describe("inbox", () => {
  it("lists open alerts by severity then due time, marks overdue rows in words, and adds live ones", async () => {
    const b = bank([
      alert({ alertId: "a-med", customerId: "C2", customerDisplayName: "Medium M.", severity: Severity.MEDIUM }),
      alert({ alertId: "a-crit", customerId: "C1", customerDisplayName: "Critical C.", severity: Severity.CRITICAL, ackDueAt: past }),
    ]);
    open("/", b);
    const table = await screen.findByRole("table", { name: "Alerts" });
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    const [, first, second] = within(table).getAllByRole("row");
    expect(first.textContent).toContain("C1");
    expect(first.textContent).toContain("Critical C.");
    expect(first.textContent).toContain("Overdue");
    expect(first.textContent).toContain("Large transfer to another bank");
    expect(second.textContent).toContain("Medium M.");
    expect(second.textContent).not.toContain("Overdue");
    expect(screen.queryByLabelText("Relationship manager")).toBeNull();

    b.live(alert({ alertId: "a-new", customerId: "C9", customerDisplayName: "Newcomer N.", severity: Severity.HIGH }));
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(4));
    const rows = within(table).getAllByRole("row");
    expect(rows[2].textContent).toContain("Newcomer N.");
    expect(rows[2].textContent).toContain("New");
  });

  it("is keyboard navigable: arrows move between rows, Enter opens the alert", async () => {
    const b = bank([
      alert({ alertId: "a1", customerId: "C1", severity: Severity.CRITICAL }),
      alert({ alertId: "a2", customerId: "C2", severity: Severity.LOW }),
    ]);
    open("/", b);
    const table = await screen.findByRole("table", { name: "Alerts" });
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    const [, r1, r2] = within(table).getAllByRole("row");
    expect(r1.tabIndex).toBe(0);
    r1.focus();
    fireEvent.keyDown(r1, { key: "ArrowDown" });
    expect(document.activeElement).toBe(r2);
    fireEvent.keyDown(r2, { key: "Enter" });
    await waitFor(() => expect(location.pathname).toBe("/alerts/a2"));
    await screen.findByRole("heading", { name: /C2/ });
  });

  it("gives a branch head a relationship-manager filter that asks ListAlerts for that manager", async () => {
    const b = bank([
      alert({ alertId: "a1", customerId: "C1", managerId: "rm-001" }),
      alert({ alertId: "a2", customerId: "C2", managerId: "rm-002" }),
    ]);
    open("/", b, "branch_head", "bh-01", "br-01");
    await screen.findByRole("heading", { name: "Branch br-01: customers at risk" });
    const table = screen.getByRole("table", { name: "Alerts" });
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    const pick = screen.getByLabelText("Relationship manager") as HTMLSelectElement;
    fireEvent.change(pick, { target: { value: "rm-002" } });
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(2));
    expect(within(table).getAllByRole("row")[1].textContent).toContain("rm-002");
    await waitFor(() => expect(b.listed.at(-1)!.managerId).toBe("rm-002"));
    expect(location.search).toBe("?manager=rm-002");
  });

  it("sends a signed-out caller to sign in", async () => {
    const transport = createRouterTransport(({ service }) => {
      service(AlertService, {
        listAlerts() { throw new ConnectError("no session", Code.Unauthenticated); },
        // eslint-disable-next-line require-yield
        async *subscribe() { throw new ConnectError("no session", Code.Unauthenticated); },
      });
    });
    history.replaceState(null, "", "/");
    let out = 0;
    render(<Shell api={{ ...clients(transport), session: session("manager"), signedOut: () => { out++; } }} />);
    await waitFor(() => expect(out).toBeGreaterThanOrEqual(2));
  });
});

describe("alert page", () => {
  it("shows every reason with its figures, the action, history and risk; Acknowledge changes the state", async () => {
    const b = bank([alert({ alertId: "a1", history: [create(AlertHistoryEntrySchema, { version: 1n, change: AlertChange.CREATED, actor: "system", state: AlertState.OPEN, severity: Severity.HIGH })] })]);
    open("/alerts/a1", b);
    await screen.findByRole("heading", { name: /Wang L\./ });
    const reasons = screen.getByRole("table", { name: "Reasons" });
    const cells = within(reasons).getAllByRole("row")[1].textContent!;
    for (const want of ["Large transfer to another bank", "outflow.large", "120000.00 EUR", "100000.00 EUR", "3", "t-1", "t-2", "One transfer of 120000.00 EUR"]) {
      expect(cells).toContain(want);
    }
    expect(screen.getByText("Call the customer within 4 hours.")).toBeTruthy();
    expect(screen.queryByRole("button", { name: "Reassign" })).toBeNull();
    await screen.findByText("65 of 100 (High)");
    const hist = screen.getByRole("table", { name: "Alert history" });
    expect(within(hist).getAllByRole("row")[1].textContent).toContain("churnwatch (automatic)");

    fireEvent.click(screen.getByRole("button", { name: "Acknowledge" }));
    await waitFor(() => expect(screen.getByTestId("alert-state").textContent).toBe("Acknowledged"));
    expect(b.calls).toEqual(["ack a1"]);
    expect(screen.queryByRole("button", { name: "Acknowledge" })).toBeNull();
    await waitFor(() => expect(within(screen.getByRole("table", { name: "Alert history" })).getAllByRole("row")).toHaveLength(3));
  });

  it("resolves only with an outcome and a note, after Confirm", async () => {
    const b = bank([alert({ alertId: "a1" })]);
    open("/alerts/a1", b);
    fireEvent.click(await screen.findByRole("button", { name: "Resolve" }));
    const confirm = screen.getByRole("button", { name: "Confirm" });
    const form = confirm.closest("form")!;
    expect((within(form).getByLabelText("Outcome") as HTMLSelectElement).required).toBe(true);
    fireEvent.change(within(form).getByLabelText("Outcome"), { target: { value: "RETAINED" } });
    fireEvent.input(within(form).getByLabelText("Note"), { target: { value: "Called; offered a better rate." } });
    fireEvent.submit(form);
    await waitFor(() => expect(screen.getByTestId("alert-state").textContent).toBe("Resolved"));
    expect(b.calls).toEqual(["resolve a1 RETAINED Called; offered a better rate."]);
    expect(screen.queryByRole("button", { name: "Resolve" })).toBeNull();
  });

  it("lets a branch head reassign with a note, and shows the new manager", async () => {
    const b = bank([alert({ alertId: "a1" })]);
    open("/alerts/a1", b, "branch_head", "bh-01", "br-01");
    fireEvent.click(await screen.findByRole("button", { name: "Reassign" }));
    const form = screen.getByRole("form", { name: "Reassign the alert" });
    fireEvent.input(within(form).getByLabelText("New manager"), { target: { value: " rm-002 " } });
    fireEvent.input(within(form).getByLabelText("Note"), { target: { value: "rm-001 is on leave" } });
    fireEvent.submit(form);
    await screen.findByText("Reassigned to rm-002.");
    expect(b.calls).toEqual(["reassign a1 rm-002 rm-001 is on leave"]);
    await waitFor(() => expect(document.body.textContent).toContain("rm-002 · branch br-01"));
  });

  it("snoozes until the chosen local time, and refuses a time in the past", async () => {
    const b = bank([alert({ alertId: "a1" })]);
    open("/alerts/a1", b);
    fireEvent.click(await screen.findByRole("button", { name: "Snooze" }));
    const form = screen.getByRole("form", { name: "Snooze the alert" });
    const until = within(form).getByLabelText("Snooze until") as HTMLInputElement;
    fireEvent.input(until, { target: { value: "2001-01-01T09:00" } });
    fireEvent.submit(form);
    await screen.findByText(/Choose a time in the future/);
    expect(b.calls).toEqual([]);
    const later = new Date(Date.now() + 3 * 24 * hour);
    later.setSeconds(0, 0);
    const p = (n: number) => String(n).padStart(2, "0");
    fireEvent.input(until, { target: { value: `${later.getFullYear()}-${p(later.getMonth() + 1)}-${p(later.getDate())}T${p(later.getHours())}:${p(later.getMinutes())}` } });
    fireEvent.input(within(form).getByLabelText("Note"), { target: { value: "on holiday" } });
    fireEvent.submit(form);
    await waitFor(() => expect(screen.getByTestId("alert-state").textContent).toBe("Snoozed"));
    expect(b.calls).toEqual([`snooze a1 ${later.toISOString()} on holiday`]);
  });

  it("names a refused action and what to do next", async () => {
    const b = bank([alert({ alertId: "a1" })]);
    open("/alerts/a1", b, "ops", "ops-1");
    fireEvent.click(await screen.findByRole("button", { name: "Reassign" }));
    const form = screen.getByRole("form", { name: "Reassign the alert" });
    fireEvent.input(within(form).getByLabelText("New manager"), { target: { value: "rm-002" } });
    fireEvent.submit(form); // the note is left empty: the service refuses
    const err = await screen.findByRole("alert");
    expect(err.textContent).toContain("Could not reassign the alert (a reassignment needs a note). Check what you entered and try again.");
  });

  it("shows a manager another manager's alert as not yours, without its data", async () => {
    open("/alerts/a9", bank([alert({ alertId: "a9", customerDisplayName: "Secret S." })], { denied: ["a9"] }));
    await screen.findByRole("heading", { name: "Not yours" });
    expect(document.body.textContent).not.toContain("Secret S.");
    expect(screen.queryByRole("button", { name: "Acknowledge" })).toBeNull();
  });
});
