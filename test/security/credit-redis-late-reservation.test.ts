import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import { withFailurePolicy } from "../../src/app/rate-limits.js";
import type { HoldRequest } from "../../src/domain/admission.js";
import { nanos } from "../../src/domain/money.js";
import { createLogger } from "../../src/logging.js";
import { usePrivateRedis } from "../support/credit-stack.js";
import { haveRedisBinaries } from "../support/redis-cluster.js";

const source = {
  balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(10_000n), version: 1 }])),
};
const TTL_MS = 600_000;

/**
 * Review finding: a hold script that Redis runs after the client's command timeout (Redis stalled: a fork for BGSAVE,
 * CLIENT PAUSE, a slow script; in a cluster also a TRYAGAIN/MOVED resend) still writes its reservation. The Check was
 * answered 503, no access-log entry will ever carry its decision id, and at expiry the meter charged the reservation's
 * worst case for a request that was refused. Fixed: withFailurePolicy releases, in the background and retried,
 * whatever a hold answered 503 may have written (authz-service does the same for an admission decided after Envoy's
 * deadline, test authz-deadline-releases-holds). With redis.fail_open the request is admitted and goes upstream, so a
 * late hold is its reservation and stays (the review's "charged twice" does not happen: an expiry skips a decision
 * already billed).
 */
describe.skipIf(!haveRedisBinaries())("a hold the client gave up on leaves nothing to charge", () => {
  const stack = usePrivateRedis({ commandTimeoutMs: 300 });

  const setUp = (failOpen: boolean) => {
    const prefix = `test_late_${randomUUID().slice(0, 8)}`;
    const credits = createRedisCreditGate({
      redis: stack.redis,
      source,
      reservationTtlMs: TTL_MS,
      prefix: `${prefix}:`,
    });
    const quota = withFailurePolicy(createRedisQuota({ redis: stack.redis, prefix, credits }), {
      failOpen,
      logger: createLogger({ level: "silent" }),
    });
    const request = (): HoldRequest => ({
      keyId: "key_late",
      accountId: "acct_late",
      decisionId: randomUUID(),
      requestsPerMinute: 1000,
      tokensPerMinute: 1_000_000,
      tokens: 10,
      amount: nanos(400n),
      now: Date.now(),
    });
    const scope = `${prefix}:{acct_late}`;
    return { prefix, credits, quota, request, scope };
  };

  it("a hold that timed out (503) is not left as a reservation the meter will charge at expiry", async () => {
    const { credits, quota, request, scope } = setUp(false);
    expect((await quota.hold(request())).held).toBe(true);
    // Redis stalls writes for longer than the command timeout.
    await stack.admin.call("CLIENT", "PAUSE", "1000", "WRITE");
    const late = request();
    await expect(Promise.resolve(quota.hold(late))).rejects.toThrow(/timed out/i);
    await sleep(1500);
    try {
      const charged = await credits.expired(late.now + TTL_MS + 1);
      expect(charged.map((r) => r.decisionId)).not.toContain(late.decisionId);
      // Nothing else of it stays either: only the first hold's credit and window entry.
      expect(await stack.admin.get(`${scope}:held`)).toBe("400");
      expect(await stack.admin.zrange(`${scope}:rl:key_late:req`, "0", "-1")).toHaveLength(1);
      expect(await stack.admin.zscore(`${scope}:rl:key_late:req`, late.decisionId)).toBeNull();
    } finally {
      quota.close();
      await credits.close();
    }
  });

  /**
   * With redis.fail_open the request is admitted and goes upstream: a hold that ran late is then its reservation, and
   * keeping it is right. The meter settles it from the access log (one charge: the ledger is unique per decision, and
   * an expiry skips a decision already billed); only if that entry is lost does it expire into the worst case, which
   * reconcile corrects. Releasing it would make such a request free.
   */
  it("redis.fail_open: admitted, the late hold is kept as the request's reservation (never released into free use)", async () => {
    const { credits, quota, request, scope } = setUp(true);
    expect((await quota.hold(request())).held).toBe(true);
    await stack.admin.call("CLIENT", "PAUSE", "1000", "WRITE");
    const late = request();
    expect(await quota.hold(late)).toEqual({ held: true });
    await sleep(1500);
    try {
      const open = await credits.expired(late.now + TTL_MS + 1);
      expect(open.map((r) => r.decisionId)).toContain(late.decisionId);
      expect(await stack.admin.get(`${scope}:held`)).toBe("800");
    } finally {
      quota.close();
      await credits.close();
    }
  });
});
