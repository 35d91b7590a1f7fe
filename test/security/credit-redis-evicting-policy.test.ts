import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { nanos } from "../../src/domain/money.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { usePrivateRedis } from "../support/credit-stack.js";
import { haveRedisBinaries } from "../support/redis-cluster.js";
import { sqliteTarget } from "../support/services.js";

const source = {
  balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(10_000n), version: 1 }])),
};

/**
 * Review finding (fixed: the attach script reads maxmemory_policy from INFO memory): the README requires `maxmemory-policy noeviction` ("never an evicting
 * policy, volatile-* included: the fence and balance keys carry TTLs and could be evicted early"), but nothing checks
 * it, while the ACL requirement (INFO) is checked at start-up. Managed Redis services default to volatile-lru: an
 * evicted fence ends a data-loss fence early, an evicted reservation hash frees credit that is still in flight, and
 * neither changes the server or the epoch, so credit_guard and the attach script see nothing. The attach script can
 * read `maxmemory_policy` from INFO memory (it already reads INFO) and refuse to verify an evicting dataset.
 */
describe.skipIf(!haveRedisBinaries())("a Redis that may evict credit keys is never verified", () => {
  const stack = usePrivateRedis({ admin: false, args: ["--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"] });

  it("maxmemory-policy volatile-lru: reserving answers 503 (unverified), never a decision", async () => {
    let remembered: string | null = null;
    const credits = createRedisCreditGate({
      redis: stack.redis,
      source,
      reservationTtlMs: 600_000,
      prefix: `test_evict_${randomUUID().slice(0, 8)}:`,
      epochs: { read: async () => remembered, write: async (e) => void (remembered = e) },
    });
    try {
      await expect(
        credits.reserve({ accountId: "acct_evict", decisionId: randomUUID(), amount: nanos(1n), now: Date.now() }),
      ).rejects.toThrow();
    } finally {
      await credits.close();
    }
  });

  it("start-up fails, naming maxmemory-policy noeviction, on a Redis that may evict", async () => {
    const started = startTestPlane(sqliteTarget(), { env: { TOLLGATE_REDIS_URL: `redis://127.0.0.1:${stack.port}` } });
    await expect(started).rejects.toThrow(/maxmemory-policy noeviction/);
  });

  it("a policy changed to an evicting one while running: Checks get 503 and an error log names the setting", async () => {
    await stack.redis.call("CONFIG", "SET", "maxmemory-policy", "noeviction");
    let t: TestPlane | undefined;
    try {
      t = await startTestPlane(sqliteTarget(), { env: { TOLLGATE_REDIS_URL: `redis://127.0.0.1:${stack.port}` } });
      const { secret } = await t.account("pro");
      const body = JSON.stringify({ model: "gpt-5.5", max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
      const check = () =>
        envoyCheckRequest({ headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" }, body });
      expect(outcome(await t.authz.check(check())).allowed).toBe(true);
      // The operator (or a managed service's parameter group) switches to volatile-lru; the next connection sees it.
      await stack.redis.call("CONFIG", "SET", "maxmemory-policy", "volatile-lru");
      const hot = t.plane.rateLimiting.redis!;
      await stack.redis.call("CLIENT", "KILL", "TYPE", "normal");
      for (let i = 0; i < 100 && hot.status === "ready"; i++) await new Promise((r) => setTimeout(r, 20));
      for (let i = 0; i < 100 && hot.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 20));
      const r = outcome(await t.authz.check(check()));
      expect(r.allowed).toBe(false);
      expect(r.httpStatus).toBe(503);
      expect(t.logs.some((l) => l.includes('"level":50') && l.includes("maxmemory-policy noeviction"))).toBe(true);
    } finally {
      await t?.close();
      await stack.redis.call("CONFIG", "SET", "maxmemory-policy", "volatile-lru");
    }
  }, 20_000);
});
