import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryCreditGate } from "../../src/adapters/memory/credit-gate.js";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { holdInTurn, type HoldRequest, type Quota } from "../../src/domain/admission.js";
import type { CreditReservations } from "../../src/domain/credits.js";
import { nanos } from "../../src/domain/money.js";
import { describeWith, sqliteTarget, suiteRedis } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { outcome } from "../support/authz-client.js";
import { redisAdmission } from "../support/credit-stack.js";
import { chatCheck } from "../support/rate-limits.js";

const source = {
  balances: async (ids: readonly string[]) =>
    new Map(ids.map((id) => [id, { balance: nanos(10n ** 12n), version: 1 }])),
};

interface Gate {
  quota: Quota;
  credits: CreditReservations;
}

const request = (accountId: string, over: Partial<HoldRequest> = {}): HoldRequest => ({
  keyId: `key_${accountId}`,
  accountId,
  decisionId: randomUUID(),
  requestsPerMinute: 10_000,
  tokensPerMinute: 1e9,
  tokens: 1,
  amount: nanos(1n),
  now: Date.now(),
  ...over,
});

/** One account may hold at most `perAccount` (3 here) unsettled reservations; settling one makes room for one. */
function perAccountBound(make: () => Gate) {
  it("refuses the 4th unsettled hold of an account with the in-flight outcome, and admits again after a settlement", async () => {
    const gate = make();
    const accountId = `acct_${randomUUID().slice(0, 8)}`;
    const held = [request(accountId), request(accountId), request(accountId)];
    for (const r of held) expect((await gate.quota.hold(r)).held).toBe(true);
    expect(await gate.quota.hold(request(accountId))).toEqual({ held: false, inFlight: "account", limit: 3 });
    // A retry of a held decision is still answered as held (it holds nothing more).
    expect((await gate.quota.hold(held[0]!)).held).toBe(true);
    // Another account is not affected.
    expect((await gate.quota.hold(request(`acct_${randomUUID().slice(0, 8)}`))).held).toBe(true);
    await gate.credits.committed([
      { accountId, delta: -1n, balance: nanos(10n ** 12n - 1n), version: 2, settled: [held[0]!.decisionId] },
    ]);
    expect((await gate.quota.hold(request(accountId))).held).toBe(true);
    expect(await gate.quota.hold(request(accountId))).toMatchObject({ held: false, inFlight: "account" });
  });
}

describe("open reservations are bounded [in process]", () => {
  perAccountBound(() => {
    const credits = createMemoryCreditGate({ source, reservationTtlMs: 600_000, maxOpenPerAccount: 3 });
    return { quota: holdInTurn(createMemoryRateLimiter(), credits), credits };
  });

  it("the whole gate holds at most max_open_reservations_total, however many accounts admit", async () => {
    const credits = createMemoryCreditGate({
      source,
      reservationTtlMs: 600_000,
      maxOpenPerAccount: 3,
      maxOpenTotal: 50,
    });
    const quota = holdInTurn(createMemoryRateLimiter(), credits);
    const outcomes = [];
    for (let i = 0; i < 1000; i++) outcomes.push(await quota.hold(request(`acct_total_${i}`)));
    expect(outcomes.filter((o) => o.held)).toHaveLength(50);
    expect(outcomes[50]).toEqual({ held: false, inFlight: "total", limit: 50 });
    expect(await credits.openReservations!()).toBe(50);
  });
});

describeWith("redis", "open reservations are bounded [redis]", (url) => {
  const prefix = `test_bound_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  describe("the combined admission script", () => {
    perAccountBound(() => redisAdmission(redis, prefix, source, 3));
  });
  describe("the gate's own reserve script", () => {
    perAccountBound(() => {
      const credits = createRedisCreditGate({
        redis,
        source,
        reservationTtlMs: 600_000,
        prefix: `${prefix}:`,
        maxOpenPerAccount: 3,
      });
      return { quota: holdInTurn(createMemoryRateLimiter(), credits), credits };
    });
  });
});

describe("too many requests in flight for one account [Check]", () => {
  let t: TestPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("answers 429 rate_limit_exceeded naming the in-flight limit, and counts it in a metric", async () => {
    t = await startTestPlane(sqliteTarget(), { env: { TOLLGATE_CREDITS_MAX_OPEN_RESERVATIONS_PER_ACCOUNT: "3" } });
    const { secret } = await t.account("pro");
    for (let i = 0; i < 3; i++) expect(outcome(await t.authz.check(chatCheck(secret))).allowed).toBe(true);
    const refused = outcome(await t.authz.check(chatCheck(secret)));
    expect(refused.httpStatus).toBe(429);
    expect(refused.error?.code).toBe("rate_limit_exceeded");
    expect(refused.error?.message).toMatch(/too many requests in flight for this account/i);
    expect(refused.headers["retry-after"]).toBeDefined();
    const { body } = await t.plane.metrics.render();
    expect(body).toMatch(/tollgate_credit_reservations_refused_total\{reason="account_full"\} 1/);
  });
});
