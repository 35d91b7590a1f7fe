// Daily quotas and the concurrency limit hold exactly across authz replicas sharing Redis: two `tollgate serve
// --role authz` processes, one burst of concurrent Checks spread over both.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connectRedis, createRedisClient } from "../../src/adapters/redis/client.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import type { NewKey } from "../../src/domain/ports.js";
import { outcome } from "../support/authz-client.js";
import { startAuthzReplica, stopAuthzReplica, type AuthzReplica } from "../support/authz-replica.js";
import { chatCheck } from "../support/rate-limits.js";
import { describeWith, sqliteTarget, type StoreTarget } from "../support/services.js";

describeWith("redis", "daily quotas and concurrency across two authz replicas sharing Redis", (redisUrl) => {
  const prefix = `test_qrep_${process.pid}_${randomUUID().slice(0, 8)}`;
  let target: StoreTarget;
  let stores: Stores;
  let replicas: AuthzReplica[] = [];
  const redis = createRedisClient(redisUrl);

  beforeAll(async () => {
    target = sqliteTarget();
    await connectRedis(redis);
    stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: target.url } }), {});
    const env = {
      // A credential for the test model's provider (not --mock-providers, which also starts a mock server on one port).
      TOLLGATE_PROVIDER_ANTHROPIC_API_KEY: "test-anthropic",
      TOLLGATE_DATABASE_URL: target.url,
      TOLLGATE_SIGNING_SECRET: "replicas-signing-secret-0123456789abcdef",
      TOLLGATE_REDIS_URL: redisUrl,
      TOLLGATE_REDIS_PREFIX: prefix,
      // A loaded CI box can lag a burst past the production Redis deadline; this test is about exactness.
      TOLLGATE_REDIS_COMMAND_TIMEOUT_MS: "10000",
    };
    replicas = await Promise.all([startAuthzReplica(env), startAuthzReplica(env)]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(replicas.map(stopAuthzReplica));
    await stores?.db.close();
    const stale = await redis.keys(`${prefix}:*`);
    if (stale.length) await redis.del(...stale);
    redis.disconnect();
    await target?.cleanup();
  });

  async function newKey(limits: Partial<NewKey>) {
    const account = await stores.accounts.create({ name: "quota replicas", planId: "pro" });
    await stores.ledger.topUp({
      accountId: account.id,
      amount: 1_000_000_000_000n as never,
      feeBps: 0,
      now: Date.now(),
    });
    return stores.keys.create({ accountId: account.id, ...limits });
  }

  /** 200 Checks at once, alternating replicas, after one Check per replica warmed their key caches on another key. */
  async function burst(secret: string) {
    const warm = await newKey({});
    for (const r of replicas) expect(outcome(await r.client.check(chatCheck(warm.secret))).allowed).toBe(true);
    return Promise.all(
      Array.from({ length: 200 }, (_, i) => replicas[i % 2]!.client.check(chatCheck(secret)).then(outcome)),
    );
  }

  it("requests per day: exactly 25 of 200 concurrent Checks over two replicas, the rest 429 naming the daily quota", async () => {
    const { secret } = await newKey({ requestsPerDay: 25 });
    const results = await burst(secret);
    expect(results.filter((r) => r.allowed)).toHaveLength(25);
    const refused = results.filter((r) => !r.allowed);
    expect(refused.every((r) => r.httpStatus === 429 && /requests per day/.test(r.error?.message ?? ""))).toBe(true);
    for (const r of replicas) expect(outcome(await r.client.check(chatCheck(secret))).httpStatus).toBe(429);
  });

  it("concurrency: exactly 7 of 200 concurrent Checks in flight over two replicas, the rest 429 concurrency_limit_exceeded", async () => {
    const { secret } = await newKey({ maxConcurrency: 7 });
    const results = await burst(secret);
    expect(results.filter((r) => r.allowed)).toHaveLength(7);
    const refused = results.filter((r) => !r.allowed);
    expect(refused.every((r) => r.httpStatus === 429 && r.error?.code === "concurrency_limit_exceeded")).toBe(true);
  });
});
