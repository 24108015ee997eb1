// Shared by the build scripts and the freshness tests: where buf is, and
// the hash of the sources the committed bundle was built from.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { delimiter, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const webDir = fileURLToPath(new URL("..", import.meta.url));
export const repoRoot = join(webDir, "..", "..", "..");

// buf: $BUF, else the repo's pinned copy (.tools/bin, installed by
// scripts/setup.sh), else PATH.
export function bufPath() {
  if (process.env.BUF) return process.env.BUF;
  const pinned = join(repoRoot, ".tools", "bin", "buf");
  if (existsSync(pinned)) return pinned;
  for (const d of (process.env.PATH ?? "").split(delimiter)) {
    if (d && existsSync(join(d, "buf"))) return join(d, "buf");
  }
  throw new Error("buf not found: run scripts/setup.sh (it installs the pinned buf into .tools/bin) or set BUF");
}

function walk(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

// The inputs of `vite build`: the app's sources (with the generated
// clients) and everything that decides how they are built.
export const sourceInputs = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts", "src"];
export const hashFile = join(webDir, "dist.sources.sha256");

export function sourceHash() {
  const h = createHash("sha256");
  for (const input of sourceInputs) {
    const p = join(webDir, input);
    const files = statSync(p).isDirectory() ? walk(p, []) : [p];
    for (const f of files) {
      h.update(relative(webDir, f).split("\\").join("/"));
      h.update("\0");
      h.update(readFileSync(f));
      h.update("\0");
    }
  }
  return h.digest("hex");
}
