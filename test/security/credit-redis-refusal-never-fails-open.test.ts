import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { withFailurePolicy } from "../../src/app/rate-limits.js";
import type { HoldRequest } from "../../src/domain/admission.js";
import { nanos } from "../../src/domain/money.js";
import { createLogger } from "../../src/logging.js";
import { redisAdmission, usePrivateRedis } from "../support/credit-stack.js";
import { haveRedisBinaries } from "../support/redis-cluster.js";

const source = {
  balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(1_000n), version: 1 }])),
};

/**
 * redis.fail_open admits without credit only while Redis is unreachable or timing out (README). A Redis that answers
 * but refuses the admission script (maxmemory reached: OOM; BUSY; READONLY; LOADING) is connected: admitting then
 * would spend credit nobody holds, and anyone able to fill Redis (open reservations) could switch credit off.
 */
describe.skipIf(!haveRedisBinaries())("a Redis that refuses the admission script never fails open", () => {
  const stack = usePrivateRedis();

  it("OOM (maxmemory reached) on the hold script is a 503, not an admission without credit", async () => {
    const prefix = `test_oom_${randomUUID().slice(0, 8)}`;
    const { credits, quota: script } = redisAdmission(stack.redis, prefix, source);
    const quota = withFailurePolicy(script, {
      failOpen: true,
      logger: createLogger({ level: "silent" }),
    });
    const request = (amount = 400n): HoldRequest => ({
      keyId: "key_oom",
      accountId: "acct_oom",
      decisionId: randomUUID(),
      requestsPerMinute: 1000,
      tokensPerMinute: 1_000_000,
      tokens: 10,
      amount: nanos(amount),
      now: Date.now(),
    });
    // Verified and deciding: two fit in the balance of 1000, the third does not.
    expect((await quota.hold(request())).held).toBe(true);
    expect((await quota.hold(request())).held).toBe(true);
    expect(await quota.hold(request())).toMatchObject({ held: false });
    // Redis is full: every write script is refused with OOM while the connection stays up.
    await stack.admin.config("SET", "maxmemory", "1");
    try {
      // 100 would fit (200 is available): only Redis's refusal stands in the way, and it must stay a refusal.
      await expect(Promise.resolve(quota.hold(request(100n)))).rejects.toThrow();
    } finally {
      await stack.admin.config("SET", "maxmemory", "0");
      await credits.close();
    }
  });
});
