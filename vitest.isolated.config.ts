import { defineConfig } from "vitest/config";
import base, { ISOLATED } from "./vitest.config.js";

/** The wall-clock suites (victim p99 under attack), one file at a time after the main run: `npm test` runs both. */
export default defineConfig({
  test: { ...base.test, include: [ISOLATED], exclude: ["**/node_modules/**"], fileParallelism: false },
});
