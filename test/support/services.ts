import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import knexFactory from "knex";
import type { Redis } from "ioredis";
import { connectRedis, createRedisClient } from "../../src/adapters/redis/client.js";

/** PostgreSQL for integration suites; .ci/run sets it. */
export const TEST_DATABASE_URL = process.env.TOLLGATE_TEST_DATABASE_URL;
/** Redis for integration suites; .ci/run sets it. */
export const TEST_REDIS_URL = process.env.TOLLGATE_TEST_REDIS_URL;
const CI = process.env.CI === "true" || process.env.CI === "1";

/**
 * Declares a suite that needs an external service. Without its URL it skips (the run says so once, with how to enable it),
 * except under CI, where a missing service is a failure: CI must never go green by skipping.
 */
export function describeWith(service: "postgres" | "redis", name: string, fn: (url: string) => void): void {
  const url = service === "postgres" ? TEST_DATABASE_URL : TEST_REDIS_URL;
  const variable = service === "postgres" ? "TOLLGATE_TEST_DATABASE_URL" : "TOLLGATE_TEST_REDIS_URL";
  if (url) {
    describe(name, () => fn(url));
    return;
  }
  if (CI) {
    describe(name, () => {
      it(`needs ${variable} under CI`, () => {
        throw new Error(`${variable} is not set; CI must run the ${service} suites`);
      });
    });
    return;
  }
  // Said once per run, for every file, by test/support/skip-notice.ts (vitest globalSetup): not here, once per file.
  describe.skip(name, () => fn(""));
}

/** A database every store suite runs against: the embedded SQLite file always, PostgreSQL when configured. */
export interface StoreTarget {
  name: "sqlite" | "postgres";
  url: string;
  schema?: string;
  cleanup(): Promise<void>;
}

/** A fresh SQLite file in a temporary folder. */
export function sqliteTarget(): StoreTarget {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-test-"));
  return {
    name: "sqlite",
    url: `sqlite:${join(dir, "tollgate.db")}`,
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A fresh PostgreSQL schema on the test server, dropped by `cleanup`. */
export function postgresTarget(url: string): StoreTarget {
  const schema = `t_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  return {
    name: "postgres",
    url,
    schema,
    async cleanup() {
      const knex = knexFactory({ client: "pg", connection: url });
      try {
        await knex.raw("drop schema if exists ?? cascade", [schema]);
      } finally {
        await knex.destroy();
      }
    },
  };
}

/**
 * Runs `fn` once per store target: `describe(name [sqlite])` always and `describe(name [postgres])` through
 * describeWith, so one suite proves both dialects.
 */
export function describeStores(name: string, fn: (target: () => StoreTarget) => void): void {
  describe(`${name} [sqlite]`, () => fn(sqliteTarget));
  describeWith("postgres", `${name} [postgres]`, (url) => fn(() => postgresTarget(url)));
}

/**
 * A Redis connection for one suite: connected before its tests, and on the way out every key under `prefix` deleted
 * (each suite writes under a prefix of its own) and the connection closed. Call inside a describe.
 */
export function suiteRedis(url: string, prefix: string): Redis {
  // A single-node URL (the cluster suites open theirs with test/support/redis-cluster.ts).
  const redis = createRedisClient(url, { commandTimeoutMs: 5000 }) as Redis;
  beforeAll(async () => {
    expect(await connectRedis(redis)).toBe(true);
  });
  afterAll(async () => {
    const stale = await redis.keys(`${prefix}*`);
    if (stale.length) await redis.del(...stale);
    redis.disconnect();
  });
  return redis;
}
