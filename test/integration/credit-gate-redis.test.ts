import { expect, it } from "vitest";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { nanos } from "../../src/domain/money.js";
import { describeWith, suiteRedis } from "../support/services.js";

describeWith("redis", "Redis credit gate expiry sweep", (url) => {
  const prefix = `test:${process.pid}:${Date.now()}:`;
  const redis = suiteRedis(url, prefix);
  const source = { balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(10n ** 15n), version: 1 }])) };
  const gate = createRedisCreditGate({ redis, source, reservationTtlMs: 1, prefix });

  it("works off a backlog of expired reservations in bounded batches without taking the process down", async () => {
    // A meter down for a long time leaves many reservations to expire at once; one unbounded HMGET of them all
    // overflowed the call stack inside ioredis and crashed authz.
    const backlog = 25_000;
    const pending: Array<Promise<unknown>> = [];
    for (let i = 0; i < backlog; i++) pending.push(gate.reserve({ accountId: "acct_backlog", decisionId: `d${i}`, amount: nanos(1n), now: 0 }));
    expect((await Promise.all(pending)).every((r) => (r as { reserved: boolean }).reserved)).toBe(true);

    let charged = 0;
    for (let sweep = 0; sweep < 40; sweep++) {
      const expired = await gate.expired(10);
      if (expired.length === 0) break;
      expect(expired.length).toBeLessThanOrEqual(1000);
      charged += expired.length;
      await gate.committed([{ accountId: "acct_backlog", delta: 0n, balance: nanos(10n ** 15n), version: -1, settled: expired.map((e) => e.decisionId) }]);
    }
    expect(charged).toBe(backlog);
    expect(await gate.openReservations?.()).toBe(0);
  });
});
