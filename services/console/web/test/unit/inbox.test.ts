import { describe, expect, it } from "vitest";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AlertState } from "../../src/gen/churnwatch/v1/alerts_pb";
import { Severity, Tier } from "../../src/gen/churnwatch/v1/common_pb";
import { applyUpdate, filtersFromQuery, filtersToQuery, isOverdue, listRequest, matches, merge, noFilters, rows } from "../../src/alerts/inbox";
import { alert, hour, update } from "./fixtures";

const at = (ms: number) => timestampFromDate(new Date(Date.now() + ms));

describe("inbox order", () => {
  it("sorts by severity, then the earliest acknowledgement deadline, alerts without one last", () => {
    const store = merge(new Map(), [
      alert({ alertId: "low", severity: Severity.LOW, ackDueAt: at(-hour) }),
      alert({ alertId: "high-late", severity: Severity.HIGH, ackDueAt: at(5 * hour) }),
      alert({ alertId: "high-none", severity: Severity.HIGH, ackDueAt: undefined }),
      alert({ alertId: "crit", severity: Severity.CRITICAL, ackDueAt: at(9 * hour) }),
      alert({ alertId: "high-soon", severity: Severity.HIGH, ackDueAt: at(hour) }),
    ]);
    expect(rows(store, noFilters).map((a) => a.alertId)).toEqual(["crit", "high-soon", "high-late", "high-none", "low"]);
  });

  it("marks open and escalated alerts past their deadline overdue, not acknowledged ones", () => {
    const now = new Date();
    expect(isOverdue(alert({ ackDueAt: at(-60000) }), now)).toBe(true);
    expect(isOverdue(alert({ ackDueAt: at(-60000), state: AlertState.ESCALATED }), now)).toBe(true);
    expect(isOverdue(alert({ ackDueAt: at(-60000), state: AlertState.ACKNOWLEDGED }), now)).toBe(false);
    expect(isOverdue(alert({ ackDueAt: at(60000) }), now)).toBe(false);
    expect(isOverdue(alert({ ackDueAt: undefined }), now)).toBe(false);
  });
});

describe("live updates", () => {
  it("keeps the newest version and reports only unseen alerts as fresh", () => {
    let store = merge(new Map(), [alert({ alertId: "a", version: 2n, score: 50 })]);
    let r = applyUpdate(store, update(alert({ alertId: "a", version: 1n, score: 10 }), "c1"));
    expect(r.fresh).toBe(false);
    expect(r.store.get("a")!.score).toBe(50);
    r = applyUpdate(store, update(alert({ alertId: "a", version: 3n, score: 70 }), "c2"));
    expect(r.fresh).toBe(false);
    expect(r.store.get("a")!.score).toBe(70);
    store = r.store;
    r = applyUpdate(store, update(alert({ alertId: "b", version: 1n }), "c3"));
    expect(r.fresh).toBe(true);
    expect([...r.store.keys()].sort()).toEqual(["a", "b"]);
  });

  it("drops a resolved alert from the default view", () => {
    const store = merge(new Map(), [alert({ alertId: "a" })]);
    const r = applyUpdate(store, update(alert({ alertId: "a", version: 2n, state: AlertState.RESOLVED }), "c"));
    expect(rows(r.store, noFilters)).toHaveLength(0);
    expect(rows(r.store, { ...noFilters, state: "RESOLVED" })).toHaveLength(1);
  });
});

describe("filters", () => {
  it("match streamed alerts the way ListAlerts filters them", () => {
    const a = alert();
    expect(matches(a, { ...noFilters, severity: Severity.HIGH })).toBe(true);
    expect(matches(a, { ...noFilters, severity: Severity.LOW })).toBe(false);
    expect(matches(a, { ...noFilters, tier: Tier.MASS })).toBe(false);
    expect(matches(a, { ...noFilters, rule: "outflow.large" })).toBe(true);
    expect(matches(a, { ...noFilters, rule: "closure" })).toBe(false);
    expect(matches(a, { ...noFilters, manager: "rm-002" })).toBe(false);
    expect(matches(alert({ state: AlertState.SNOOZED }), noFilters)).toBe(false);
  });

  it("become the ListAlerts request", () => {
    const req = listRequest({ severity: Severity.CRITICAL, tier: Tier.BASIC, rule: "closure", state: "open", manager: "rm-002" }, "p2");
    expect(req).toMatchObject({ severities: [Severity.CRITICAL], tiers: [Tier.BASIC], ruleId: "closure", managerId: "rm-002", pageToken: "p2" });
    expect(req.states).toEqual([AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.ESCALATED]);
  });

  it("round-trip through the query string and ignore junk", () => {
    const f = { severity: Severity.HIGH, tier: Tier.POTENTIAL, rule: "complaints", state: "SNOOZED" as const, manager: "rm-003" };
    expect(filtersFromQuery(new URLSearchParams(filtersToQuery(f).slice(1)))).toEqual(f);
    expect(filtersToQuery(noFilters)).toBe("");
    expect(filtersFromQuery(new URLSearchParams("severity=BOGUS&tier=1&state=nope"))).toEqual(noFilters);
  });
});
