// /thresholds against an in-memory RulesAdminService that keeps four-eyes
// proposals the way the rules service does: the proposer cannot decide,
// only an approved proposal changes the set, the audit names both.
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { RulesAdminService } from "../../src/gen/churnwatch/v1/rules_admin_service_pb";
import { AlertService } from "../../src/gen/churnwatch/v1/alert_service_pb";
import type { ThresholdChange, ThresholdProposal } from "../../src/gen/churnwatch/v1/thresholds_pb";
import { ThresholdBacktestSchema, ThresholdChangeKind, ThresholdChangeSchema, ThresholdProposalSchema, ThresholdProposalState, ThresholdSetSchema } from "../../src/gen/churnwatch/v1/thresholds_pb";
import { Tier } from "../../src/gen/churnwatch/v1/common_pb";
import { clients } from "../../src/api/clients";
import { Shell } from "../../src/app";
import { matrix, parseKey } from "../../src/thresholds/keys";
import { session } from "./fixtures";

afterEach(() => cleanup());

const backtest = create(ThresholdBacktestSchema, {
  history: "the rules service's events topic", customers: 300n, eventsAccepted: 9000n, baselineVersion: 1n, alertsBefore: 40, alertsAfter: 46,
  rules: [{ ruleId: "outflow.large", tier: Tier.MASS, before: 10, after: 16, added: 6, removed: 0 }],
  detectionBefore: { precision: 0.5, recall: 0.6, labelledCustomers: 30 }, detectionAfter: { precision: 0.55, recall: 0.7, labelledCustomers: 30 },
  computedBy: "rules service", start: timestampFromDate(new Date("2025-01-01T00:00:00Z")), end: timestampFromDate(new Date("2025-08-31T00:00:00Z")),
});

function rulesService(caller: () => string) {
  const values = new Map([["outflow.large.amount.MASS", "10000"], ["outflow.large.amount.HIGH_NET_WORTH", "100000"], ["dormancy.declining.days", "90"]]);
  let version = 1n;
  const proposals: ThresholdProposal[] = [];
  const changes: ThresholdChange[] = [];
  const set = () => create(ThresholdSetSchema, { version, settings: [...values].map(([key, value]) => ({ key, value })), updatedBy: "admin" });
  const transport = createRouterTransport((r: ConnectRouter) => {
    r.service(AlertService, {});
    r.service(RulesAdminService, {
      getThresholds: () => ({ thresholds: set() }),
      listThresholdChanges: () => ({ changes: [...changes].reverse() }),
      listThresholdProposals: () => ({ proposals: [...proposals].reverse() }),
      proposeThresholdChange(req) {
        if (!req.reason) throw new ConnectError("a reason is required", Code.InvalidArgument);
        if (req.expectedVersion !== version) throw new ConnectError("version moved", Code.FailedPrecondition);
        const p = create(ThresholdProposalSchema, {
          id: `tp-${proposals.length + 1}`, state: ThresholdProposalState.PENDING, baseVersion: version, settings: req.settings, proposer: caller(), reason: req.reason,
          changes: req.settings.map((s) => ({ key: s.key, oldValue: values.get(s.key) ?? "", newValue: s.value })), backtest,
        });
        proposals.push(p);
        return { proposal: p };
      },
      approveThresholdChange(req) {
        const p = proposals.find((x) => x.id === req.proposalId)!;
        if (p.proposer === caller()) throw new ConnectError("the proposer cannot approve their own proposal", Code.PermissionDenied);
        for (const s of p.settings) values.set(s.key, s.value);
        version++;
        p.state = ThresholdProposalState.APPROVED;
        p.decidedBy = caller();
        const c = create(ThresholdChangeSchema, { version, previousVersion: version - 1n, kind: ThresholdChangeKind.PROPOSAL, proposalId: p.id, proposer: p.proposer,
          approver: caller(), reason: p.reason, approvalReason: req.reason, changes: p.changes, backtest: p.backtest, actor: caller() });
        changes.push(c);
        return { thresholds: set(), change: c, proposal: p };
      },
      rejectThresholdChange(req) {
        const p = proposals.find((x) => x.id === req.proposalId)!;
        p.state = ThresholdProposalState.REJECTED;
        return { proposal: p };
      },
    });
  });
  return { transport, values: () => values, version: () => version };
}

function open(role: string, sub: string, svc: ReturnType<typeof rulesService>) {
  history.replaceState(null, "", "/thresholds");
  render(<Shell api={{ ...clients(svc.transport), session: session(role, sub), signedOut: () => {} }} />);
}

describe("threshold keys", () => {
  it("splits RULE.FIELD.TIER[.CUR] into a row per rule and field and a column per tier", () => {
    expect(parseKey("outflow.large.amount.MASS.CZK")).toEqual({ base: "outflow.large.amount.CZK", rule: "outflow.large", field: "amount.CZK", tier: "MASS" });
    expect(parseKey("currency.default")).toMatchObject({ rule: "", tier: "" });
    const m = matrix([{ key: "activity.drop.ratio.MASS", value: "0.3" }, { key: "activity.drop.ratio.BASIC", value: "0.25" }] as never);
    expect(m).toHaveLength(1);
    expect(m[0].cells.MASS.value).toBe("0.3");
    expect(m[0].ruleLabel).toBe("Activity fell sharply");
  });
});

describe("/thresholds", () => {
  it("four eyes: ops-1 proposes and cannot approve; ops-2 sees the back-test and approves; the history names both", async () => {
    let me = "ops-1";
    const svc = rulesService(() => me);
    open("ops", "ops-1", svc);
    const values = await screen.findByRole("table", { name: "Thresholds in force (version 1)" });
    expect(within(values).getByRole("row", { name: /outflow\.large\.amount/ }).textContent).toContain("10000");
    // Propose without a reason: refused on the page, nothing sent.
    fireEvent.change(screen.getByLabelText("Setting"), { target: { value: "outflow.large.amount.MASS" } });
    fireEvent.input(screen.getByLabelText("New value"), { target: { value: "8000" } });
    fireEvent.click(screen.getByRole("button", { name: "Propose" }));
    expect((await screen.findByRole("alert")).textContent).toContain("a reason is required");
    fireEvent.input(screen.getByLabelText("Reason"), { target: { value: "earlier MASS warning" } });
    fireEvent.click(screen.getByRole("button", { name: "Propose" }));
    const card = await screen.findByRole("article", { name: /Proposal tp-1/ });
    expect(card.textContent).toContain("Waiting for approval");
    expect(card.textContent).toContain("10000 → 8000");
    expect(card.textContent).toContain("You proposed this, so you cannot approve or reject it");
    expect(within(card).queryByRole("button", { name: "Approve" })).toBeNull();
    expect(svc.values().get("outflow.large.amount.MASS")).toBe("10000");
    cleanup();

    me = "ops-2";
    open("ops", "ops-2", svc);
    const card2 = await screen.findByRole("article", { name: /Proposal tp-1/ });
    const bt = within(card2).getByRole("table", { name: "Alerts before and after tp-1, per rule and tier" });
    expect(within(bt).getByRole("row", { name: /outflow\.large/ }).textContent).toBe("outflow.largeMass1016" + "60");
    const det = within(card2).getByRole("table", { name: "Detection before and after tp-1" });
    expect(within(det).getByRole("row", { name: /Precision/ }).textContent).toBe("Precision50.0%55.0%");
    fireEvent.click(within(card2).getByRole("button", { name: "Approve" }));
    const history = await screen.findByRole("table", { name: "Threshold changes, newest first" });
    const row = within(history).getByRole("row", { name: /1 → 2/ });
    expect(row.textContent).toContain("four eyes (tp-1)");
    expect(row.textContent).toContain("ops-1");
    expect(row.textContent).toContain("ops-2");
    expect(row.textContent).toContain("alerts 40 → 46; precision 50.0% → 55.0%; recall 60.0% → 70.0%");
    expect(svc.values().get("outflow.large.amount.MASS")).toBe("8000");
    await screen.findByRole("table", { name: "Thresholds in force (version 2)" });
    expect(screen.getByText("No proposal is waiting.")).toBeTruthy();
  });

  it("a rejection needs a reason", async () => {
    let me = "ops-1";
    const svc = rulesService(() => me);
    open("admin", "ops-1", svc);
    await screen.findByRole("table", { name: /Thresholds in force/ });
    fireEvent.input(screen.getByLabelText("New value"), { target: { value: "95" } });
    fireEvent.input(screen.getByLabelText("Reason"), { target: { value: "test" } });
    fireEvent.click(screen.getByRole("button", { name: "Propose" }));
    await screen.findByRole("article", { name: /Proposal tp-1/ });
    cleanup();
    me = "admin-1";
    open("admin", "admin-1", svc);
    const card = await screen.findByRole("article", { name: /Proposal tp-1/ });
    fireEvent.click(within(card).getByRole("button", { name: "Reject" }));
    expect((await within(card).findByRole("alert")).textContent).toContain("Say why you reject it");
    fireEvent.input(within(card).getByLabelText("Note (required to reject)"), { target: { value: "too noisy" } });
    fireEvent.click(within(card).getByRole("button", { name: "Reject" }));
    await waitFor(() => expect(screen.getByText("No proposal is waiting.")).toBeTruthy());
    expect(svc.version()).toBe(1n);
  });

  it("is not offered to a branch head, and says so if opened", async () => {
    const svc = rulesService(() => "bh-01");
    open("branch_head", "bh-01", svc);
    expect(await screen.findByText(/read and changed by operations and administrators only/)).toBeTruthy();
    expect(screen.queryByRole("link", { name: "Thresholds" })).toBeNull();
  });
});
