import { randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import type { RedisConnection } from "../../src/adapters/redis/client.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import { createRedisRateLimiter } from "../../src/adapters/redis/rate-limiter.js";
import { withFailurePolicy } from "../../src/app/rate-limits.js";
import type { Quota, RateDecision, RateLimiter } from "../../src/domain/admission.js";
import { nanos } from "../../src/domain/money.js";
import { windowState } from "../../src/domain/rate-limit.js";
import { createLogger } from "../../src/logging.js";
import { describeCluster, suiteRedisCluster } from "../support/redis-cluster.js";
import { describeWith, suiteRedis } from "../support/services.js";

const MIN = 60_000;
const T0 = 1_750_000_000_000;
/** Limiter keys live under their account's hash tag; the conformance suite's keys all belong to one account. */
const ACCOUNT = "acct_conformance";

/** One conformance suite for every limiter: the in-process one always, the Redis one when Redis is configured. */
function conformance(make: () => RateLimiter) {
  let limiter: RateLimiter;
  let n = 0;
  beforeAll(() => {
    limiter = make();
  });
  const key = (label = "k") => `key_${label}${++n}_${randomUUID().slice(0, 8)}`;
  const admit = (
    keyId: string,
    now: number,
    limits: { rpm: number; tpm: number },
    tokens = 1,
    decisionId: string = randomUUID(),
  ) =>
    Promise.resolve(
      limiter.admit({
        keyId,
        accountId: ACCOUNT,
        decisionId,
        requestsPerMinute: limits.rpm,
        tokensPerMinute: limits.tpm,
        tokens,
        now,
      }),
    );

  it("admits exactly requests_per_minute requests in a window, then refuses with Retry-After until the oldest ages out", async () => {
    const k = key();
    const limits = { rpm: 5, tpm: 1_000_000 };
    for (let i = 0; i < 5; i++) expect((await admit(k, T0 + i * 1000, limits)).admitted).toBe(true);
    const refused = await admit(k, T0 + 10_500, limits);
    expect(refused).toMatchObject({ admitted: false, dimension: "requests", retryAfterSeconds: 50 }); // T0 + 60 s − 10.5 s → 49.5 → 50
    expect((await admit(k, T0 + MIN - 1, limits)).admitted).toBe(false);
    expect((await admit(k, T0 + MIN, limits)).admitted).toBe(true); // window (T0, T0+60 s]: the first has aged out
    expect((await admit(k, T0 + MIN, limits)).admitted).toBe(false);
  });

  const settle = (keyId: string, decisionId: string, actualTokens: number, now: number) =>
    Promise.resolve(limiter.settle({ accountId: ACCOUNT, keyId, decisionId, actualTokens, now }));

  it("admits exactly tokens_per_minute tokens in a window", async () => {
    const k = key();
    const limits = { rpm: 100, tpm: 1000 };
    const [first, second] = [randomUUID(), randomUUID()];
    expect((await admit(k, T0, limits, 400, first)).admitted).toBe(true);
    expect((await admit(k, T0 + 1000, limits, 400, second)).admitted).toBe(true);
    // Settled (the meter saw both end, each used 400): the wait is until enough of them age out.
    await settle(k, first, 400, T0 + 1500);
    await settle(k, second, 400, T0 + 1500);
    expect(await admit(k, T0 + 2000, limits, 201)).toMatchObject({
      admitted: false,
      dimension: "tokens",
      retryAfterSeconds: 58,
    });
    expect(await admit(k, T0 + 2000, limits, 600)).toMatchObject({ admitted: false, retryAfterSeconds: 58 }); // first 400 frees enough
    expect(await admit(k, T0 + 2000, limits, 601)).toMatchObject({ admitted: false, retryAfterSeconds: 59 }); // needs the second too
    expect((await admit(k, T0 + 2000, limits, 200)).admitted).toBe(true);
    expect((await admit(k, T0 + 2000, limits, 1)).admitted).toBe(false);
    // The first 400 age out at T0 + 60 s; 400 fits then, 401 needs the second one gone too.
    expect((await admit(k, T0 + MIN, limits, 401)).admitted).toBe(false);
    expect((await admit(k, T0 + MIN, limits, 400)).admitted).toBe(true);
  });

  it("tokens held by requests in flight: a short wait that says how many they hold, not the time until they age out", async () => {
    const k = key();
    const limits = { rpm: 100, tpm: 1000 };
    const [settled, flying] = [randomUUID(), randomUUID()];
    expect((await admit(k, T0, limits, 400, settled)).admitted).toBe(true);
    await settle(k, settled, 400, T0 + 500);
    expect((await admit(k, T0 + 1000, limits, 400, flying)).admitted).toBe(true);
    // 400 settled + 600 fits once the request in flight is settled: wait a second, and say who is in the way.
    expect(await admit(k, T0 + 2000, limits, 600)).toMatchObject({
      admitted: false,
      dimension: "tokens",
      retryAfterSeconds: 1,
      inFlightTokens: 400,
    });
    // 700 needs 100 of the settled 400 to age out as well: that is the wait (T0 + 60 s), in flight or not.
    const settledInTheWay = await admit(k, T0 + 2000, limits, 700);
    expect(settledInTheWay).toMatchObject({ admitted: false, dimension: "tokens", retryAfterSeconds: 58 });
    expect(settledInTheWay).not.toHaveProperty("inFlightTokens");
    // The meter settles the request in flight at 50 tokens: the 600 fits now.
    await settle(k, flying, 50, T0 + 2500);
    const admitted = await admit(k, T0 + 3000, limits, 550);
    expect(admitted.admitted).toBe(true);
    expect(admitted.state!.tokens.remaining).toBe(0);
    // Released and aged-out requests in flight stop counting as in flight.
    const k2 = key();
    const held = randomUUID();
    await admit(k2, T0, limits, 900, held);
    await limiter.release({ accountId: ACCOUNT, keyId: k2, decisionId: held, tokens: 900, now: T0 + 1 });
    const lost = randomUUID();
    await admit(k2, T0 + 10, limits, 900, lost); // its access-log entry is lost: never settled
    expect(await admit(k2, T0 + 20, limits, 200)).toMatchObject({ retryAfterSeconds: 1, inFlightTokens: 900 });
    expect((await admit(k2, T0 + 10 + MIN, limits, 1000)).admitted).toBe(true);
    expect(await admit(k2, T0 + 20 + MIN, limits, 1)).toMatchObject({ retryAfterSeconds: 1, inFlightTokens: 1000 });
  });

  it("a client that waits the Retry-After it was given is admitted", async () => {
    const k = key();
    const limits = { rpm: 3, tpm: 1000 };
    await admit(k, T0, limits, 100);
    await admit(k, T0 + 10_000, limits, 100);
    await admit(k, T0 + 20_250, limits, 100);
    const refused = (await admit(k, T0 + 30_400, limits, 100)) as Extract<RateDecision, { admitted: false }>;
    expect(refused.admitted).toBe(false);
    expect(refused.retryAfterSeconds).toBe(30); // 29.6 s rounded up
    expect((await admit(k, T0 + 30_400 + (refused.retryAfterSeconds - 1) * 1000, limits, 100)).admitted).toBe(false);
    expect((await admit(k, T0 + 30_400 + refused.retryAfterSeconds * 1000, limits, 100)).admitted).toBe(true);
  });

  it("reports remaining counting down and reset as time until the window is empty", async () => {
    const k = key();
    const limits = { rpm: 4, tpm: 1000 };
    const states = [];
    for (let i = 0; i < 4; i++) states.push((await admit(k, T0 + i * 1500, limits, 100)).state!);
    expect(states.map((s) => s.requests.remaining)).toEqual([3, 2, 1, 0]);
    expect(states.map((s) => s.tokens.remaining)).toEqual([900, 800, 700, 600]);
    expect(states.map((s) => s.requests.resetSeconds)).toEqual([60, 60, 60, 60]);
    const refused = await admit(k, T0 + 30_000, limits, 100);
    expect(refused.state).toEqual({
      requests: { limit: 4, remaining: 0, resetSeconds: 35 }, // newest at T0 + 4.5 s ages out at T0 + 64.5 s
      tokens: { limit: 1000, remaining: 600, resetSeconds: 35 },
    });
    expect(refused).toMatchObject({ retryAfterSeconds: 30 });
  });

  it("settle replaces the reservation with actual usage and refunds the difference", async () => {
    const k = key();
    const limits = { rpm: 100, tpm: 1000 };
    const id = randomUUID();
    await admit(k, T0, limits, 900, id);
    expect((await admit(k, T0 + 1, limits, 200)).admitted).toBe(false);
    await limiter.settle({ accountId: ACCOUNT, keyId: k, decisionId: id, actualTokens: 150, now: T0 + 2 });
    const after = await admit(k, T0 + 3, limits, 200);
    expect(after.admitted).toBe(true);
    expect(after.state!.tokens.remaining).toBe(650);
    // Settling something unknown or aged out is a no-op, not an error.
    await limiter.settle({ accountId: ACCOUNT, keyId: k, decisionId: randomUUID(), actualTokens: 5, now: T0 + 4 });
    await limiter.settle({ accountId: ACCOUNT, keyId: key(), decisionId: id, actualTokens: 5, now: T0 + 4 });
    expect((await admit(k, T0 + 5, limits, 0)).state!.tokens.remaining).toBe(650);
  });

  it("release gives back the request and its tokens", async () => {
    const k = key();
    const limits = { rpm: 1, tpm: 500 };
    const id = randomUUID();
    expect((await admit(k, T0, limits, 500, id)).admitted).toBe(true);
    expect((await admit(k, T0 + 1, limits, 1)).admitted).toBe(false);
    await limiter.release({ accountId: ACCOUNT, keyId: k, decisionId: id, tokens: 500, now: T0 + 2 });
    const again = await admit(k, T0 + 3, limits, 500);
    expect(again.admitted).toBe(true);
    expect(again.state!.requests.remaining).toBe(0);
    await limiter.release({ accountId: ACCOUNT, keyId: k, decisionId: id, tokens: 500, now: T0 + 4 }); // twice: no-op
    expect((await admit(k, T0 + 5, limits, 1)).admitted).toBe(false);
  });

  it("keeps each key's window separate (dev, staging, prod keys of one account)", async () => {
    const limits = { rpm: 2, tpm: 1000 };
    const [dev, staging, prod] = [key("dev"), key("staging"), key("prod")];
    for (const k of [dev, dev]) expect((await admit(k, T0, limits)).admitted).toBe(true);
    expect((await admit(dev, T0, limits)).admitted).toBe(false);
    for (const k of [staging, prod, staging, prod]) expect((await admit(k, T0, limits)).admitted).toBe(true);
    expect((await admit(prod, T0, limits)).admitted).toBe(false);
  });

  it("never admits more than the limit in any sliding 60-second window, and decides exactly as brute force does", async () => {
    const step = fc.record({
      // Coarse grids make exact boundaries (an admission exactly 60 s after another, sums exactly at the limit) common.
      gapMs: fc.oneof(
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 0, max: 40_000 }),
        fc.integer({ min: 0, max: 60 }).map((x) => x * 1000),
        fc.constant(0),
      ),
      tokens: fc.oneof(
        fc.integer({ min: 0, max: 400 }),
        fc.integer({ min: 0, max: 8 }).map((x) => x * 50),
      ),
      settle: fc.option(fc.record({ pick: fc.nat(), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }), {
        freq: 3,
      }),
      release: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.oneof(
          fc.integer({ min: 1, max: 1200 }),
          fc.integer({ min: 1, max: 12 }).map((x) => x * 100),
        ),
        fc.array(step, { minLength: 1, maxLength: 40 }),
        async (rpm, tpm, steps) => {
          const k = key("prop");
          const log: Array<{ at: number; tokens: number; id: string; released: boolean; settled: boolean }> = [];
          const live = (now: number) => log.filter((e) => !e.released && e.at > now - MIN);
          /** Whether a request fits at `now`; `settling`: as if every request in flight had finished using nothing. */
          const fits = (now: number, tokens: number, settling = false) => {
            const w = live(now);
            const held = w.reduce((s, e) => s + (settling && !e.settled ? 0 : e.tokens), 0);
            return w.length + 1 <= rpm && held + tokens <= tpm;
          };
          let now = T0;
          for (const s of steps) {
            now += s.gapMs;
            const expected = fits(now, s.tokens);
            const id = randomUUID();
            const decision = await admit(k, now, { rpm, tpm }, s.tokens, id);
            expect(decision.admitted).toBe(expected);
            if (decision.admitted) log.push({ at: now, tokens: s.tokens, id, released: false, settled: false });
            // The x-ratelimit figures match the brute-force window too: counts, remaining, and reset from the newest.
            const w = live(now);
            expect(decision.state).toEqual(
              windowState({
                requestsPerMinute: rpm,
                tokensPerMinute: tpm,
                requests: w.length,
                tokens: w.reduce((sum, e) => sum + e.tokens, 0),
                newestAt: w.length > 0 ? Math.max(...w.map((e) => e.at)) : null,
                now,
              }),
            );
            if (!decision.admitted && s.tokens <= tpm) {
              const inFlight = w.filter((e) => !e.settled).reduce((sum, e) => sum + e.tokens, 0);
              if (decision.inFlightTokens !== undefined) {
                // Requests in flight are what is in the way of the tokens: a short wait (within which the requests
                // dimension, if full too, frees), and how many tokens they hold.
                expect(decision).toMatchObject({ dimension: "tokens", retryAfterSeconds: 1, inFlightTokens: inFlight });
                expect(fits(now + 1000, s.tokens, true)).toBe(true);
              } else {
                // Retry-After is exact to the second once requests in flight have finished: waiting it fits, waiting
                // a second less does not.
                expect(fits(now + decision.retryAfterSeconds * 1000, s.tokens, true)).toBe(true);
                expect(fits(now + (decision.retryAfterSeconds - 1) * 1000, s.tokens, true)).toBe(false);
              }
            }
            if (s.settle && log.length > 0) {
              const e = log[s.settle.pick % log.length]!;
              const actual = Math.floor(e.tokens * s.settle.fraction);
              await limiter.settle({ accountId: ACCOUNT, keyId: k, decisionId: e.id, actualTokens: actual, now });
              if (!e.released && e.at > now - MIN) Object.assign(e, { tokens: actual, settled: true });
            } else if (s.release && log.length > 0 && !decision.admitted) {
              const e = log[log.length - 1]!;
              await limiter.release({ accountId: ACCOUNT, keyId: k, decisionId: e.id, tokens: e.tokens, now });
              if (e.at > now - MIN) e.released = true;
            }
          }
          // Brute force over every window that ends at an admission (the window with the most admissions is one).
          const kept = log.filter((e) => !e.released);
          for (const end of kept) {
            const inside = kept.filter((e) => e.at > end.at - MIN && e.at <= end.at);
            expect(inside.length).toBeLessThanOrEqual(rpm);
            expect(inside.reduce((s, e) => s + e.tokens, 0)).toBeLessThanOrEqual(tpm);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
}

describe("rate limiter [memory]", () => {
  conformance(() => createMemoryRateLimiter());

  it("holds no key that has been idle for a whole window", async () => {
    const limiter = createMemoryRateLimiter();
    for (let i = 0; i < 100; i++) {
      limiter.admit({
        accountId: "acct_idle",
        keyId: `key_${i}`,
        decisionId: randomUUID(),
        requestsPerMinute: 3,
        tokensPerMinute: 100,
        tokens: 1,
        now: T0 + i,
      });
    }
    expect(limiter.keyCount()).toBe(100);
    limiter.admit({
      accountId: "acct_idle",
      keyId: "key_other",
      decisionId: randomUUID(),
      requestsPerMinute: 3,
      tokensPerMinute: 100,
      tokens: 1,
      now: T0 + MIN + 100,
    });
    expect(limiter.keyCount()).toBe(1);
  });
});

describeWith("redis", "rate limiter [redis]", (url) => {
  const prefix = `test_rl_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  describe("its own script", () => conformance(() => createRedisRateLimiter({ redis, prefix })));
  // What Checks run in production: the window decided inside the combined rate-limit + credit script (quota.ts).
  describe("inside the admission script, with credit to spare", () =>
    conformance(() => limiterOverQuota(redis, prefix)));

  it("keeps a key's Redis keys in its account's Cluster slot (with the account's credit keys) and expires them after the window", async () => {
    const limiter = createRedisRateLimiter({ redis, prefix });
    await limiter.admit({
      keyId: "key_slot",
      accountId: "acct_slot",
      decisionId: randomUUID(),
      requestsPerMinute: 3,
      tokensPerMinute: 100,
      tokens: 1,
      now: Date.now(),
    });
    const keys = (await redis.keys(`${prefix}:{acct_slot}:*`)).sort();
    expect(keys).toEqual([`${prefix}:{acct_slot}:rl:key_slot:req`, `${prefix}:{acct_slot}:rl:key_slot:tok`]);
    const ttl = await redis.pttl(keys[0]!);
    expect(ttl).toBeGreaterThan(MIN);
    expect(ttl).toBeLessThanOrEqual(MIN + 10_000);
  });
});

describeCluster("rate limiter [redis cluster]", (cluster) => {
  const prefix = `test_rl_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedisCluster(cluster, `${prefix}:`);
  describe("its own script", () => conformance(() => createRedisRateLimiter({ redis: redis(), prefix })));
  describe("inside the admission script, with credit to spare", () =>
    conformance(() => limiterOverQuota(redis(), prefix)));
});

/**
 * The admission script seen as a limiter: every hold reserves no credit against a balance that never runs out, so
 * only its window decides; settle and release go to the limiter, which shares the script's keys.
 */
function limiterOverQuota(redis: RedisConnection, prefix: string): RateLimiter {
  const limiter = createRedisRateLimiter({ redis, prefix });
  const source = {
    balances: async (ids: readonly string[]) =>
      new Map(ids.map((id) => [id, { balance: nanos(2n ** 52n), version: 1 }])),
  };
  const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
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
  };
}

describe("admission quota failure policy", () => {
  const broken: Quota = {
    hold: async () => {
      throw new Error("Connection is closed.");
    },
  };
  const request = {
    keyId: "key_x",
    accountId: "acct_x",
    decisionId: "d",
    requestsPerMinute: 1,
    tokensPerMinute: 1,
    tokens: 1,
    amount: nanos(1n),
    now: T0,
  };
  const capture = () => {
    const lines: string[] = [];
    const logger = createLogger({
      level: "warn",
      destination: new Writable({ write: (c, _e, done) => (lines.push(String(c)), done()) }),
    });
    return { lines, logger };
  };

  it("fails closed by default: the fault reaches admission (which answers 503), logged once per period", async () => {
    const { lines, logger } = capture();
    const quota = withFailurePolicy(broken, { failOpen: false, logger });
    await expect(Promise.resolve(quota.hold(request))).rejects.toThrow("Connection is closed.");
    await expect(Promise.resolve(quota.hold(request))).rejects.toThrow();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("fail closed");
  });

  it("fails open when configured: held without limits or reservation (no x-ratelimit state), with a warning", async () => {
    const { lines, logger } = capture();
    expect(await withFailurePolicy(broken, { failOpen: true, logger }).hold(request)).toEqual({ held: true });
    expect(lines[0]).toContain("WITHOUT them");
  });
});
