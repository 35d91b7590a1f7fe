import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createAdminOperations, type AdminOperations } from "../../src/app/admin-operations.js";
import { createPageTokens } from "../../src/app/page-tokens.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import { describeStores, type StoreTarget } from "../support/services.js";

const ROOT = join(import.meta.dirname, "../..");
const CHILD = join(ROOT, "test/support/top-up-child.ts");
const operator = { kind: "operator" as const, tokenId: "test-operator" };
const USD = 1_000_000_000n;

function operations(store: Stores["admin"]): AdminOperations {
  return createAdminOperations({
    store,
    pageTokens: createPageTokens(async () => Buffer.alloc(32)),
    platformFeeBps: 2500,
    clock: Date.now,
    events: {
      keyChanged: async () => {},
      accountChanged: async () => {},
      balanceCommitted: async () => {},
      catalogueChanged: async () => {},
    },
  });
}

/** Runs the top-up child; resolves once `until` appears on its stdout (then kills it) or it exits. */
function child(
  target: StoreTarget,
  accountId: string,
  mode: "pause" | "run",
  keys: string[],
  killAfterMs?: number,
  startAt?: number,
): Promise<{ stdout: string; killed: boolean }> {
  return new Promise((resolve, reject) => {
    // node itself with tsx's loader (not the tsx wrapper, which runs node as a grandchild a SIGKILL would miss).
    const proc = spawn(
      process.execPath,
      ["--import", "tsx", CHILD, target.url, target.schema ?? "", accountId, mode, ...keys],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, TOPUP_START_AT: String(startAt ?? 0) },
      },
    );
    let stdout = "";
    let stderr = "";
    let killed = false;
    const kill = () => {
      if (!killed && proc.exitCode === null) {
        killed = true;
        proc.kill("SIGKILL");
      }
    };
    proc.stdout.on("data", (chunk) => {
      stdout += chunk;
      if (mode === "pause" && stdout.includes("paused\n")) kill();
      if (mode === "run" && killAfterMs !== undefined && stdout.includes("done ")) setTimeout(kill, killAfterMs);
    });
    proc.stderr.on("data", (chunk) => (stderr += chunk));
    proc.on("error", reject);
    proc.on("exit", (code, signal) => {
      if (!killed && code !== 0) reject(new Error(`top-up child exited ${code ?? signal}: ${stderr}`));
      else resolve({ stdout, killed });
    });
  });
}

describeStores("top-up idempotency", (target) => {
  let t: StoreTarget;
  let stores: Stores;
  let ops: AdminOperations;
  beforeAll(async () => {
    t = target();
    stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: t.url } }), { schema: t.schema });
    ops = operations(stores.admin);
  });
  afterAll(async () => {
    await stores?.db.close();
    await t?.cleanup();
  });

  const newAccount = async () => (await ops.accounts.create(operator, { name: "Idempotent", planId: "pro" })).id;
  /** What the database holds for an account: balance, ledger rows, recorded top-ups and their audit records. */
  const trace = async (accountId: string) => {
    const { knex } = stores.db;
    const topUps = await knex("admin_top_ups").where({ account_id: accountId });
    const audit = (await knex("admin_audit").where("method", "like", "%/TopUp")).filter(
      (r) => JSON.parse(r.targets).account_id === accountId,
    );
    return {
      balance: (await stores.admin.balance(accountId)).balance,
      entries: (await stores.ledger.entries(accountId)).map((e) => e.kind).sort(),
      topUps: topUps.map((r) => ({
        key: r.idempotency_key as string,
        complete: r.top_up_id !== null && r.fee !== null && r.balance !== null,
      })),
      audits: audit.length,
    };
  };

  it("applies concurrent top-ups with one idempotency key once, from four processes and this one", {
    timeout: 60_000,
  }, async () => {
    const accountId = await newAccount();
    // Separate processes: real concurrency on both dialects (better-sqlite3 is synchronous, so two connections in
    // one process would only wait on each other; in production the CLI and admin replicas are separate processes).
    const startAt = Date.now() + 1500;
    const children = Array.from({ length: 4 }, () => child(t, accountId, "run", ["order-42"], undefined, startAt));
    await new Promise((resolve) => setTimeout(resolve, startAt - Date.now()));
    const here = await Promise.all(
      Array.from({ length: 4 }, () =>
        ops.credits.topUp(operator, { accountId, amount: USD, idempotencyKey: "order-42" }),
      ),
    );
    for (const c of await Promise.all(children)) expect(c.stdout).toBe("done order-42\n");
    expect(new Set(here.map((r) => r.topUpId)).size).toBe(1);
    expect(here.every((r) => r.balance === USD)).toBe(true);
    expect(await trace(accountId)).toEqual({
      balance: USD,
      entries: ["platform_fee", "top_up"],
      topUps: [{ key: "order-42", complete: true }],
      audits: 1,
    });
  });

  it("a top-up killed between its statements and COMMIT leaves no trace, and its retry applies once", async () => {
    const accountId = await newAccount();
    const { killed } = await child(t, accountId, "pause", ["order-killed"]);
    expect(killed).toBe(true);
    expect(await trace(accountId)).toEqual({ balance: 0n, entries: [], topUps: [], audits: 0 });
    const retry = await ops.credits.topUp(operator, { accountId, amount: USD, idempotencyKey: "order-killed" });
    expect(retry.replayed).toBe(false);
    expect(await trace(accountId)).toEqual({
      balance: USD,
      entries: ["platform_fee", "top_up"],
      topUps: [{ key: "order-killed", complete: true }],
      audits: 1,
    });
  });

  it("top-ups killed at random moments are each whole or absent, never a stuck claim; retries complete them once", {
    timeout: 120_000,
  }, async () => {
    const accountId = await newAccount();
    const keys = Array.from({ length: 40 }, (_, i) => `batch-${i}`);
    for (let round = 0; round < 4; round++) {
      await child(t, accountId, "run", keys, Math.floor(Math.random() * 40));
      const state = await trace(accountId);
      // Every recorded top-up is complete, and the balance, ledger and audit agree with how many there are.
      expect(state.topUps.every((r) => r.complete)).toBe(true);
      const n = BigInt(state.topUps.length);
      expect(state.balance).toBe(n * USD);
      expect(state.entries).toHaveLength(2 * state.topUps.length);
      expect(state.audits).toBe(state.topUps.length);
    }
    for (const key of keys) await ops.credits.topUp(operator, { accountId, amount: USD, idempotencyKey: key });
    const done = await trace(accountId);
    expect(done.topUps).toHaveLength(keys.length);
    expect(done.balance).toBe(BigInt(keys.length) * USD);
    expect(done.audits).toBe(keys.length);
  });
});
