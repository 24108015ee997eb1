// Regenerates the TypeScript clients in src/gen from the repo's proto/ with
// buf and the local protoc-gen-es plugin (buf's remote plugins are not
// reachable here). Usage: node scripts/gen.mjs [--out DIR]  (DIR: a base
// directory to generate into instead of this one; the freshness test uses it).
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { bufPath, webDir } from "./tools.mjs";

const i = process.argv.indexOf("--out");
const base = i > 0 ? process.argv[i + 1] : webDir;
rmSync(join(base, "src", "gen"), { recursive: true, force: true });
execFileSync(bufPath(), ["generate", "--template", "buf.gen.yaml", "-o", base], { cwd: webDir, stdio: "inherit" });
