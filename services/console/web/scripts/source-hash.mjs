// Records (--write) or checks (--check) the hash of the sources that the
// committed bundle in dist/ was built from, in dist.sources.sha256.
import { readFileSync, writeFileSync } from "node:fs";
import { hashFile, sourceHash } from "./tools.mjs";

const h = sourceHash();
if (process.argv.includes("--write")) {
  writeFileSync(hashFile, h + "\n");
  console.log(`dist built from sources ${h.slice(0, 12)}`);
} else {
  const have = readFileSync(hashFile, "utf8").trim();
  if (have !== h) {
    console.error("services/console/web/dist is stale: the sources changed since it was built. Run `make console` and commit dist/ and dist.sources.sha256.");
    process.exit(1);
  }
}
