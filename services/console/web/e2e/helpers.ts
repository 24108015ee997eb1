// What every browser test file shares: signing in through the dev sign-in,
// the axe-core check, and screenshots. A run saves its screenshots under
// test-results/screenshots (git-ignored); with UPDATE_SCREENSHOTS=1 (make
// console-screenshots) it also copies them into docs/console/, so an
// ordinary `make test` leaves the tree clean.
import { expect } from "@playwright/test";
import type { Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { consoleUrl, repoRoot, webDir } from "./stack";

export const shotsDir = join(webDir, "test-results", "screenshots");
export const docsShotsDir = join(repoRoot, "docs", "console");
export const phone = { width: 390, height: 844 };

export async function signIn(page: Page, sub: string, role: string, branch = "", base = consoleUrl()) {
  const q = new URLSearchParams({ sub, role, ...(branch ? { branch } : {}) });
  await page.goto(`${base}/dev/login?${q}`);
  await expect(page).toHaveURL(`${base}/`);
  await expect(page.getByText(`Signed in as ${sub}`)).toBeVisible();
}

// No serious or critical accessibility violations on the page as shown.
export async function accessible(page: Page, what: string) {
  const res = await new AxeBuilder({ page }).analyze();
  const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`), `axe on ${what}`).toEqual([]);
}

export async function shoot(page: Page, name: string, fullPage = false) {
  mkdirSync(shotsDir, { recursive: true });
  const path = join(shotsDir, `${name}.png`);
  await page.screenshot({ path, fullPage, animations: "disabled" });
  if (process.env.UPDATE_SCREENSHOTS === "1") {
    mkdirSync(docsShotsDir, { recursive: true });
    copyFileSync(path, join(docsShotsDir, `${name}.png`));
  }
}
