import { describe, expect, it } from "vitest";
import { connectRedis, createRedisClient } from "../../src/adapters/redis/client.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { nanos } from "../../src/domain/money.js";
import { freePort } from "../support/ports.js";
import { startRedisServer, stopRedisServer } from "../support/rate-limits.js";
import { describeWith, suiteRedis } from "../support/services.js";

describeWith("redis", "Redis credit gate expiry sweep", (url) => {
  const prefix = `test:${process.pid}:${Date.now()}:`;
  const redis = suiteRedis(url, prefix);
  const source = {
    balances: async (ids: readonly string[]) =>
      new Map(ids.map((id) => [id, { balance: nanos(10n ** 15n), version: 1 }])),
  };
  const gate = createRedisCreditGate({ redis, source, reservationTtlMs: 1, prefix, maxOpenPerAccount: 30_000 });

  it("works off a backlog of expired reservations in bounded batches without taking the process down", async () => {
    // A meter down for a long time leaves many reservations to expire at once; one unbounded HMGET of them all
    // overflowed the call stack inside ioredis and crashed authz.
    const backlog = 25_000;
    const pending: unknown[] = [];
    for (let i = 0; i < backlog; i++)
      pending.push(gate.reserve({ accountId: "acct_backlog", decisionId: `d${i}`, amount: nanos(1n), now: 0 }));
    expect((await Promise.all(pending)).every((r) => (r as { reserved: boolean }).reserved)).toBe(true);

    let charged = 0;
    for (let sweep = 0; sweep < 40; sweep++) {
      const expired = await gate.expired(10);
      if (expired.length === 0) break;
      expect(expired.length).toBeLessThanOrEqual(1000);
      charged += expired.length;
      await gate.committed([
        {
          accountId: "acct_backlog",
          delta: 0n,
          balance: nanos(10n ** 15n),
          version: -1,
          settled: expired.map((e) => e.decisionId),
        },
      ]);
    }
    expect(charged).toBe(backlog);
    expect(await gate.openReservations?.()).toBe(0);
  });
});

describeWith("redis", "Redis credit gate: who may vouch for a dataset", (url) => {
  const prefix = `test:${process.pid}:${Date.now()}:vouch:`;
  const redis = suiteRedis(url, prefix);
  const source = {
    balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(1000n), version: 1 }])),
  };

  it("a gate without the SQL epoch memory (a one-shot CLI command) never marks an emptied dataset as verified", async () => {
    // SQL remembers an epoch; the dataset has none (Redis restarted empty).
    const remembered = { epoch: "epoch-before-the-loss" as string | null };
    const epochs = {
      read: async () => remembered.epoch,
      write: async (epoch: string) => void (remembered.epoch = epoch),
    };
    const cli = createRedisCreditGate({ redis, source, reservationTtlMs: 60_000, prefix });
    // (A commit announces a version SQL holds: the source answers version 1, so the commit is version 1.)
    await cli.committed([{ accountId: "acct_vouch", delta: 0n, balance: nanos(1000n), version: 1, settled: [] }]);
    expect(cli.isVerified()).toBe(false);

    const losses: string[] = [];
    const authz = createRedisCreditGate({
      redis,
      source,
      reservationTtlMs: 60_000,
      prefix,
      epochs,
      clock: () => 1_000,
      onDataLoss: ({ cause }) => void losses.push(cause),
    });
    expect(await authz.whenVerified(5_000)).toBe(true);
    expect(losses).toEqual(["emptied"]);
    expect(
      await authz.reserve({ accountId: "acct_vouch", decisionId: "d1", amount: nanos(1n), now: 1_000 }),
    ).toMatchObject({ reserved: false, fenced: true });
    await cli.close();
    await authz.close();
  });
});

describe("Redis credit gate: a Redis restart while SQL is down", () => {
  it("fences instead of refusing every Check until SQL is back: only the first epoch must reach SQL before use", async () => {
    const port = await freePort();
    let server = await startRedisServer(port);
    const redis = createRedisClient(`redis://127.0.0.1:${port}`, { commandTimeoutMs: 5000 });
    try {
      expect(await connectRedis(redis)).toBe(true);
      const sql = { epoch: null as string | null, down: false };
      const epochs = {
        read: async () => sql.epoch,
        write: async (epoch: string) => {
          if (sql.down) throw new Error("SQL unreachable");
          sql.epoch = epoch;
        },
      };
      const source = {
        balances: async (ids: readonly string[]) =>
          new Map(ids.map((id) => [id, { balance: nanos(1000n), version: 1 }])),
      };
      const gate = createRedisCreditGate({
        redis,
        source,
        reservationTtlMs: 60_000,
        prefix: "t:",
        epochs,
        clock: () => 1_000,
      });
      expect(
        await gate.reserve({ accountId: "acct_sql_down", decisionId: "d1", amount: nanos(1n), now: 1_000 }),
      ).toEqual({ reserved: true });
      expect(sql.epoch).not.toBeNull();

      sql.down = true;
      const closed = new Promise((resolve) => redis.once("close", resolve));
      await stopRedisServer(server);
      await closed;
      server = await startRedisServer(port);
      await new Promise((resolve) => redis.once("ready", resolve));
      expect(await gate.whenVerified(5_000)).toBe(true);
      expect(
        await gate.reserve({ accountId: "acct_sql_down", decisionId: "d2", amount: nanos(1n), now: 2_000 }),
      ).toMatchObject({ reserved: false, fenced: true });
      await gate.close();
    } finally {
      redis.disconnect();
      await stopRedisServer(server);
    }
  });
});
