// Browser tests: headless Debian chromium (Playwright's own browser builds
// cannot be downloaded here) against a real `churnwatch dev` with a
// simulated bank, started by e2e/global-setup.ts.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "e2e",
  testMatch: "*.spec.ts",
  globalSetup: "./e2e/global-setup.ts",
  globalTeardown: "./e2e/global-teardown.ts",
  // One stack, tests that change its alerts: one worker, in file order.
  workers: 1,
  fullyParallel: false,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: process.env.CI ? "line" : "list",
  outputDir: "test-results",
  use: {
    browserName: "chromium",
    headless: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
    },
    viewport: { width: 1280, height: 800 },
    timezoneId: "Europe/Zurich",
    locale: "en-GB",
    trace: "retain-on-failure",
  },
});
