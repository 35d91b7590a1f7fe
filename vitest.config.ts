import { defineConfig } from "vitest/config";

/** Suites whose assertions are wall-clock percentiles or peak memory: they run after the rest, one at a time. */
export const ISOLATED = "test/**/*.isolated.test.ts";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: [ISOLATED, "**/node_modules/**"],
    // One line per run naming the suites that skip for want of PostgreSQL or Redis (not one per file).
    globalSetup: ["test/support/skip-notice.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Integration suites share the machine's PostgreSQL and Redis; each uses its own schema / key prefix.
    fileParallelism: true,
  },
});
