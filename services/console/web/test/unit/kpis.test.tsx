// The KPI page and its report against an in-memory KpiService. The golden
// files test/unit/golden/kpis.{md,csv} were rendered from kpis.json by
// churnctl's own report package (services/churnctl/report Build + Render),
// so the browser's download is checked to be byte for byte churnctl's.
import { afterEach, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { fromJsonString } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { createRouterTransport } from "@connectrpc/connect";
import { GetKpisResponseSchema, KpiService } from "../../src/gen/churnwatch/v1/kpi_service_pb";
import type { GetKpisRequest } from "../../src/gen/churnwatch/v1/kpi_service_pb";
import { AlertService } from "../../src/gen/churnwatch/v1/alert_service_pb";
import { clients } from "../../src/api/clients";
import { Shell } from "../../src/app";
import { build, csv, markdown } from "../../src/kpis/report";
import { changeInWords, rmsBehind, trendOf } from "../../src/kpis/figures";
import { session } from "./fixtures";

afterEach(() => cleanup());

const golden = (f: string) => readFileSync(join(process.cwd(), "test", "unit", "golden", f), "utf8");
const answer = fromJsonString(GetKpisResponseSchema, golden("kpis.json"));

describe("the monthly report", () => {
  it("renders the same Markdown and CSV as churnctl report for the same RPC answer", () => {
    const r = build(answer);
    expect(markdown(r)).toBe(golden("kpis.md"));
    expect(csv(r)).toBe(golden("kpis.csv"));
  });

  it("says changes in words with their unit", () => {
    expect(changeInWords("+0.58 pp", "Churn rate")).toBe("up 0.58 percentage points");
    expect(changeInWords("-5", "Customers ACTIVE at month end")).toBe("down 5 customers");
    expect(changeInWords("+0", "Alerts raised")).toBe("no change");
    expect(changeInWords("+1", "Alerts raised")).toBe("up 1 alert");
    expect(changeInWords("-34567.89 EUR", "Balances held (EUR)")).toBe("down 34567.89 EUR");
  });

  it("charts one line per tier with customers, and ranks the RMs most behind their SLA", () => {
    const t = trendOf(answer, "churnRate");
    expect(t.lines.map((l) => l.label)).toEqual(["All tiers", "High net worth", "Mass", "Basic"]);
    expect(t.lines[1].values[1]).toBeCloseTo(5.128, 2);
    // Basic had nobody at the month's start: no point rather than 0 %.
    expect(t.lines[3].values).toEqual([null, null]);
    const behind = rmsBehind(answer.months[1].alerts!.responseTimes, 5);
    expect(behind.map((r) => r.managerId)).toEqual(["rm-002", "rm-001"]);
  });
});

function kpiService(asked: GetKpisRequest[]) {
  return createRouterTransport((r: ConnectRouter) => {
    r.service(KpiService, {
      getKpis(req) {
        asked.push(req);
        return answer;
      },
    });
    r.service(AlertService, {});
  });
}

function open(path: string, role: string, sub: string, branch = "", asked: GetKpisRequest[] = []) {
  history.replaceState(null, "", path);
  render(<Shell api={{ ...clients(kpiService(asked)), session: session(role, sub, branch), signedOut: () => {} }} />);
  return asked;
}

describe("/kpis", () => {
  it("shows ops the month's figures with the change in words, the charts' table, the RMs behind and the branches", async () => {
    const asked = open("/kpis?month=2025-08", "ops", "ops-1");
    const figures = await screen.findByRole("list", { name: "Headline figures" });
    const churn = within(figures).getByText("Churn rate").closest("li")!;
    expect(churn.textContent).toContain("4.05%");
    expect(churn.textContent).toContain("up 0.58 percentage points on 2025-07");
    expect(asked[0]).toMatchObject({ month: "2025-08", branchId: "", monthsBack: 12 });
    const table = screen.getByRole("table", { name: "Churn and retention by tier, month by month" });
    expect(within(table).getAllByRole("row")).toHaveLength(3);
    expect(within(table).getByRole("row", { name: /2025-08/ }).textContent).toContain("5.13%");
    const behind = screen.getByRole("table", { name: /Most breaches of the tier SLA first/ });
    expect(within(behind).getAllByRole("row").slice(1).map((r) => r.querySelector("th")!.textContent)).toEqual(["rm-002", "rm-001"]);
    expect(within(behind).getByRole("row", { name: /rm-002/ }).textContent).toContain("10h00m (over the SLA)");
    expect(screen.getByRole("table", { name: "By branch" })).toBeTruthy();
    expect(screen.getByRole("link", { name: "Thresholds" })).toBeTruthy();
    expect(screen.getByRole("link", { name: "KPIs" }).getAttribute("aria-current")).toBe("page");
    // Choosing a branch asks for it.
    fireEvent.change(screen.getByLabelText("Branch"), { target: { value: "br-01" } });
    await waitFor(() => expect(asked.at(-1)).toMatchObject({ month: "2025-08", branchId: "br-01" }));
  });

  it("without a month, opens the latest month closed by event time", async () => {
    const asked = open("/kpis", "branch_head", "bh-01", "br-01");
    await screen.findByRole("list", { name: "Headline figures" });
    // Event time reached 2025-09; of the months the service answers for it,
    // 2025-07 is the latest closed one.
    expect(location.search).toBe("?month=2025-07");
    expect(asked.map((r) => `${r.month}/${r.monthsBack}`).slice(1)).toEqual(["2025-09/12", "2025-07/12"]);
    // A branch head: KPIs in the nav, no thresholds, no branch choice.
    expect(screen.getByRole("link", { name: "KPIs" })).toBeTruthy();
    expect(screen.queryByRole("link", { name: "Thresholds" })).toBeNull();
    expect(screen.queryByLabelText("Branch")).toBeNull();
  });

  it("tells a manager the KPIs are not theirs, without asking the service", async () => {
    const asked = open("/kpis?month=2025-08", "manager", "rm-001");
    expect(await screen.findByText(/shown to branch heads, operations and administrators only/)).toBeTruthy();
    expect(asked).toEqual([]);
    expect(screen.queryByRole("link", { name: "KPIs" })).toBeNull();
    expect(screen.queryByRole("link", { name: "Thresholds" })).toBeNull();
  });
});
