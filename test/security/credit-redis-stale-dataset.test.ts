import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { nanos } from "../../src/domain/money.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { freePort } from "../support/ports.js";
import { sqliteTarget, type StoreTarget } from "../support/services.js";

const BODY = JSON.stringify({
  model: "gpt-5.5",
  max_tokens: 100,
  messages: [{ role: "user", content: "Spend my credit once" }],
});
const check = (secret: string) =>
  envoyCheckRequest({ headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" }, body: BODY });
const TTL_MS = 60_000;
const IN_FLIGHT = 5;

/** A redis-server that loads (and SAVE writes) `dir`/dump.rdb: restarting it restores the last snapshot. */
async function startSnapshotRedis(port: number, dir: string): Promise<ChildProcess> {
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--dbfilename",
    "dump.rdb",
  ];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    child.stdout!.on("data", (chunk) => {
      seen += String(chunk);
      if (seen.includes("Ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`redis-server exited (${code}): ${seen}`)));
  });
  return child;
}

/** kill -9: no shutdown save, the dataset on disk is whatever the last SAVE wrote. */
async function crash(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

async function waitConnected(t: TestPlane): Promise<void> {
  for (let i = 0; i < 100 && t.plane.rateLimiting.redis!.status !== "ready"; i++)
    await new Promise((resolve) => setTimeout(resolve, 50));
  expect(t.plane.rateLimiting.redis!.status).toBe("ready");
  // No pause for the gate to verify the new server: a Check sent the moment the connection is ready must not be
  // decided before that check (it waits for it, or answers 503).
}

/**
 * A Redis that comes back with OLDER data (restored from an RDB snapshot, an AOF that lost its last second, a replica
 * promoted after missing writes) still has its epoch, but not the reservations taken since the snapshot. Tollgate
 * notices the server changed (its run_id) and fences credit for one reservation TTL, unless the operator asserts
 * redis.durable (every write fsynced and synchronously replicated), when only an empty dataset fences.
 */
describe("Redis restored from an older snapshot never grants reserved credit twice", () => {
  let port: number;
  let dir: string;
  let server: ChildProcess | undefined;
  const planes: TestPlane[] = [];
  const clock = { now: Date.now() };
  let target: StoreTarget;

  beforeEach(async () => {
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), "tollgate-rdb-"));
    server = await startSnapshotRedis(port, dir);
    target = sqliteTarget();
  });
  afterEach(async () => {
    for (const p of planes.splice(0).reverse()) await p.close();
    if (server) await crash(server);
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (env: Record<string, string> = {}) => {
    const shared: StoreTarget = {
      ...target,
      cleanup: async () => (planes.length === 0 ? target.cleanup() : undefined),
    };
    const t = await startTestPlane(shared, {
      clock: () => clock.now,
      accountCredits: 0n,
      env: {
        TOLLGATE_REDIS_URL: `redis://127.0.0.1:${port}`,
        TOLLGATE_METER_RESERVATION_TTL_MS: String(TTL_MS),
        ...env,
      },
    });
    planes.push(t);
    return t;
  };

  /** Funds an account for exactly IN_FLIGHT worst-case requests; returns its key. */
  async function fundedKey(t: TestPlane): Promise<string> {
    const ledger = t.plane.stores.ledger;
    const probe = await t.account("pro");
    await ledger.topUp({ accountId: probe.accountId, amount: nanos(1_000_000_000n), feeBps: 0, now: Date.now() });
    const probed = outcome(await t.authz.check(check(probe.secret)));
    if (probed.error) console.log(t.logs.join(""));
    expect(probed.error).toBeUndefined();
    expect(probed.allowed).toBe(true);
    const worst = BigInt(probed.metadata.reserved_nanos as string);
    const { accountId, secret } = await t.account("pro");
    await ledger.topUp({ accountId, amount: nanos(BigInt(IN_FLIGHT) * worst), feeBps: 0, now: Date.now() });
    return secret;
  }

  /** Admits IN_FLIGHT requests (their reservations taken AFTER the snapshot), then snapshot-restarts Redis. */
  async function admitThenRestoreSnapshot(
    t: TestPlane,
    secret: string,
    snapshotAfterAdmitting: boolean,
  ): Promise<void> {
    // The dataset already has its epoch (the probe loaded a balance): a periodic save taken before the admissions.
    const admin = new Redis(port);
    if (!snapshotAfterAdmitting) await admin.save();
    for (let i = 0; i < IN_FLIGHT; i++) expect(outcome(await t.authz.check(check(secret))).allowed).toBe(true);
    expect(outcome(await t.authz.check(check(secret))).httpStatus).toBe(402);
    if (snapshotAfterAdmitting) await admin.save();
    admin.disconnect();
    await crash(server!);
    server = await startSnapshotRedis(port, dir);
    await waitConnected(t);
  }

  it("after kill -9 and a restart from an older RDB snapshot, every replica answers 503 until the reservations expired, then decides on the balance", async () => {
    const a = await start();
    const fresh = await fundedKey(a);
    await admitThenRestoreSnapshot(a, fresh, false);
    const b = await start();

    const after = [];
    for (let i = 0; i < IN_FLIGHT; i++) after.push(outcome(await (i % 2 === 0 ? a : b).authz.check(check(fresh))));
    expect(after.filter((r) => r.allowed)).toHaveLength(0);
    for (const r of after) {
      expect(r.httpStatus).toBe(503);
      expect(r.error?.code).toBe("unavailable");
    }
    expect((await a.plane.metrics.render()).body).toMatch(
      /tollgate_credit_reservations_refused_total\{reason="fenced"\} [1-9]/,
    );

    // One reservation TTL later every reservation the snapshot lost has expired: the balance decides again.
    clock.now += TTL_MS + 1000;
    const resumed = outcome(await b.authz.check(check(fresh)));
    expect(resumed.httpStatus).not.toBe(503);
  });

  it("with redis.durable, a restart that kept every write does not fence; an empty restart still does", async () => {
    const a = await start({ TOLLGATE_REDIS_DURABLE: "true" });
    const secret = await fundedKey(a);
    await admitThenRestoreSnapshot(a, secret, true);
    // Nothing was lost: the IN_FLIGHT reservations are still held, so the account is refused for credit (402), not 503.
    expect(outcome(await a.authz.check(check(secret))).httpStatus).toBe(402);

    rmSync(join(dir, "dump.rdb"));
    await crash(server!);
    server = await startSnapshotRedis(port, dir);
    await waitConnected(a);
    const empty = outcome(await a.authz.check(check(secret)));
    expect(empty.httpStatus).toBe(503);
    expect(empty.error?.code).toBe("unavailable");
  });
});
