import { Writable } from "node:stream";
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from "../../src/app/control-plane.js";
import { loadConfig, type Config } from "../../src/config/config.js";
import { createLogger } from "../../src/logging.js";
import { nanos } from "../../src/domain/money.js";
import type { StoreTarget } from "./services.js";
import { connectAuthz, type AuthzClient } from "./authz-client.js";
import { TEST_SIGNING_SECRET } from "./als-client.js";

/** A control plane started for a test, with a client and the log lines it wrote. */
export interface TestPlane {
  plane: ControlPlane;
  config: Config;
  authz: AuthzClient;
  authzAddress: string;
  logs: string[];
  /** Creates an account on `plan` and a key for it; returns the secret. */
  account(
    plan?: string,
    key?: Parameters<ControlPlane["stores"]["keys"]["create"]>[0] extends infer K ? Partial<K> : never,
  ): Promise<{ accountId: string; keyId: string; secret: string }>;
  close(): Promise<void>;
}

/** Starts the authz role on a store target with mock provider credentials and captured logs. */
export async function startTestPlane(
  target: StoreTarget,
  options: {
    clock?: () => number;
    env?: Record<string, string>;
    roles?: ControlPlaneOptions["roles"];
    pollMs?: number;
    mockProviders?: boolean /** Nano-USD each account() starts with (default 1000 USD; 0 for none). */;
    accountCredits?: bigint;
  } = {},
): Promise<TestPlane> {
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const config = loadConfig({
    env: { TOLLGATE_DATABASE_URL: target.url, TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET, ...options.env },
    overrides: { "authz.listen": "127.0.0.1:0", "keys.poll_interval_ms": options.pollMs ?? 200 },
  });
  const logger = createLogger({ level: "debug", destination });
  const plane = await startControlPlane(config, {
    roles: options.roles ?? ["authz"],
    logger,
    mockProviders: options.mockProviders ?? true,
    clock: options.clock,
    schema: target.schema,
  });
  const authzAddress = `127.0.0.1:${plane.authz!.port}`;
  const authz = connectAuthz(authzAddress);
  return {
    plane,
    config,
    authz,
    authzAddress,
    logs,
    async account(plan = "pro", key = {}) {
      const account = await plane.stores.accounts.create({ name: "Test account", planId: plan });
      const issued = await plane.stores.keys.create({ accountId: account.id, name: "test", ...key });
      // Admission reserves credit: accounts start funded unless the test is about credits.
      const credit = options.accountCredits ?? 1_000_000_000_000n;
      if (credit > 0n)
        await plane.stores.ledger.topUp({ accountId: account.id, amount: nanos(credit), feeBps: 0, now: Date.now() });
      return { accountId: account.id, keyId: issued.key.id, secret: issued.secret };
    },
    async close() {
      authz.close();
      await plane.close();
      await target.cleanup();
    },
  };
}
