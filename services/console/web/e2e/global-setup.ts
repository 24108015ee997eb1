// Builds bin/churnwatch and bin/churnctl, starts `churnwatch dev
// --any-port`, and streams a simulated bank through it (customers, a few
// months of events), waiting until every consumer has caught up.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bankDir, bin, churnctl, devDir, goBuild, stackDir } from "./stack";

async function until(what: string, ok: () => boolean, ms: number, log: string) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} within ${ms / 1000} s; churnwatch dev said:\n${existsSync(log) ? readFileSync(log, "utf8").slice(-4000) : "(no log)"}`);
}

export default async function globalSetup() {
  rmSync(stackDir, { recursive: true, force: true });
  mkdirSync(devDir, { recursive: true });
  if (!process.env.E2E_NO_BUILD) goBuild();
  const log = join(stackDir, "churnwatch-dev.log");
  const out = openSync(log, "a");
  const dev = spawn(bin("churnwatch"), ["dev", "--any-port", "--dir", devDir], { stdio: ["ignore", out, out], detached: false });
  writeFileSync(join(stackDir, "pid"), String(dev.pid));
  let exited = "";
  dev.on("exit", (code, sig) => { exited = `exited ${code ?? sig}`; });
  await until("churnwatch dev wrote dev.env with CHURNWATCH_CONSOLE_URL", () => {
    if (exited) throw new Error(`churnwatch dev ${exited}:\n${readFileSync(log, "utf8").slice(-4000)}`);
    const p = join(devDir, "dev.env");
    return existsSync(p) && readFileSync(p, "utf8").includes("CHURNWATCH_CONSOLE_URL");
  }, 60_000, log);
  // A small bank: 300 customers of two managers in branch br-01, 8 months.
  churnctl(["simulate", "--customers", "300", "--months", "8", "--seed", "7", "--out", bankDir]);
  churnctl(["customers", "import", join(bankDir, "customers.ndjson")]);
  churnctl(["ingest", join(bankDir, "events.ndjson")]);
  churnctl(["wait", "--timeout", "120s"]);
}
