import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { CONSOLE_DIST } from "../../src/admin/console-assets.js";
import { createAdminTokenStore } from "../../src/admin/tokens.js";
import { startControlPlane, type ControlPlane } from "../../src/app/control-plane.js";
import { loadConfig, PACKAGE_ROOT } from "../../src/config/config.js";
import { nanos } from "../../src/domain/money.js";
import { createEdge, type Edge } from "../../src/edge/edge.js";
import { createLogger } from "../../src/logging.js";
import { createMockProvider, type MockProvider } from "../../src/mock-provider/mock-provider.js";
import { TEST_SIGNING_SECRET } from "../support/als-client.js";
import { sqliteTarget } from "../support/services.js";

/** Builds dist/console when it is missing (`npm test` builds it first; a targeted run may not have). */
export function ensureConsoleBuilt(): void {
  if (!existsSync(join(CONSOLE_DIST, "index.html")))
    execFileSync(process.execPath, [join(PACKAGE_ROOT, "scripts/build-console.mjs")], { cwd: PACKAGE_ROOT });
}

/** What the console's browser tests run against: every role in one process, the local edge and a mock provider. */
export interface ConsoleStack {
  plane: ControlPlane;
  /** The admin port's origin; the console is at `${adminUrl}/console`. */
  adminUrl: string;
  /** The data plane's OpenAI-compatible base URL ("…/v1"). */
  baseURL: string;
  operatorToken: string;
  logs: string[];
  /** A new account on `plan`, funded with `fund` nano-USD, and an account admin token for it. */
  account(name: string, fund?: bigint, plan?: string): Promise<{ accountId: string; token: string }>;
  /** Pushes the edge's buffered access-log entries to the meter. */
  flushAccessLogs(): Promise<void>;
  close(): Promise<void>;
}

/** Starts the stack on a fresh SQLite file, with the admin API on an ephemeral port. */
export async function startConsoleStack(): Promise<ConsoleStack> {
  ensureConsoleBuilt();
  const target = sqliteTarget();
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const config = loadConfig({
    env: { TOLLGATE_DATABASE_URL: target.url, TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET },
    overrides: {
      "authz.listen": "127.0.0.1:0",
      "meter.listen": "127.0.0.1:0",
      "admin.listen": "127.0.0.1:0",
      "keys.poll_interval_ms": 200,
    },
  });
  const logger = createLogger({ level: "debug", destination });
  const plane = await startControlPlane(config, { roles: ["authz", "meter", "admin"], logger, mockProviders: true });
  const mock: MockProvider = await createMockProvider();
  const logDir = mkdtempSync(join(tmpdir(), "tollgate-console-"));
  const edge: Edge = await createEdge({
    authzAddress: `127.0.0.1:${plane.authz!.port}`,
    meterAddress: `127.0.0.1:${plane.metering.server!.port}`,
    host: "127.0.0.1",
    port: 0,
    defaultUpstream: mock.url,
    fileLogPath: join(logDir, "access.json"),
    alsFlushIntervalMs: 50,
    logger,
  });
  const tokens = createAdminTokenStore(plane.stores.db);
  const operatorToken = (await tokens.create({ kind: "operator" }, "console test operator")).secret;
  return {
    plane,
    adminUrl: `http://127.0.0.1:${plane.admin!.port}`,
    baseURL: `${edge.url}/v1`,
    operatorToken,
    logs,
    async account(name, fund = 10_000_000_000n, plan = "pro") {
      const account = await plane.stores.accounts.create({ name, planId: plan });
      if (fund > 0n) {
        const { change } = await plane.stores.ledger.topUp({
          accountId: account.id,
          amount: nanos(fund),
          feeBps: 2_500,
          now: Date.now(),
        });
        await plane.metering.credits.committed([change]);
      }
      const token = (await tokens.create({ kind: "account", accountId: account.id }, `${name} console`)).secret;
      return { accountId: account.id, token };
    },
    async flushAccessLogs() {
      edge.flushAccessLogs();
      await sleep(100);
    },
    async close() {
      await edge.close();
      await mock.close();
      await plane.close();
      await target.cleanup();
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}
