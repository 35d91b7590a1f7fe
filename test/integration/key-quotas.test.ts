// Daily quotas (requests and tokens per UTC day) and requests in flight per key: one suite for every limiter, driven
// by the caller's clock, so days roll over without waiting.
import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import type { RedisConnection } from "../../src/adapters/redis/client.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import { createRedisRateLimiter } from "../../src/adapters/redis/rate-limiter.js";
import type { RateLimiter, RateRequest } from "../../src/domain/admission.js";
import type { WindowPeek } from "../../src/domain/key-status.js";
import { nanos } from "../../src/domain/money.js";
import { describeCluster, suiteRedisCluster } from "../support/redis-cluster.js";
import { describeWith, suiteRedis } from "../support/services.js";

const HOUR = 3_600_000;
/** 23:00 UTC: an hour before the day rolls over. */
const LATE = Date.UTC(2026, 0, 10, 23, 0, 0);
const MIDNIGHT = Date.UTC(2026, 0, 11);
const TTL = 30_000;
const ACCOUNT = "acct_quotas";

function conformance(make: () => RateLimiter & WindowPeek) {
  let limiter: RateLimiter & WindowPeek;
  beforeAll(() => {
    limiter = make();
  });
  const key = () => `key_${randomUUID().slice(0, 12)}`;
  const admit = (keyId: string, now: number, over: Partial<RateRequest> = {}, decisionId = randomUUID()) =>
    Promise.resolve(
      limiter.admit({
        keyId,
        accountId: ACCOUNT,
        decisionId,
        requestsPerMinute: 1000,
        tokensPerMinute: 1_000_000,
        tokens: 10,
        now,
        ...over,
      }),
    );
  const settle = (keyId: string, decisionId: string, actualTokens: number, now: number) =>
    Promise.resolve(limiter.settle({ accountId: ACCOUNT, keyId, decisionId, actualTokens, now }));

  it("requests per day: exactly the quota in a UTC day, then 429 until midnight, with the -day headers' figures", async () => {
    const k = key();
    const rpd = { requestsPerDay: 3 };
    const first = await admit(k, LATE - 10 * HOUR, rpd);
    expect(first.state?.requestsDay).toEqual({ limit: 3, remaining: 2, resetSeconds: 11 * 3600 });
    expect(first.state?.tokensDay).toBeUndefined();
    expect((await admit(k, LATE - 5 * HOUR, rpd)).admitted).toBe(true);
    expect((await admit(k, LATE, rpd)).admitted).toBe(true);
    const refused = await admit(k, LATE + 1000, rpd);
    expect(refused).toMatchObject({
      admitted: false,
      dimension: "requests_day",
      retryAfterSeconds: 3599,
      state: { requestsDay: { limit: 3, remaining: 0, resetSeconds: 3599 } },
    });
    expect((await admit(k, MIDNIGHT - 1, rpd)).admitted).toBe(false);
    const tomorrow = await admit(k, MIDNIGHT, rpd);
    expect(tomorrow.admitted).toBe(true);
    expect(tomorrow.state?.requestsDay).toEqual({ limit: 3, remaining: 2, resetSeconds: 86_400 });
    // The refusal a millisecond before midnight took no place in the minute's window.
    expect(tomorrow.state?.requests.remaining).toBe(1000 - 1);
  });

  it("tokens per day count what was used: in-flight requests ask for a short wait, settled ones until midnight", async () => {
    const k = key();
    const tpd = { tokensPerDay: 1000 };
    const [a, b] = [randomUUID(), randomUUID()];
    expect((await admit(k, LATE, { ...tpd, tokens: 600 }, a)).admitted).toBe(true);
    await settle(k, a, 100, LATE + 1);
    const second = await admit(k, LATE + 2, { ...tpd, tokens: 800 }, b);
    expect(second.admitted).toBe(true);
    expect(second.state?.tokensDay).toEqual({ limit: 1000, remaining: 100, resetSeconds: 3600 });
    expect(await admit(k, LATE + 3, { ...tpd, tokens: 200 })).toMatchObject({
      admitted: false,
      dimension: "tokens_day",
      retryAfterSeconds: 1,
      inFlightTokens: 800,
    });
    await settle(k, b, 850, LATE + 4);
    const spent = await admit(k, LATE + 5, { ...tpd, tokens: 200 });
    expect(spent).toMatchObject({ admitted: false, dimension: "tokens_day", retryAfterSeconds: 3600 });
    expect(spent).not.toHaveProperty("inFlightTokens");
    expect((await admit(k, LATE + 6, { ...tpd, tokens: 50 })).admitted).toBe(true);
    expect((await admit(k, MIDNIGHT, { ...tpd, tokens: 1000 })).admitted).toBe(true);
  });

  it("a request admitted before midnight and settled after it does not touch the new day", async () => {
    const k = key();
    const quotas = { requestsPerDay: 10, tokensPerDay: 1000 };
    const late = randomUUID();
    await admit(k, MIDNIGHT - 1000, { ...quotas, tokens: 900 }, late);
    await settle(k, late, 5, MIDNIGHT + 1000);
    const today = await admit(k, MIDNIGHT + 2000, { ...quotas, tokens: 1000 });
    expect(today.admitted).toBe(true);
    expect(today.state?.tokensDay?.remaining).toBe(0);
    expect(today.state?.requestsDay?.remaining).toBe(9);
  });

  it("release gives the day back its request and tokens", async () => {
    const k = key();
    const quotas = { requestsPerDay: 1, tokensPerDay: 100 };
    const id = randomUUID();
    expect((await admit(k, LATE, { ...quotas, tokens: 100 }, id)).admitted).toBe(true);
    await limiter.release({ accountId: ACCOUNT, keyId: k, decisionId: id, tokens: 100, now: LATE + 1 });
    expect((await admit(k, LATE + 2, { ...quotas, tokens: 100 })).admitted).toBe(true);
  });

  it("concurrency: at most max_concurrency in flight; the meter's settle frees a place, and a lost one frees after the TTL", async () => {
    const k = key();
    const conc = { maxConcurrency: 2 };
    const [a, b] = [randomUUID(), randomUUID()];
    expect((await admit(k, LATE, conc, a)).admitted).toBe(true);
    expect((await admit(k, LATE + 1, conc, b)).admitted).toBe(true);
    expect(await admit(k, LATE + 2, conc)).toMatchObject({
      admitted: false,
      dimension: "concurrency",
      retryAfterSeconds: 1,
    });
    await settle(k, a, 10, LATE + 3);
    const c = randomUUID();
    expect((await admit(k, LATE + 4, conc, c)).admitted).toBe(true);
    expect((await admit(k, LATE + 5, conc)).admitted).toBe(false);
    // b's access-log entry was lost: its place is free once the TTL from its admission has passed.
    expect((await admit(k, LATE + 1 + TTL - 1, conc)).admitted).toBe(false);
    expect((await admit(k, LATE + 1 + TTL, conc)).admitted).toBe(true);
    // A refused request (a later step refused it) is released and frees its place at once.
    const k2 = key();
    const d = randomUUID();
    await admit(k2, LATE, { maxConcurrency: 1 }, d);
    await limiter.release({ accountId: ACCOUNT, keyId: k2, decisionId: d, tokens: 10, now: LATE + 1 });
    expect((await admit(k2, LATE + 2, { maxConcurrency: 1 })).admitted).toBe(true);
  });

  it("peek reads the window, today and the requests in flight as the last decision left them, and changes nothing", async () => {
    const k = key();
    const limits = {
      requestsPerMinute: 50,
      tokensPerMinute: 5000,
      requestsPerDay: 9,
      tokensPerDay: 9000,
      maxConcurrency: 3,
    };
    const [a, b] = [randomUUID(), randomUUID()];
    await admit(k, LATE, { ...limits, tokens: 700 }, a);
    const last = await admit(k, LATE + 1000, { ...limits, tokens: 300 }, b);
    await settle(k, a, 40, LATE + 1500);
    const peek = () => Promise.resolve(limiter.peek({ keyId: k, accountId: ACCOUNT, now: LATE + 2000, ...limits }));
    const seen = await peek();
    expect(seen.inFlight).toBe(1);
    expect(seen.state).toEqual({
      requests: { limit: 50, remaining: 48, resetSeconds: 59 },
      tokens: { limit: 5000, remaining: 5000 - 340, resetSeconds: 59 },
      requestsDay: { limit: 9, remaining: 7, resetSeconds: 3598 },
      tokensDay: { limit: 9000, remaining: 9000 - 340, resetSeconds: 3598 },
    });
    expect(last.state?.requests.remaining).toBe(48);
    expect(await peek()).toEqual(seen);
    // Without daily quotas or a concurrency limit there is nothing of them to show.
    const plain = await limiter.peek({
      keyId: k,
      accountId: ACCOUNT,
      now: LATE + 2000,
      ...limits,
      requestsPerDay: 0,
      tokensPerDay: 0,
      maxConcurrency: 0,
    });
    expect(plain.state.requestsDay).toBeUndefined();
    expect(plain.inFlight).toBe(0);
  });

  it("the minute's window refuses first: a refused request counts against neither the day nor the requests in flight", async () => {
    const k = key();
    const over = { requestsPerMinute: 1, requestsPerDay: 5, maxConcurrency: 5 };
    expect((await admit(k, LATE, over)).admitted).toBe(true);
    for (let i = 0; i < 5; i++) expect(await admit(k, LATE + 1 + i, over)).toMatchObject({ dimension: "requests" });
    const next = await admit(k, LATE + 60_000, over);
    expect(next.admitted).toBe(true);
    expect(next.state?.requestsDay?.remaining).toBe(3);
  });
}

describe("key quotas [memory]", () => {
  conformance(() => createMemoryRateLimiter({ inFlightTtlMs: TTL }));
});

describeWith("redis", "key quotas [redis]", (url) => {
  const prefix = `test_kq_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  describe("its own script", () => conformance(() => createRedisRateLimiter({ redis, prefix, inFlightTtlMs: TTL })));
  describe("inside the admission script, with credit to spare", () => conformance(() => overQuota(redis, prefix)));
});

describeCluster("key quotas [redis cluster]", (cluster) => {
  const prefix = `test_kq_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedisCluster(cluster, `${prefix}:`);
  describe("its own script", () =>
    conformance(() => createRedisRateLimiter({ redis: redis(), prefix, inFlightTtlMs: TTL })));
  describe("inside the admission script, with credit to spare", () => conformance(() => overQuota(redis(), prefix)));
});

/**
 * The admission script (rate limits, quotas and credit in one run) seen as a limiter: holds reserve no credit against
 * a balance that never runs out, and a place in flight lasts the credit reservation's TTL; settle and release go to
 * the limiter, which shares the script's keys.
 */
function overQuota(redis: RedisConnection, prefix: string): RateLimiter & WindowPeek {
  const limiter = createRedisRateLimiter({ redis, prefix, inFlightTtlMs: TTL });
  const source = {
    balances: async (ids: readonly string[]) =>
      new Map(ids.map((id) => [id, { balance: nanos(2n ** 52n), version: 1 }])),
  };
  const credits = createRedisCreditGate({ redis, source, reservationTtlMs: TTL, prefix: `${prefix}:` });
  const quota = createRedisQuota({ redis, prefix, credits });
  return {
    async admit(request) {
      const outcome = await quota.hold({ ...request, amount: nanos(0n) });
      if ("rate" in outcome) return outcome.rate;
      if (!outcome.held) throw new Error("a hold of no credit was refused for credit");
      return { admitted: true, state: outcome.rateLimit };
    },
    settle: (request) => limiter.settle(request),
    release: (request) => limiter.release(request),
    peek: (request) => limiter.peek(request),
  };
}
