import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createMemoryCreditGate } from "../../src/adapters/memory/credit-gate.js";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import { holdInTurn, type HoldRequest, type Quota } from "../../src/domain/admission.js";
import type { CreditReservations } from "../../src/domain/credits.js";
import { MAX_BALANCE_NANOS, nanos, type Nanos } from "../../src/domain/money.js";
import { describeWith, suiteRedis } from "../support/services.js";

const MAX = MAX_BALANCE_NANOS as bigint;
/** 2^53 + 1: the first integer a double cannot hold. */
const BEYOND_DOUBLES = 9_007_199_254_740_993n;

/** A SQL stand-in whose balances each test sets. */
function balances() {
  const rows = new Map<string, { balance: Nanos; version: number }>();
  return {
    set: (accountId: string, balance: bigint) => rows.set(accountId, { balance: nanos(balance), version: 1 }),
    source: {
      balances: async (ids: readonly string[]) =>
        new Map(ids.flatMap((id) => (rows.has(id) ? [[id, rows.get(id)!] as const] : []))),
    },
  };
}

interface Gate {
  quota: Quota;
  credits: CreditReservations;
}

/**
 * Every gate decides money exactly for any balance an account can hold (up to MAX_BALANCE_NANOS, and negative), and
 * a balance beyond it (legacy SQL data) is decided as MAX_BALANCE_NANOS: never an error (a 503), never more credit.
 */
function exactness(make: (source: ReturnType<typeof balances>["source"]) => Gate) {
  const sql = balances();
  const gate = make(sql.source);
  const account = () => `acct_${randomUUID().slice(0, 8)}`;
  const hold = (accountId: string, amount: bigint, over: Partial<HoldRequest> = {}) =>
    Promise.resolve(
      gate.quota.hold({
        keyId: `key_${accountId}`,
        accountId,
        decisionId: randomUUID(),
        requestsPerMinute: 1_000,
        tokensPerMinute: 1e9,
        tokens: 1,
        amount: nanos(amount),
        now: Date.now(),
        ...over,
      }),
    );

  it("a balance of MAX_BALANCE_NANOS is decided to the nano: reserve all but one nano, then exactly one is left", async () => {
    const id = account();
    sql.set(id, MAX);
    expect((await hold(id, MAX - 1n)).held).toBe(true);
    expect(await hold(id, 2n)).toEqual({ held: false, available: nanos(1n) });
    expect((await hold(id, 1n)).held).toBe(true);
    expect(await hold(id, 1n)).toEqual({ held: false, available: nanos(0n) });
  });

  it("odd amounts near the maximum add up exactly (no double rounding in the held sum)", async () => {
    const id = account();
    sql.set(id, MAX);
    const parts = [MAX / 3n + 1n, MAX / 3n - 7n, 123_456_789n];
    for (const p of parts) expect((await hold(id, p)).held).toBe(true);
    const left = MAX - parts.reduce((a, b) => a + b, 0n);
    expect(await hold(id, left + 1n)).toEqual({ held: false, available: nanos(left) });
    expect((await hold(id, left)).held).toBe(true);
  });

  it("a balance loaded from SQL beyond the maximum (legacy data) decides as the maximum instead of failing", async () => {
    const id = account();
    sql.set(id, BEYOND_DOUBLES * 1000n);
    expect(await hold(id, MAX + 1n)).toEqual({ held: false, available: nanos(MAX) });
    expect((await hold(id, MAX)).held).toBe(true);
    expect(await hold(id, 1n)).toEqual({ held: false, available: nanos(0n) });
  });

  it("a committed balance beyond the maximum is applied as the maximum, and decisions go on", async () => {
    const id = account();
    sql.set(id, 10n);
    expect((await hold(id, 10n)).held).toBe(true);
    await gate.credits.committed([
      { accountId: id, delta: BEYOND_DOUBLES, balance: nanos(BEYOND_DOUBLES), version: 2, settled: [] },
    ]);
    // 10 are still held against the (clamped) new balance.
    expect(await hold(id, MAX)).toEqual({ held: false, available: nanos(MAX - 10n) });
    expect((await hold(id, MAX - 10n)).held).toBe(true);
  });

  it("negative balances are exact and refuse everything, however large", async () => {
    const small = account();
    sql.set(small, -1n);
    expect(await hold(small, 1n)).toEqual({ held: false, available: nanos(0n) });
    const large = account();
    sql.set(large, -BEYOND_DOUBLES * 1000n);
    expect(await hold(large, 1n)).toEqual({ held: false, available: nanos(0n) });
    // Back above zero by exactly one nano: exactly one nano can be reserved.
    await gate.credits.committed([{ accountId: small, delta: 2n, balance: nanos(1n), version: 2, settled: [] }]);
    expect((await hold(small, 1n)).held).toBe(true);
    expect(await hold(small, 1n)).toEqual({ held: false, available: nanos(0n) });
  });

  it("an amount beyond what any balance can hold is refused for credit, not failed", async () => {
    const id = account();
    sql.set(id, MAX);
    expect(await hold(id, BEYOND_DOUBLES)).toEqual({ held: false, available: nanos(MAX) });
  });
}

describe("credit amounts are exact [in process]", () => {
  exactness((source) => {
    const credits = createMemoryCreditGate({ source, reservationTtlMs: 600_000 });
    return { quota: holdInTurn(createMemoryRateLimiter(), credits), credits };
  });
});

describeWith("redis", "credit amounts are exact [redis]", (url) => {
  const prefix = `test_exact_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  describe("the combined admission script", () => {
    exactness((source) => {
      const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
      return { quota: createRedisQuota({ redis, prefix, credits }), credits };
    });
  });
  describe("the gate's own reserve script", () => {
    exactness((source) => {
      const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
      return { quota: holdInTurn(createMemoryRateLimiter(), credits), credits };
    });
  });
});
