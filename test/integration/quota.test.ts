import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { createMemoryCreditGate } from "../../src/adapters/memory/credit-gate.js";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import { createRedisRateLimiter } from "../../src/adapters/redis/rate-limiter.js";
import { holdInTurn, type HoldRequest, type Quota, type RateLimiter } from "../../src/domain/admission.js";
import type { CreditReservations } from "../../src/domain/credits.js";
import { nanos } from "../../src/domain/money.js";
import { describeWith, suiteRedis } from "../support/services.js";

const T0 = 1_750_000_000_000;

/** Every account starts with this balance (nano-USD) in the SQL stand-in. */
const BALANCE = 1_000n;

interface Backend {
  quota: Quota;
  limiter: RateLimiter;
  credits: CreditReservations;
}

/**
 * One suite for both ways admission holds a request: the in-process ports in turn, and the one Redis script. Both
 * must hold a request's window place and credit reservation together or not at all, the limiter deciding first.
 */
function conformance(make: () => Backend) {
  let b: Backend;
  beforeAll(() => {
    b = make();
  });
  const ids = () => ({ keyId: `key_${randomUUID().slice(0, 8)}`, accountId: `acct_${randomUUID().slice(0, 8)}` });
  const request = (who: { keyId: string; accountId: string }, over: Partial<HoldRequest> = {}): HoldRequest => ({
    ...who, decisionId: randomUUID(), requestsPerMinute: 3, tokensPerMinute: 1000, tokens: 100, amount: nanos(100n), now: T0, ...over,
  });
  const hold = (r: HoldRequest) => Promise.resolve(b.quota.hold(r));

  it("holds a place in the window and the credit, loading the balance on first use, and reports the window", async () => {
    const who = ids();
    const outcome = await hold(request(who));
    expect(outcome).toEqual({
      held: true,
      rateLimit: { requests: { limit: 3, remaining: 2, resetSeconds: 60 }, tokens: { limit: 1000, remaining: 900, resetSeconds: 60 } },
    });
    expect(await hold(request(who, { amount: nanos(BALANCE - 100n + 1n) }))).toEqual({ held: false, available: nanos(BALANCE - 100n) });
  });

  it("a credit refusal leaves the window untouched", async () => {
    const who = ids();
    for (let i = 0; i < 5; i++) expect(await hold(request(who, { amount: nanos(BALANCE + 1n) }))).toMatchObject({ held: false, available: nanos(BALANCE) });
    // Three per minute still fit: none of the refused requests took a place.
    for (let i = 0; i < 3; i++) expect((await hold(request(who))).held).toBe(true);
    expect(await hold(request(who))).toMatchObject({ held: false, rate: { admitted: false, dimension: "requests", retryAfterSeconds: 60 } });
  });

  it("a rate refusal reserves no credit, and outranks a credit refusal", async () => {
    const who = ids();
    for (let i = 0; i < 3; i++) expect((await hold(request(who, { amount: nanos(300n) }))).held).toBe(true);
    // Both would refuse now (4th request, 100 left): the limiter's answer wins, as with separate ports.
    expect(await hold(request(who, { amount: nanos(200n) }))).toMatchObject({ held: false, rate: { dimension: "requests" } });
    // The refused request took no credit: 100 are still available a minute later.
    expect(await hold(request(who, { amount: nanos(100n), now: T0 + 60_000 }))).toMatchObject({ held: true });
    expect(await hold(request(who, { amount: nanos(1n), now: T0 + 60_000 }))).toEqual({ held: false, available: nanos(0n) });
  });

  it("tokens per minute refuse with the wait until enough tokens age out", async () => {
    const who = ids();
    expect((await hold(request(who, { tokens: 600 }))).held).toBe(true);
    expect(await hold(request(who, { tokens: 500, now: T0 + 10_000 }))).toMatchObject({ held: false, rate: { dimension: "tokens", retryAfterSeconds: 50 } });
  });

  it("concurrent holds never overdraw: exactly as many as the balance covers", async () => {
    const who = ids();
    const outcomes = await Promise.all(Array.from({ length: 50 }, () => hold(request(who, { requestsPerMinute: 1000, tokensPerMinute: 1e9, amount: nanos(BALANCE / 10n) }))));
    expect(outcomes.filter((o) => o.held)).toHaveLength(10);
    // The 40 refused for credit hold no place in the window: 990 more requests still fit.
    const next = await hold(request(who, { requestsPerMinute: 1000, tokensPerMinute: 1e9, amount: nanos(0n) }));
    expect(next).toMatchObject({ held: true, rateLimit: { requests: { remaining: 989 } } });
  });

  it("settle and commit act on what the hold wrote: the meter's refund and release reach the same keys", async () => {
    const who = ids();
    const held = request(who, { tokens: 900 });
    expect((await hold(held)).held).toBe(true);
    await b.limiter.settle({ ...who, decisionId: held.decisionId, actualTokens: 50, now: T0 + 1 });
    await b.credits.committed([{ accountId: who.accountId, delta: -40n, balance: nanos(BALANCE - 40n), version: 2, settled: [held.decisionId] }]);
    expect(await hold(request(who, { tokens: 950, amount: nanos(BALANCE - 40n), now: T0 + 2 }))).toMatchObject({
      held: true, rateLimit: { tokens: { remaining: 0 } },
    });
  });
}

const source = { balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(BALANCE), version: 1 }])) };

describe("admission quota [in process, ports in turn]", () => {
  conformance(() => {
    const limiter = createMemoryRateLimiter();
    const credits = createMemoryCreditGate({ source, reservationTtlMs: 600_000 });
    return { quota: holdInTurn(limiter, credits), limiter, credits };
  });
});

describeWith("redis", "admission quota [redis, one script]", (url) => {
  const prefix = `test_quota_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  conformance(() => {
    const limiter = createRedisRateLimiter({ redis, prefix });
    const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    return { quota: createRedisQuota({ redis, prefix, credits }), limiter, credits };
  });

  it("Checks of one key that arrive together share one script run, each answered as if decided alone", async () => {
    const gate = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    let runs = 0; // every script run goes through the gate's reserveWith, once
    const credits: typeof gate = { ...gate, reserveWith: (...args) => (runs++, gate.reserveWith(...args)) };
    const quota = createRedisQuota({ redis, prefix, credits });
    const who = { keyId: "key_batch", accountId: `acct_batch_${randomUUID().slice(0, 8)}` };
    const requests = Array.from({ length: 40 }, (_, i) => ({
      ...who, decisionId: randomUUID(), requestsPerMinute: 30, tokensPerMinute: 1e9, tokens: 1, amount: nanos(i % 2 === 0 ? 10n : BALANCE), now: T0,
    }));
    const outcomes = await Promise.all(requests.map((r) => quota.hold(r)));
    // Decided in order: each odd one wants the whole balance, which the even ones before it already dented, so it is
    // refused for credit and takes no place in the window (remaining counts 29, 28, … over the even ones only).
    expect(outcomes.filter((o) => o.held)).toHaveLength(20);
    expect(outcomes.filter((o) => "available" in o)).toHaveLength(20);
    expect(outcomes.filter((o) => "rate" in o)).toHaveLength(0);
    expect(outcomes[0]).toMatchObject({ held: true, rateLimit: { requests: { remaining: 29 } } });
    expect(outcomes[38]).toMatchObject({ held: true, rateLimit: { requests: { remaining: 10 } } });
    expect(runs).toBe(2); // 40 decisions, at most 32 per run
    // 20 places taken of 30: ten more fit, the eleventh meets the requests limit.
    const more = await Promise.all(Array.from({ length: 11 }, () => quota.hold({ ...requests[0]!, decisionId: randomUUID(), now: T0 + 1 })));
    expect(more.filter((o) => o.held)).toHaveLength(10);
    expect(more[10]).toMatchObject({ held: false, rate: { dimension: "requests" } });
  });

  it("writes only keys under the account's hash tag, so the script runs in one Cluster slot", async () => {
    const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    const quota = createRedisQuota({ redis, prefix, credits });
    await quota.hold({ keyId: "key_tag", accountId: "acct_tag", decisionId: randomUUID(), requestsPerMinute: 3, tokensPerMinute: 1000, tokens: 1, amount: nanos(1n), now: Date.now() });
    const keys = (await redis.keys(`${prefix}:*acct_tag*`)).sort();
    expect(keys).toEqual(["bal", "exp", "held", "resv", "rl:key_tag:req", "rl:key_tag:tok"].map((k) => `${prefix}:{acct_tag}:${k}`));
  });
});
