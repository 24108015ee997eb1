// The console in a real browser against a real `churnwatch dev` with a
// simulated bank: what an RM, a branch head and another manager can see and
// do, checked against the same alerts through churnctl.
import { expect, test } from "@playwright/test";
import type { Page } from "@playwright/test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { accessible, phone, shoot, signIn } from "./helpers";
import { DropProxy } from "./dropproxy";
import { alertsAs, alertsOf, bankDir, churnctl, consoleUrl, getAlert, jsonLines } from "./stack";

const inbox = (page: Page) => page.getByRole("table", { name: "Alerts" });
const rowIds = async (page: Page) => (await inbox(page).locator("tbody tr").locator(".cust-id").allTextContents()).sort();

test("a manager sees exactly their own open alerts, most urgent first, in their time zone", async ({ page }) => {
  await signIn(page, "rm-001", "manager");
  const own = alertsAs("rm-001", "manager");
  expect(own.length, "the simulated bank gives rm-001 alerts").toBeGreaterThan(3);
  await expect(inbox(page).locator("tbody tr")).toHaveCount(own.length);
  expect(await rowIds(page)).toEqual(own.map((a) => a.customerId).sort());
  const others = new Set(alertsOf("rm-002").map((a) => a.customerId));
  for (const id of await rowIds(page)) expect(others.has(id), `${id} belongs to rm-002`).toBe(false);
  // Severity order: no row is more severe than the one above it.
  const rank = { Low: 1, Medium: 2, High: 3, Critical: 4 } as Record<string, number>;
  const sev = await inbox(page).locator("tbody tr .sev").allTextContents();
  for (let i = 1; i < sev.length; i++) expect(rank[sev[i]], `row ${i + 1} after ${sev[i - 1]}`).toBeLessThanOrEqual(rank[sev[i - 1]]);
  await expect(page.getByText("Europe/Zurich")).toBeVisible();
  await expect(page.getByRole("status").filter({ hasText: "Live" })).toBeVisible();
  await accessible(page, "the inbox");
  await shoot(page, "inbox-desktop");
  await page.setViewportSize(phone);
  await accessible(page, "the inbox on a phone");
  await shoot(page, "inbox-phone");
});

test("a manager opens an alert by keyboard, sees why, and acknowledges it (churnctl agrees)", async ({ page }) => {
  await signIn(page, "rm-001", "manager");
  const rows = inbox(page).locator("tbody tr");
  await expect(rows.first()).toBeVisible();
  await rows.first().focus();
  await page.keyboard.press("ArrowDown");
  await expect(rows.nth(1)).toBeFocused();
  const id = await rows.nth(1).getAttribute("data-alert-id");
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(new RegExp(`/alerts/${id}$`));
  const a = getAlert(id!);
  await expect(page.getByRole("heading", { level: 1 })).toContainText(a.customerId);
  const reasons = page.getByRole("table", { name: "Reasons" });
  await expect(reasons.locator("tbody tr").first()).toBeVisible();
  await expect(page.getByRole("heading", { name: "What to do" })).toBeVisible();
  await expect(page.getByRole("table", { name: "Alert history" }).locator("tbody tr")).not.toHaveCount(0);
  await expect(page.getByText(/of 100 \(/)).toBeVisible(); // GetCustomerRisk answered
  // The chart is drawn exactly when the risk service sends a daily series.
  const risk = JSON.parse(churnctl(["risk", a.customerId, "--json"]).trim().split("\n")[0]) as { daily?: unknown[] };
  if (risk.daily?.length) await expect(page.locator("figure.chart canvas")).toBeVisible();
  else await expect(page.getByTestId("no-daily")).toBeVisible();
  await expect(page.getByRole("button", { name: "Reassign" })).toHaveCount(0);
  await accessible(page, "the alert page");
  await shoot(page, "alert-desktop", true);
  await page.setViewportSize(phone);
  await accessible(page, "the alert page on a phone");
  await shoot(page, "alert-phone");
  await page.setViewportSize({ width: 1280, height: 800 });

  await page.getByRole("button", { name: "Acknowledge" }).click();
  await expect(page.getByTestId("alert-state")).toHaveText("Acknowledged");
  await expect(page.getByRole("button", { name: "Acknowledge" })).toHaveCount(0);
  expect(getAlert(id!).state).toBe("ALERT_STATE_ACKNOWLEDGED");
  await expect(page.getByRole("table", { name: "Alert history" })).toContainText("rm-001");
});

test("a manager resolves an alert with an outcome and a note", async ({ page }) => {
  await signIn(page, "rm-001", "manager");
  const open = alertsOf("rm-001", "open");
  const target = open[open.length - 1];
  await page.goto(`${consoleUrl()}/alerts/${target.alertId}`);
  await page.getByRole("button", { name: "Resolve" }).click();
  await page.getByLabel("Outcome").selectOption("RETAINED");
  await page.getByLabel("Note").fill("Called; matched the other bank's rate.");
  await page.getByRole("button", { name: "Confirm" }).click();
  await expect(page.getByTestId("alert-state")).toHaveText("Resolved");
  const got = getAlert(target.alertId);
  expect(got.state).toBe("ALERT_STATE_RESOLVED");
  expect(got.outcome).toBe("OUTCOME_RETAINED");
  await page.getByRole("link", { name: "Inbox" }).first().click();
  await expect(inbox(page).locator("tbody tr").first()).toBeVisible();
  expect(await rowIds(page)).not.toContain(target.customerId);
});

// quietCustomer is a customer of the manager with no alert yet, and an
// external outflow for it an hour after its last event (so not late).
function quietCustomer(manager: string, skip: string[] = []) {
  const customers = jsonLines<{ customerId: string; managerId: string }>(readFileSync(join(bankDir, "customers.ndjson"), "utf8"));
  const alerted = new Set(alertsOf(manager, "open,acknowledged,escalated,snoozed,resolved").map((a) => a.customerId));
  const quiet = customers.find((c) => c.managerId === manager && !alerted.has(c.customerId) && !skip.includes(c.customerId));
  expect(quiet, `a customer of ${manager} without an alert`).toBeTruthy();
  const id = quiet!.customerId;
  const theirs = readFileSync(join(bankDir, "events.ndjson"), "utf8").split("\n").filter((l) => l.includes(`"customerId":"${id}"`));
  const last = JSON.parse(theirs[theirs.length - 1]) as { accountId: string; occurredAt: string };
  const at = new Date(new Date(last.occurredAt).getTime() + 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
  const outflow = JSON.stringify({ eventId: `e2e-live-${id}`, customerId: id, accountId: last.accountId, occurredAt: at,
    type: "TRANSFER_OUT", amount: "250000.00", currency: "EUR", counterpartyBank: "OTHERBANK", balanceAfter: "100.00", channel: "ONLINE" });
  return { id, ingest: () => expect(JSON.parse(churnctl(["ingest", "-", "--format", "ndjson"], { input: outflow + "\n" })).accepted).toBe(1) };
}

test("a new alert appears live within 5 s of its event being ingested", async ({ page }) => {
  await signIn(page, "rm-001", "manager");
  await expect(page.getByRole("status").filter({ hasText: "Live" })).toBeVisible();
  const quiet = quietCustomer("rm-001");
  quiet.ingest();
  const t0 = Date.now();
  const row = inbox(page).locator("tbody tr").filter({ hasText: quiet.id });
  await expect(row).toBeVisible({ timeout: 5000 });
  const ms = Date.now() - t0;
  console.log(`live alert shown ${ms} ms after its event was accepted`);
  await expect(row).toContainText("New");
  // The top reason is the latest rule hit: the transfer itself, or the
  // drain of the balance it caused.
  await expect(row).toContainText(/Large transfer to another bank|Balance moving to other banks/);
});

test("after a network drop the inbox reconnects by itself and shows what it missed, without a reload", async ({ page }) => {
  const proxy = new DropProxy(new URL(consoleUrl()));
  const base = await proxy.start();
  try {
    await signIn(page, "rm-001", "manager", "", base);
    await expect(page.getByRole("status").filter({ hasText: "Live" })).toBeVisible();
    const before = alertsAs("rm-001", "manager").length;
    await expect(inbox(page).locator("tbody tr")).toHaveCount(before);
    await page.evaluate(() => { (window as unknown as { marker: number }).marker = 42; });
    proxy.drop();
    await expect(page.getByRole("status").filter({ hasText: "Connection lost" })).toBeVisible();
    const quiet = quietCustomer("rm-001");
    quiet.ingest(); // raised while the browser cannot reach the console
    await page.waitForTimeout(1500); // stay down across a reconnect attempt or two
    proxy.restore();
    await expect(inbox(page).locator("tbody tr").filter({ hasText: quiet.id })).toBeVisible({ timeout: 20_000 });
    await expect(page.getByRole("status").filter({ hasText: "Live" })).toBeVisible();
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker), "the page was not reloaded").toBe(42);
    await expect(inbox(page).locator("tbody tr")).toHaveCount(before + 1);
  } finally {
    await proxy.stop();
  }
});

test("a branch head sees the branch and filters by relationship manager", async ({ page }) => {
  await signIn(page, "bh-01", "branch_head", "br-01");
  await expect(page.getByRole("heading", { name: "Branch br-01: customers at risk" })).toBeVisible();
  const all = alertsAs("bh-01", "branch_head", "br-01");
  expect(new Set(all.map((a) => a.managerId)).size, "the branch has alerts of several managers").toBeGreaterThan(1);
  await expect(inbox(page).locator("tbody tr")).toHaveCount(all.length);
  expect(await rowIds(page)).toEqual(all.map((a) => a.customerId).sort());
  await accessible(page, "the branch view");
  await shoot(page, "branch-desktop");
  await page.getByLabel("Relationship manager").selectOption("rm-002");
  await expect(page).toHaveURL(/manager=rm-002/);
  const mine = alertsOf("rm-002");
  await expect(inbox(page).locator("tbody tr")).toHaveCount(mine.length);
  const managers = await inbox(page).locator('tbody td[data-label="Manager"]').allTextContents();
  expect(new Set(managers)).toEqual(new Set(["rm-002"]));
  await page.setViewportSize(phone);
  await accessible(page, "the branch view on a phone");
  await shoot(page, "branch-phone");
  // Branch heads may reassign.
  await inbox(page).locator("tbody tr").first().click();
  await expect(page.getByRole("button", { name: "Reassign" })).toBeVisible();
});

test("operations see every alert of the bank, with the manager filter", async ({ page }) => {
  await signIn(page, "ops-1", "ops");
  await expect(page.getByRole("heading", { name: "All customers at risk" })).toBeVisible();
  const all = alertsAs("ops-1", "ops");
  await expect(inbox(page).locator("tbody tr")).toHaveCount(all.length);
  expect(await rowIds(page)).toEqual(all.map((a) => a.customerId).sort());
  await expect(page.getByLabel("Relationship manager")).toBeVisible();
  // The severity filter: only critical alerts, as many as the API has.
  await page.getByLabel("Severity").selectOption("CRITICAL");
  await expect(page).toHaveURL(/severity=CRITICAL/);
  const critical = all.filter((a) => a.severity === "SEVERITY_CRITICAL");
  expect(critical.length, "the bank has critical alerts").toBeGreaterThan(0);
  await expect(inbox(page).locator("tbody tr")).toHaveCount(critical.length);
  expect(new Set(await inbox(page).locator("tbody tr .sev").allTextContents())).toEqual(new Set(["Critical"]));
});

test("a manager opening another manager's alert is told it is not theirs, and sees none of it", async ({ page }) => {
  const theirs = alertsOf("rm-001")[0];
  await signIn(page, "rm-002", "manager");
  await page.goto(`${consoleUrl()}/alerts/${theirs.alertId}`);
  await expect(page.getByRole("heading", { name: "Not yours" })).toBeVisible();
  const text = await page.locator("main").innerText();
  expect(text).not.toContain(theirs.customerId);
  if (theirs.customerDisplayName) expect(text).not.toContain(theirs.customerDisplayName);
  await expect(page.getByRole("button", { name: "Acknowledge" })).toHaveCount(0);
  await accessible(page, "the not-yours page");
});

test("a signed-out browser is sent to sign in and comes back to the page it asked for", async ({ page }) => {
  const res = await page.request.get(`${consoleUrl()}/api/session`);
  expect(res.status()).toBe(401);
  const a = alertsOf("rm-001")[0];
  await page.goto(`${consoleUrl()}/alerts/${a.alertId}`);
  await expect(page).toHaveURL(`${consoleUrl()}/login?next=${encodeURIComponent(`/alerts/${a.alertId}`)}`);
  await accessible(page, "the sign-in page");
  await shoot(page, "signin-desktop");
  await page.getByRole("link", { name: "Manager rm-001" }).click();
  await expect(page).toHaveURL(`${consoleUrl()}/alerts/${a.alertId}`);
  await expect(page.getByRole("heading", { level: 1 })).toContainText(a.customerId);
});
