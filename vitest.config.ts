import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Integration suites share the machine's PostgreSQL and Redis; each uses its own schema / key prefix.
    fileParallelism: true,
  },
});
