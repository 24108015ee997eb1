// The dev stack the browser tests run against: `churnwatch dev --any-port`
// in a directory of its own, reached through D/dev.env like any client.
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const webDir = fileURLToPath(new URL("..", import.meta.url));
export const repoRoot = join(webDir, "..", "..", "..");
export const stackDir = join(webDir, ".e2e");
export const devDir = join(stackDir, "dev");
export const bankDir = join(stackDir, "bank");
export const bin = (name: string) => join(repoRoot, "bin", name);

// devEnv reads the export lines of D/dev.env.
export function devEnv(dir = devDir): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(join(dir, "dev.env"), "utf8").split("\n")) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = JSON.parse(m[2]);
  }
  return env;
}

// churnctl runs the CLI against the stack (admin token from dev.env unless
// another is given) and returns its stdout; a failure names the command.
export function churnctl(args: string[], opts: { input?: string; token?: string } = {}): string {
  const env = { ...process.env, ...devEnv() };
  if (opts.token) env.CHURNWATCH_TOKEN = opts.token;
  const r = spawnSync(bin("churnctl"), args, { env, input: opts.input, encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) throw new Error(`churnctl ${args.join(" ")} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

export function jsonLines<T = Record<string, unknown>>(out: string): T[] {
  return out.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as T);
}

export interface CliAlert {
  alertId: string;
  customerId: string;
  customerDisplayName?: string;
  managerId: string;
  branchId: string;
  state: string;
  severity: string;
  outcome?: string;
  note?: string;
}

export const waiting = "open,acknowledged,escalated";

export function alertsOf(manager: string, state = waiting): CliAlert[] {
  return jsonLines<CliAlert>(churnctl(["alerts", "list", "--manager", manager, "--state", state, "--limit", "1000", "--json"]));
}

// alertsAs lists what a principal's own token shows it, the way churnctl
// would for that person.
export function alertsAs(sub: string, role: string, branch = "", state = waiting): CliAlert[] {
  const token = churnctl(["token", "mint", "--subject", sub, "--role", role, ...(branch ? ["--branch", branch] : []), "--ttl", "10m"]).trim();
  return jsonLines<CliAlert>(churnctl(["alerts", "list", "--state", state, "--limit", "1000", "--json"], { token }));
}

export function getAlert(id: string): CliAlert {
  return JSON.parse(churnctl(["alerts", "get", id, "--json"]).trim().split("\n")[0]) as CliAlert;
}

export function consoleUrl(): string {
  const url = process.env.CHURNWATCH_CONSOLE_URL ?? devEnv().CHURNWATCH_CONSOLE_URL;
  if (!url) throw new Error("no CHURNWATCH_CONSOLE_URL in dev.env: this churnwatch dev does not run the console");
  return url.replace(/\/$/, "");
}

export function goBuild(): void {
  for (const [out, pkg] of [["churnwatch", "./services/churnctl/cmd/churnwatch"], ["churnctl", "./services/churnctl/cmd/churnctl"]]) {
    execFileSync("go", ["build", "-o", bin(out), pkg], { cwd: repoRoot, stdio: "inherit" });
  }
}
