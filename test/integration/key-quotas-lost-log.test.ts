// Review of issue 14: a request whose access-log entry was lost never settles. Its place in flight frees after the
// TTL (tested in key-quotas.test.ts); its tokens counted against today must stop counting as "in flight" then too,
// or every later refusal says "held by requests still in flight, retry in 1 s" until midnight (a Retry-After that lies).
import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import { createRedisRateLimiter } from "../../src/adapters/redis/rate-limiter.js";
import type { RateLimiter, RateRequest } from "../../src/domain/admission.js";
import { describeWith, suiteRedis } from "../support/services.js";

const HOUR = 3_600_000;
const LATE = Date.UTC(2026, 0, 10, 20, 0, 0);
const MIDNIGHT = Date.UTC(2026, 0, 11);
const TTL = 30_000;
const ACCOUNT = "acct_lost_log";

function lostLog(make: () => RateLimiter) {
  let limiter: RateLimiter;
  beforeAll(() => {
    limiter = make();
  });
  const admit = (keyId: string, now: number, over: Partial<RateRequest> = {}) =>
    Promise.resolve(
      limiter.admit({
        keyId,
        accountId: ACCOUNT,
        decisionId: randomUUID(),
        requestsPerMinute: 1000,
        tokensPerMinute: 1_000_000,
        tokens: 10,
        now,
        ...over,
      }),
    );

  it("tokens per day: a request never settled (access log lost) stops counting as in flight after the TTL", async () => {
    const k = `key_${randomUUID().slice(0, 12)}`;
    const tpd = { tokensPerDay: 1000 };
    expect((await admit(k, LATE, { ...tpd, tokens: 900 })).admitted).toBe(true);
    // While it may still be running, the short wait is honest.
    expect(await admit(k, LATE + 1000, { ...tpd, tokens: 200 })).toMatchObject({
      admitted: false,
      dimension: "tokens_day",
      retryAfterSeconds: 1,
    });
    // Hours later its entry is long lost (its credit reservation expired into a charge): nothing is in flight, and
    // retrying every second until midnight can never succeed. The wait is until midnight.
    const later = LATE + 2 * HOUR;
    expect(later).toBeGreaterThan(LATE + TTL);
    const refused = await admit(k, later, { ...tpd, tokens: 200 });
    expect(refused).toMatchObject({ admitted: false, dimension: "tokens_day" });
    expect(refused.admitted === false && refused.retryAfterSeconds).toBe((MIDNIGHT - later) / 1000);
  });

  it("tokens per day: a request settled after its TTL (a stream that outlived it) still counts what it really used", async () => {
    const k = `key_${randomUUID().slice(0, 12)}`;
    const tpd = { tokensPerDay: 1000 };
    const decisionId = randomUUID();
    expect((await admit(k, LATE, { ...tpd, tokens: 900, decisionId })).admitted).toBe(true);
    const later = LATE + 2 * HOUR;
    expect(await admit(k, later, { ...tpd, tokens: 200 })).toMatchObject({ admitted: false, dimension: "tokens_day" });
    // Its access-log entry arrives at last: it used 100 tokens, so 200 more fit today, once (1000 counted after that).
    await limiter.settle({ keyId: k, accountId: ACCOUNT, decisionId, actualTokens: 100, now: later });
    expect((await admit(k, later, { ...tpd, tokens: 200 })).admitted).toBe(true);
    await limiter.settle({ keyId: k, accountId: ACCOUNT, decisionId, actualTokens: 100, now: later });
    expect((await admit(k, later, { ...tpd, tokens: 600 })).admitted).toBe(true);
    expect(await admit(k, later, { ...tpd, tokens: 200 })).toMatchObject({ admitted: false, dimension: "tokens_day" });
  });

  it("tokens per day: a request settled in time is not touched by the expiry, and a live one keeps the short wait", async () => {
    const k = `key_${randomUUID().slice(0, 12)}`;
    const tpd = { tokensPerDay: 1000 };
    const settledId = randomUUID();
    expect((await admit(k, LATE, { ...tpd, tokens: 500, decisionId: settledId })).admitted).toBe(true);
    await limiter.settle({ keyId: k, accountId: ACCOUNT, decisionId: settledId, actualTokens: 300, now: LATE + 1000 });
    // 300 used; a request admitted later is still in flight within its TTL when the first one's TTL has passed.
    expect((await admit(k, LATE + TTL - 1000, { ...tpd, tokens: 600 })).admitted).toBe(true);
    expect(await admit(k, LATE + TTL + 1000, { ...tpd, tokens: 200 })).toMatchObject({
      admitted: false,
      dimension: "tokens_day",
      retryAfterSeconds: 1,
    });
  });
}

describe("lost access log and daily tokens [memory]", () => {
  lostLog(() => createMemoryRateLimiter({ inFlightTtlMs: TTL }));
});

describeWith("redis", "lost access log and daily tokens [redis]", (url) => {
  const prefix = `test_kqlost_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  lostLog(() => createRedisRateLimiter({ redis, prefix, inFlightTtlMs: TTL }));
});
