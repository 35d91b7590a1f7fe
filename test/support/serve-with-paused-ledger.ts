/**
 * Test-only entry point: the meter role (as `tollgate serve --role meter` runs it, config from the environment) built
 * with a ledger store that pauses PAUSE_MS inside every settlement transaction, so a failure drill's SIGKILL lands
 * mid-commit. Production code has no such hook: the pause is injected through the composition root's wrapLedger.
 *
 *   node --import tsx test/support/serve-with-paused-ledger.ts PAUSE_MS
 */
import { startControlPlane } from "../../src/app/control-plane.js";
import { loadConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/logging.js";
import { pauseInsideCommits } from "./paused-ledger.js";

const pauseMs = Number(process.argv[2]);
if (!Number.isSafeInteger(pauseMs) || pauseMs <= 0)
  throw new Error(`usage: serve-with-paused-ledger.ts PAUSE_MS (got "${process.argv[2]}")`);
const config = loadConfig({});
const logger = createLogger({ level: config.log.level, base: { pid: process.pid, role: "meter" } });
const plane = await startControlPlane(config, {
  roles: ["meter"],
  logger,
  wrapLedger: (ledger, db) => pauseInsideCommits(ledger, db, pauseMs),
});
process.stdout.write(`tollgate: meter (Envoy access log gRPC) on ${config.meter.listen}\n`);
process.once("SIGTERM", () => void plane.close().then(() => process.exit(0)));
