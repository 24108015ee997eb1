// Shadow threshold sets in a real browser against the same `churnwatch dev`
// as the other files: ops start a set on /thresholds (ShadowService through
// the console server), it runs beside live on a new event that only its
// thresholds alert on, its report shows live and the set as the RPC has
// them (checked with `churnctl shadow report`), and it stops; a manager has
// no such section. Every step is checked server-side with churnctl.
import { expect, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { accessible, phone, shoot, signIn } from "./helpers";
import { alertsOf, bankDir, churnctl, consoleUrl, jsonLines } from "./stack";

interface ListedSet { name: string; settings: Record<string, string>; reason: string; actor: string; startedAt: string; stoppedAt?: string; baseVersion: number }
interface ReportSet { name: string; live: boolean; alerts: number; onlyThisSet: string[]; byRule: Record<string, number>; judged: number; correct: number }

const listed = () => JSON.parse(churnctl(["thresholds", "shadow", "--list", "--json"])) as ListedSet[];

// wellFunded is a customer with no alert at all and a balance well above
// the outflow below, so that a 600 EUR transfer to another bank is neither
// a large share of the balance nor a drain: only a tier amount of 500 EUR
// (the shadow set's) makes it an outflow.large.
function wellFunded() {
  const customers = jsonLines<{ customerId: string; tier: string; managerId: string }>(readFileSync(join(bankDir, "customers.ndjson"), "utf8"));
  const alerted = new Set(["rm-001", "rm-002"].flatMap((m) => alertsOf(m, "open,acknowledged,escalated,snoozed,resolved").map((a) => a.customerId)));
  const last = new Map<string, { accountId: string; occurredAt: string; balanceAfter?: string }>();
  for (const l of readFileSync(join(bankDir, "events.ndjson"), "utf8").split("\n")) {
    if (!l.trim()) continue;
    const e = JSON.parse(l) as { customerId: string; accountId: string; occurredAt: string; balanceAfter?: string };
    if (e.balanceAfter) last.set(e.customerId, e);
  }
  const c = customers.find((x) => !alerted.has(x.customerId) && Number(last.get(x.customerId)?.balanceAfter ?? 0) >= 20_000);
  expect(c, "a customer without an alert holding at least 20000 EUR").toBeTruthy();
  const ev = last.get(c!.customerId)!;
  const at = new Date(new Date(ev.occurredAt).getTime() + 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
  const outflow = JSON.stringify({ eventId: `e2e-shadow-${c!.customerId}`, customerId: c!.customerId, accountId: ev.accountId, occurredAt: at,
    type: "TRANSFER_OUT", amount: "600.00", currency: "EUR", counterpartyBank: "OTHERBANK", balanceAfter: (Number(ev.balanceAfter) - 600).toFixed(2), channel: "ONLINE" });
  return { id: c!.customerId, tier: c!.tier, ingest: () => expect(JSON.parse(churnctl(["ingest", "-", "--format", "ndjson"], { input: outflow + "\n" })).accepted).toBe(1) };
}

test("shadow sets in the browser: ops start one, it alerts beside live without notifying, its report shows live and the set, it stops", async ({ page }) => {
  const name = "e2e-looser";
  const customer = wellFunded();
  const key = `outflow.large.amount.${customer.tier}`;
  const other = customer.tier === "BASIC" ? "outflow.large.amount.MASS" : "outflow.large.amount.BASIC";
  const before = JSON.parse(churnctl(["thresholds", "show", "--json"])) as { version: number; settings: Record<string, string> };
  expect(Number(before.settings[key]), `live ${key} is above the 600 EUR outflow`).toBeGreaterThan(600);
  const otherValue = String(Number(before.settings[other]) - 100);

  await signIn(page, "ops-1", "ops");
  await page.getByRole("link", { name: "Thresholds" }).click();
  await expect(page.getByRole("heading", { name: "Shadow sets" })).toBeVisible();
  await expect(page.getByText("No shadow set is running.")).toBeVisible();
  const form = page.getByRole("form", { name: "Start a shadow set" });
  await form.getByLabel("Name of the set").fill(name);
  await form.getByLabel("Threshold to change").selectOption(key);
  await form.getByLabel("Value in the shadow set").fill("500");
  await form.getByRole("button", { name: "Add another threshold" }).click();
  const second = form.getByRole("group", { name: "Change 2" });
  await second.getByLabel("Threshold to change").selectOption(other);
  await second.getByLabel("Value in the shadow set").fill(otherValue);
  await form.getByLabel("Why run it").fill("catch smaller outflows (e2e)");
  await form.getByRole("button", { name: "Start the shadow set" }).click();
  await expect(form.getByRole("status")).toContainText(`Shadow set ${name} started from live version ${before.version}`);
  const card = page.getByRole("article", { name: `Shadow set ${name}: running` });
  await expect(card.getByRole("list", { name: `Changes of ${name}` }).getByRole("listitem")).toHaveText([`${key} → 500`, `${other} → ${otherValue}`].sort());
  await expect(card).toContainText("Started by ops-1");
  await expect(card).toContainText(`from live version ${before.version}`);

  // The rules service has it, as the page says.
  const sets = listed();
  expect(sets).toHaveLength(1);
  expect(sets[0]).toMatchObject({ name, actor: "ops-1", reason: "catch smaller outflows (e2e)", baseVersion: before.version, settings: { [key]: "500", [other]: otherValue } });
  expect(sets[0].stoppedAt).toBeUndefined();

  // The same name again: the rules service's words, as it says them.
  await form.getByLabel("Name of the set").fill(name);
  await form.getByLabel("Threshold to change").selectOption(key);
  await form.getByLabel("Value in the shadow set").fill("400");
  await form.getByLabel("Why run it").fill("again");
  await form.getByRole("button", { name: "Start the shadow set" }).click();
  await expect(form.getByRole("alert")).toHaveText("The rules service refused to start the shadow set: a shadow set of that name exists (running or stopped): choose another name");
  expect(listed()).toHaveLength(1);

  // A new event only the shadow set's thresholds alert on; live stays quiet
  // and nobody is notified.
  customer.ingest();
  churnctl(["wait", "--timeout", "60s"]);
  const rpc = () => (JSON.parse(churnctl(["shadow", "report", "--name", name, "--json"])) as ReportSet[]);
  await expect.poll(() => rpc()[1].onlyThisSet, { timeout: 15_000 }).toContain(customer.id);
  expect(alertsOf("rm-001", "open,acknowledged,escalated,snoozed,resolved").concat(alertsOf("rm-002", "open,acknowledged,escalated,snoozed,resolved"))
    .map((a) => a.customerId), "no live alert for the shadow set's customer").not.toContain(customer.id);

  await card.getByRole("link", { name: `Report of ${name}` }).click();
  await expect(page).toHaveURL(`${consoleUrl()}/thresholds?report=${name}#shadow-report`);
  await expect(page.getByRole("heading", { name: `Report: ${name} against live` })).toBeFocused();
  const summary = page.getByRole("table", { name: "Alerts and precision per set" });
  const report = rpc();
  expect(report.map((s) => s.name)).toEqual(["live", name]);
  for (const s of report) {
    const row = summary.getByRole("row", { name: new RegExp(`^${s.name} `) });
    await expect(row.getByRole("cell")).toHaveText([String(s.alerts), String(s.onlyThisSet.length), String(s.judged), String(s.correct),
      s.judged > 0 ? `${(s.correct / s.judged).toFixed(2)} (${s.correct} of ${s.judged} judged)` : "not measured: none judged yet"]);
  }
  const byRule = page.getByRole("table", { name: "Alerts by rule, per set" });
  await expect(byRule.getByRole("columnheader")).toHaveText(["Rule", "live", name]);
  await expect(byRule.getByRole("row", { name: /\(outflow\.large\)/ }).getByRole("cell")).toHaveText([String(report[0].byRule["outflow.large"] ?? 0), String(report[1].byRule["outflow.large"])]);
  await expect(page.getByRole("table", { name: "Customers only one set alerted" }).getByRole("row", { name: new RegExp(`^${name} `) })).toContainText(customer.id);
  await expect(page.getByText(/A customer alerted only by a shadow set has no outcome/)).toBeVisible();
  await accessible(page, "the thresholds page with a shadow report");
  await shoot(page, "shadow-desktop", true);
  await page.setViewportSize(phone);
  await accessible(page, "the thresholds page with a shadow report on a phone");
  await summary.scrollIntoViewIfNeeded();
  await shoot(page, "shadow-phone");
  await page.setViewportSize({ width: 1280, height: 800 });

  // Stop asks first.
  await card.getByRole("button", { name: `Stop ${name}` }).click();
  const confirm = card.getByRole("group", { name: `Stop ${name}?` });
  await expect(confirm).toContainText("Its report stays readable");
  await expect(confirm.getByRole("button", { name: "Keep it running" }), "focus on the harmless choice").toBeFocused();
  await confirm.getByRole("button", { name: "Keep it running" }).click();
  await expect(confirm).toHaveCount(0);
  expect(listed()[0].stoppedAt).toBeUndefined();
  await card.getByRole("button", { name: `Stop ${name}` }).click();
  await card.getByRole("button", { name: `Yes, stop ${name}` }).click();
  const stopped = page.getByRole("article", { name: `Shadow set ${name}: stopped` });
  await expect(stopped).toContainText("; stopped ");
  await expect(stopped.getByRole("button", { name: `Stop ${name}` })).toHaveCount(0);
  await expect(page.getByText("No shadow set is running.")).toBeVisible();
  expect(listed()[0].stoppedAt, "stopped in the rules service").toBeTruthy();
  // Its report stays readable.
  await expect(page.getByRole("table", { name: "Alerts and precision per set" }).getByRole("row", { name: new RegExp(`^${name} `) })).toBeVisible();
});

test("a manager's Thresholds page has no shadow sets", async ({ page }) => {
  await signIn(page, "rm-001", "manager");
  await page.goto(`${consoleUrl()}/thresholds?report=e2e-looser`);
  await expect(page.getByText(/read and changed by operations and administrators only/)).toBeVisible();
  await expect(page.getByRole("heading", { name: "Shadow sets" })).toHaveCount(0);
  await expect(page.getByRole("table")).toHaveCount(0);
});
