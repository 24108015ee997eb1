// The KPI and threshold pages in a real browser against the same
// `churnwatch dev` as console.spec.ts: the page's figures and its report
// download equal KpiService.GetKpis as churnctl gets it, and the four-eyes
// flow (one proposes, the proposer cannot approve, a second approves, the
// value is live only then, the history names both), checked through churnctl.
import { expect, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { accessible, phone, shoot, signIn } from "./helpers";
import { churnctl, consoleUrl } from "./stack";

const tokenOf = (sub: string, role: string) => churnctl(["token", "mint", "--subject", sub, "--role", role, "--ttl", "10m"]).trim();

test("operations see the month's KPIs equal to GetKpis, and download the same report as churnctl", async ({ page }) => {
  await signIn(page, "ops-1", "ops");
  await page.getByRole("link", { name: "KPIs" }).click();
  const figures = page.getByRole("list", { name: "Headline figures" });
  await expect(figures).toBeVisible();
  const month = new URL(page.url()).searchParams.get("month");
  expect(month, "the page opens a month").toMatch(/^\d{4}-\d{2}$/);
  // The RPC's own answer, through churnctl with an ops token.
  const ops = tokenOf("ops-1", "ops");
  const rpc = JSON.parse(churnctl(["report", "--month", month!, "--json"], { token: ops })) as {
    months: { month: string; total?: { churnRate?: number; notChurnedAtStart?: string; balances?: { currency: string; heldMinor?: string }[] } }[];
  };
  const cur = rpc.months[rpc.months.length - 1];
  expect(cur.month).toBe(month);
  expect(Number(cur.total?.notChurnedAtStart ?? 0), "the simulated bank has customers this month").toBeGreaterThan(0);
  const churn = `${(100 * (cur.total?.churnRate ?? 0)).toFixed(2)}%`;
  await expect(figures.getByRole("listitem").filter({ hasText: "Churn rate" }).locator(".figure-value")).toHaveText(churn);
  const kpis = page.getByRole("table", { name: new RegExp(`^KPIs of ${month}`) });
  await expect(kpis.getByRole("row", { name: /^Customers not CHURNED at month start/ }).getByRole("cell").first()).toHaveText(String(Number(cur.total?.notChurnedAtStart)));
  // A figure that is not zero in the simulated bank: the balances held.
  const bal = cur.total?.balances?.[0];
  expect(bal, "the simulated bank holds balances").toBeTruthy();
  const held = BigInt(bal!.heldMinor ?? "0");
  await expect(kpis.getByRole("row", { name: new RegExp(`^Balances held \\(${bal!.currency}\\)`) }).getByRole("cell").first())
    .toHaveText(`${held / 100n}.${String(held % 100n).padStart(2, "0")} ${bal!.currency}`);
  await page.getByText("The charts' numbers as a table").click();
  await expect(page.getByRole("table", { name: "Churn and retention by tier, month by month" }).locator("tbody tr")).toHaveCount(12);
  await expect(page.locator("figure.chart canvas").first()).toBeVisible();

  // The download is churnctl report's CSV for the same month.
  await page.getByLabel("Report format").selectOption("csv");
  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download the monthly report" }).click()]);
  expect(dl.suggestedFilename()).toBe(`churnwatch-report-${month}.csv`);
  const got = readFileSync((await dl.path())!, "utf8");
  const want = churnctl(["report", "--month", month!, "--format", "csv"], { token: ops });
  expect(got.split("\n").length).toBeGreaterThan(40);
  expect(got).toBe(want);

  await accessible(page, "the KPI page");
  await shoot(page, "kpis-desktop", true);
  await page.setViewportSize(phone);
  await accessible(page, "the KPI page on a phone");
  await shoot(page, "kpis-phone");
});

test("a manager has no KPIs or Thresholds in the nav and is told why when opening /kpis", async ({ page }) => {
  await signIn(page, "rm-001", "manager");
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link")).toHaveText(["Inbox"]);
  await page.goto(`${consoleUrl()}/kpis`);
  await expect(page.getByText(/shown to branch heads, operations and administrators only/)).toBeVisible();
});

test("four eyes in the browser: ops-1's proposal cannot be approved by ops-1, ops-2 approves, only then is it live, and the history names both", async ({ page }) => {
  const key = "outflow.large.amount.MASS";
  const live = () => (JSON.parse(churnctl(["thresholds", "show", "--json"])) as { version: number; settings: Record<string, string> });
  const before = live();
  const next = String(Number(before.settings[key]) - 1000);
  // ops-1 proposes in the browser; the rules service back-tests the change
  // over its events topic before it answers.
  await signIn(page, "ops-1", "ops");
  await page.getByRole("link", { name: "Thresholds" }).click();
  await page.getByLabel("Setting").selectOption(key);
  await page.getByLabel("New value").fill(next);
  await page.getByLabel("Reason").fill("earlier MASS warning (e2e)");
  await page.getByRole("button", { name: "Propose" }).click();
  const made = page.getByRole("status").filter({ hasText: /Proposal tp-\d+ made/ });
  await expect(made).toBeVisible({ timeout: 60_000 });
  const proposal = { id: /Proposal (tp-\d+) made/.exec((await made.textContent())!)![1] };
  const card = page.getByRole("article", { name: new RegExp(`Proposal ${proposal.id}:`) });
  await expect(card).toContainText("Waiting for approval");
  await expect(card).toContainText(`${before.settings[key]} → ${next}`);
  await expect(card).toContainText("You proposed this, so you cannot approve or reject it");
  await expect(card.getByRole("button", { name: "Approve" })).toHaveCount(0);
  await expect(card.getByRole("table", { name: `Alerts before and after ${proposal.id}, per rule and tier` })).toBeVisible();
  await expect(card.getByRole("table", { name: `Detection before and after ${proposal.id}` }).getByRole("row", { name: /^Precision/ })).toBeVisible();
  expect(live().settings[key], "not live before approval").toBe(before.settings[key]);
  await accessible(page, "the thresholds page");
  await shoot(page, "thresholds-desktop", true);
  await page.setViewportSize(phone);
  await accessible(page, "the thresholds page on a phone");
  await card.getByRole("heading").scrollIntoViewIfNeeded();
  await shoot(page, "thresholds-phone");
  await page.setViewportSize({ width: 1280, height: 800 });

  await signIn(page, "ops-2", "ops");
  await page.goto(`${consoleUrl()}/thresholds`);
  const card2 = page.getByRole("article", { name: new RegExp(`Proposal ${proposal.id}:`) });
  await card2.getByLabel("Note (required to reject)").fill("checked the back-test");
  await card2.getByRole("button", { name: "Approve" }).click();
  await expect(card2).toHaveCount(0);
  const after = live();
  expect(after.settings[key], "live after approval").toBe(next);
  expect(after.version).toBe(before.version + 1);
  await expect(page.getByRole("table", { name: `Thresholds in force (version ${after.version})` })).toBeVisible();
  const row = page.getByRole("table", { name: "Threshold changes, newest first" }).getByRole("row", { name: new RegExp(`^${before.version} → ${after.version}`) });
  await expect(row).toContainText(`four eyes (${proposal.id})`);
  await expect(row).toContainText("ops-1");
  await expect(row).toContainText("ops-2");
  await expect(row).toContainText(/alerts \d+ → \d+/);
  // churnctl's audit names both too.
  const hist = churnctl(["thresholds", "history", "--limit", "1"]);
  expect(hist).toContain("ops-1");
  expect(hist).toContain("ops-2");
});
