import type { ChildProcess } from "node:child_process";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { nanos } from "../../src/domain/money.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { outcome } from "../support/authz-client.js";
import { spendCheck as check, worstCaseEvents } from "../support/credit-stack.js";
import { freePort } from "../support/ports.js";
import { startRedisServer, stopRedisServer } from "../support/rate-limits.js";
import { sqliteTarget, type StoreTarget } from "../support/services.js";

const TTL_MS = 60_000;
const IN_FLIGHT = 5;

async function waitReady(t: TestPlane): Promise<void> {
  for (let i = 0; i < 100 && t.plane.rateLimiting.redis!.status !== "ready"; i++)
    await new Promise((resolve) => setTimeout(resolve, 50));
  expect(t.plane.rateLimiting.redis!.status).toBe("ready");
}

describe("Redis losing its data never grants reserved credit twice", () => {
  let port: number;
  let server: ChildProcess;
  let target: StoreTarget;
  const planes: TestPlane[] = [];
  const clock = { now: Date.now() };

  beforeEach(async () => {
    port = await freePort();
    server = await startRedisServer(port);
    target = sqliteTarget();
  });
  afterEach(async () => {
    // Every plane shares the target; only the last close removes it.
    for (const p of planes.splice(0).reverse()) await p.close();
    await stopRedisServer(server);
  });

  const start = async () => {
    const shared: StoreTarget = {
      ...target,
      cleanup: async () => (planes.length === 0 ? target.cleanup() : undefined),
    };
    const t = await startTestPlane(shared, {
      clock: () => clock.now,
      accountCredits: 0n,
      env: { TOLLGATE_REDIS_URL: `redis://127.0.0.1:${port}`, TOLLGATE_METER_RESERVATION_TTL_MS: String(TTL_MS) },
    });
    planes.push(t);
    return t;
  };

  it("after a restart without persistence, credit held by requests in flight is refused until they expired, on every replica", async () => {
    const a = await start();
    const ledger = a.plane.stores.ledger;
    const probe = await a.account("pro");
    await ledger.topUp({ accountId: probe.accountId, amount: nanos(1_000_000_000n), feeBps: 0, now: Date.now() });
    const probed = outcome(await a.authz.check(check(probe.secret)));
    expect(probed.allowed).toBe(true);
    const worst = BigInt(probed.metadata.reserved_nanos as string);

    // Credit for exactly IN_FLIGHT worst-case requests, all of them admitted and still running.
    const { accountId, secret } = await a.account("pro");
    await ledger.topUp({ accountId, amount: nanos(BigInt(IN_FLIGHT) * worst), feeBps: 0, now: Date.now() });
    const admitted = [];
    for (let i = 0; i < IN_FLIGHT; i++) admitted.push(outcome(await a.authz.check(check(secret))));
    expect(admitted.every((r) => r.allowed)).toBe(true);
    expect(outcome(await a.authz.check(check(secret))).httpStatus).toBe(402);

    // Redis restarts empty; a replica that started afterwards (it knows the epoch only from SQL) joins.
    await stopRedisServer(server);
    server = await startRedisServer(port);
    await waitReady(a);
    const b = await start();
    clock.now += 1_000;

    const after = [];
    for (let i = 0; i < IN_FLIGHT; i++) after.push(outcome(await (i % 2 === 0 ? a : b).authz.check(check(secret))));
    expect(after.filter((r) => r.allowed)).toHaveLength(0);
    for (const r of after) {
      expect(r.httpStatus).toBe(503);
      expect(r.error?.code).toBe("unavailable");
      expect(r.error?.message).toMatch(/recovered after a loss of Redis data/);
    }
    expect((await a.plane.metrics.render()).body).toMatch(
      /tollgate_credit_reservations_refused_total\{reason="fenced"\} [1-9]/,
    );

    // The requests in flight finish and the meter settles them: the balance lands where a run without the loss does.
    const result = await ledger.commit({
      events: worstCaseEvents(admitted, accountId, worst),
      expired: [],
      deadLetters: [],
      now: Date.now(),
    });
    await a.plane.metering.credits.committed(result.changes);
    expect((await ledger.balance(accountId)).balance).toBe(0n);

    // Once every reservation taken before the loss has expired, admission decides on the balance again (402, not 503).
    clock.now += TTL_MS;
    const resumed = [outcome(await a.authz.check(check(secret))), outcome(await b.authz.check(check(secret)))];
    expect(resumed.map((r) => r.httpStatus)).toEqual([402, 402]);
    expect((await ledger.balance(accountId)).balance).toBe(0n);
  });
});
