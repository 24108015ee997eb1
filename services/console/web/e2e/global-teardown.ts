// Stops the churnwatch dev that global-setup started (by its pid only).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { stackDir } from "./stack";

export default async function globalTeardown() {
  const p = join(stackDir, "pid");
  if (!existsSync(p)) return;
  const pid = Number(readFileSync(p, "utf8"));
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return; // already gone
  }
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(pid, "SIGKILL");
}
