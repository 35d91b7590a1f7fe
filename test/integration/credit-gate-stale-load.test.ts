// Review: a Redis balance load that read SQL before a meter commit, and would write after the commit script found no
// balance to update (it expired: balance_ttl) and released the settled reservation, must not bring the older balance
// back with the reservation gone (the settled cost would be neither in the balance nor held: spent twice, balance and
// budgets overrun until the next commit or the TTL). The commit leaves its version in bud; the load re-reads SQL.
import { expect, it } from "vitest";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { nanos } from "../../src/domain/money.js";
import { describeWith, suiteRedis } from "../support/services.js";

describeWith("redis", "Redis credit gate: a load racing a commit", (url) => {
  const prefix = `test:${process.pid}:${Date.now()}:stale:`;
  const redis = suiteRedis(url, prefix);

  it("a balance read before a commit is not loaded after the commit released its reservation", async () => {
    // SQL: balance 100 at version 1; after the meter's commit, 0 at version 2 (the request cost 100).
    let sql = { balance: nanos(100n), version: 1 };
    let pause: ((go: () => void) => void) | undefined;
    const source = {
      balances: async (ids: readonly string[]) => {
        const read = { ...sql };
        if (pause) await new Promise<void>((go) => pause!(go));
        return new Map(ids.map((id) => [id, read]));
      },
    };
    const gate = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix });
    const account = "acct_stale";
    const now = Date.now();
    expect((await gate.reserve({ accountId: account, decisionId: "d1", amount: nanos(100n), now })).reserved).toBe(
      true,
    );
    // The cached balance expires (balance_ttl) while d1 is in flight.
    await redis.del(`${prefix}{${account}}:bal`);
    // A Check reads SQL (still version 1) ...
    let resume!: () => void;
    const reading = new Promise<void>((r) => {
      pause = (go) => {
        resume = go;
        r();
      };
    });
    const second = gate.reserve({ accountId: account, decisionId: "d2", amount: nanos(100n), now: now + 1 });
    await reading;
    pause = undefined;
    // ... the meter commits d1 (SQL version 2, balance 0) and tells Redis, which has no balance to update ...
    sql = { balance: nanos(0n), version: 2 };
    await gate.committed([{ accountId: account, delta: -100n, balance: nanos(0n), version: 2, settled: ["d1"] }]);
    // ... then the Check's load lands with version 1.
    resume();
    const outcome = await second;
    // The account has nothing left: d2 must not be admitted.
    expect(outcome.reserved).toBe(false);
  });
});
