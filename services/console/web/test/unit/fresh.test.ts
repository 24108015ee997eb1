// @vitest-environment node
// The committed generated clients and the committed bundle must match their
// sources, so a .proto change breaks the console's build, not production.
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
// @ts-expect-error plain ESM build helper without types
import { hashFile, sourceHash, webDir } from "../../scripts/tools.mjs";

function files(dir: string, out: string[] = [], base = dir): string[] {
  for (const n of readdirSync(dir).sort()) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) files(p, out, base);
    else out.push(relative(base, p));
  }
  return out;
}

describe("committed output is current", () => {
  it("src/gen matches a fresh buf generate of proto/", () => {
    const tmp = mkdtempSync(join(tmpdir(), "console-gen-"));
    try {
      execFileSync("node", [join(webDir, "scripts", "gen.mjs"), "--out", tmp], { cwd: webDir, stdio: "pipe" });
      const fresh = join(tmp, "src", "gen");
      const have = join(webDir, "src", "gen");
      const stale = "src/gen is stale against proto/: run `make console` and commit src/gen and dist";
      expect(files(have), stale).toEqual(files(fresh));
      for (const f of files(fresh)) {
        expect(readFileSync(join(have, f), "utf8"), `${stale} (${f} differs)`).toBe(readFileSync(join(fresh, f), "utf8"));
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 60000);

  it("dist was built from the current sources", () => {
    const recorded = readFileSync(hashFile, "utf8").trim();
    expect(recorded, "services/console/web/dist is stale: run `make console` and commit dist/ and dist.sources.sha256").toBe(sourceHash());
    expect(readFileSync(join(webDir, "dist", "index.html"), "utf8")).toMatch(/<script type="module"[^>]+src="\/assets\/index-[\w-]+\.js"/);
  });
});
