/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// Preact's JSX runtime through the bundler's own TypeScript transform, so no
// Babel preset is needed (tsconfig.json says jsxImportSource: preact).
export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Stable file names inside assets/ come from content hashes; no source
    // maps in the committed bundle.
    sourcemap: false,
  },
  test: {
    environment: "happy-dom",
    include: ["test/unit/**/*.test.{ts,tsx}"],
    testTimeout: 10000,
  },
});
