import { randomUUID } from "node:crypto";
import knexFactory from "knex";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connectRedis, createRedisClient } from "../../src/adapters/redis/client.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import { nanos } from "../../src/domain/money.js";
import { outcome } from "../support/authz-client.js";
import { startAuthzReplica, stopAuthzReplica, type AuthzReplica } from "../support/authz-replica.js";
import { describeWith } from "../support/services.js";
import { budgetRequest, settled } from "../support/budgets.js";

const SIGNING_SECRET = "budget-replicas-signing-secret-0123456789";

describeWith("postgres", "spend caps across two authz processes [postgres + redis]", (pgUrl) => {
  describeWith("redis", "with redis", (redisUrl) => {
    const prefix = `test_budget_rep_${process.pid}_${randomUUID().slice(0, 8)}`;
    const dbName = `tg_budget_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const admin = knexFactory({ client: "pg", connection: pgUrl });
    const dbUrl = (() => {
      const own = new URL(pgUrl);
      own.pathname = `/${dbName}`;
      return own.toString();
    })();
    const redis = createRedisClient(redisUrl, { commandTimeoutMs: 5000 });
    let stores: Stores;
    let replicas: AuthzReplica[] = [];

    beforeAll(async () => {
      await admin.raw("create database ??", [dbName]);
      await connectRedis(redis);
      const config = loadConfig({ env: { TOLLGATE_DATABASE_URL: dbUrl } });
      stores = await openStores(config, {});
      const env = {
        // A credential for the test model's provider (not --mock-providers, which also starts a mock server on one port).
        TOLLGATE_PROVIDER_OPENAI_API_KEY: "test-openai",
        TOLLGATE_DATABASE_URL: dbUrl,
        TOLLGATE_SIGNING_SECRET: SIGNING_SECRET,
        TOLLGATE_REDIS_URL: redisUrl,
        TOLLGATE_REDIS_PREFIX: prefix,
        // Two processes, the test and parallel suites share a small machine: a 200-Check burst may lag an event loop
        // past the production Redis deadline. This test is about exactness, so it allows for the lag.
        TOLLGATE_REDIS_COMMAND_TIMEOUT_MS: "10000",
      };
      replicas = await Promise.all([startAuthzReplica(env), startAuthzReplica(env)]);
    }, 120_000);

    afterAll(async () => {
      await Promise.all(replicas.map(stopAuthzReplica));
      await stores?.db.close();
      const stale = await redis.keys(`${prefix}*`);
      if (stale.length) await redis.del(...stale);
      redis.disconnect();
      await admin.raw("drop database if exists ?? with (force)", [dbName]);
      await admin.destroy();
    });

    async function funded(budget?: Parameters<Stores["keys"]["create"]>[0]["budget"]) {
      const account = await stores.accounts.create({ name: "budgets", planId: "pro" });
      await stores.ledger.topUp({
        accountId: account.id,
        amount: nanos(1_000_000_000_000n),
        feeBps: 0,
        now: Date.now(),
      });
      return { accountId: account.id, ...(await stores.keys.create({ accountId: account.id, budget })) };
    }

    it("admits exactly 10 of 200 concurrent Checks spread over both processes for a key whose daily budget covers 10", async () => {
      const probe = await funded();
      const probed = outcome(await replicas[0]!.client.check(budgetRequest(probe.secret)));
      expect(probed.allowed, JSON.stringify(probed.error)).toBe(true);
      const worst = BigInt(probed.metadata.reserved_nanos as string);
      const limit = 10n * worst + worst - 1n;
      const { accountId, secret } = await funded({ limit: nanos(limit), period: "day" });

      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => replicas[i % 2]!.client.check(budgetRequest(secret)).then(outcome)),
      );
      const admitted = results.filter((r) => r.allowed);
      const statuses = new Map<string, number>();
      for (const r of results)
        statuses.set(r.error?.code ?? "allowed", (statuses.get(r.error?.code ?? "allowed") ?? 0) + 1);
      console.log(
        `two authz processes, 200 Checks against a budget of 10: ${JSON.stringify(Object.fromEntries(statuses))}`,
      );
      expect(admitted).toHaveLength(10);
      expect(results.filter((r) => r.error?.code === "budget_exceeded")).toHaveLength(190);
      // Both processes admitted from one shared budget, and what they hold never passes the cap.
      const held = admitted.reduce((sum, r) => sum + BigInt(r.metadata.reserved_nanos as string), 0n);
      expect(held).toBeLessThanOrEqual(limit);

      // The meter settles every admitted request at its worst case: spent = 10 × worst ≤ the cap, and one more still
      // does not fit on either process.
      const now = Date.now();
      const result = await stores.ledger.commit({
        events: settled(admitted, accountId, worst, now),
        expired: [],
        deadLetters: [],
        now,
      });
      const gate = createRedisCreditGate({
        redis,
        source: stores.ledger,
        reservationTtlMs: 600_000,
        prefix: `${prefix}:`,
      });
      await gate.committed(result.changes);
      await gate.close();
      for (const r of replicas)
        expect(outcome(await r.client.check(budgetRequest(secret))).error?.code).toBe("budget_exceeded");
      expect((await stores.ledger.balance(accountId)).balance).toBe(1_000_000_000_000n - 10n * worst);
    }, 60_000);
  });
});
