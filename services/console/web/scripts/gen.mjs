// Regenerates the TypeScript clients in src/gen from the repo's proto/ with
// buf and the local protoc-gen-es plugin (buf's remote plugins are not
// reachable here). Usage: node scripts/gen.mjs [--out DIR]  (DIR: a base
// directory to generate into instead of this one; the freshness test uses it).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { bufPath, webDir } from "./tools.mjs";

const i = process.argv.indexOf("--out");
const base = i > 0 ? process.argv[i + 1] : webDir;
// Generate beside the target and swap, so a failed run (a .proto that does
// not compile) leaves the committed clients as they were.
mkdirSync(join(base, "src"), { recursive: true });
const tmp = mkdtempSync(join(base, "src", ".gen-"));
try {
  execFileSync(bufPath(), ["generate", "--template", "buf.gen.yaml", "-o", tmp], { cwd: webDir, stdio: "inherit" });
  rmSync(join(base, "src", "gen"), { recursive: true, force: true });
  renameSync(join(tmp, "src", "gen"), join(base, "src", "gen"));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
