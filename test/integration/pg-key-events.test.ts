import knexFactory, { type Knex } from "knex";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createPgKeyEvents, pgKeyEventsChannel, subscribePgKeyEvents } from "../../src/adapters/sql/pg-key-events.js";
import type { KeyChange } from "../../src/domain/key-events.js";
import { until } from "../support/cli.js";
import { describeWith } from "../support/services.js";

describeWith("postgres", "key changes over PostgreSQL LISTEN/NOTIFY", (url) => {
  const channel = pgKeyEventsChannel(`t_${process.pid}_${Math.random().toString(36).slice(2, 8)}`);
  let knex: Knex;
  beforeAll(() => {
    knex = knexFactory({ client: "pg", connection: url, pool: { min: 0, max: 2 } });
  });
  afterAll(() => knex.destroy());

  it("delivers a published change to a listener, and again after its connection is killed (then asks for one poll)", async () => {
    const seen: KeyChange[] = [];
    let reconnects = 0;
    const subscription = subscribePgKeyEvents({
      url,
      channel,
      onChange: (c) => seen.push(c),
      onReconnected: () => reconnects++,
      minBackoffMs: 20,
    });
    const events = createPgKeyEvents({ knex: () => knex, channel });
    try {
      await subscription.ready;
      await events.publish({ keyId: "key_1" });
      await until("the first change", () => seen.length === 1, 5_000);
      expect(seen).toEqual([{ keyId: "key_1", accountId: undefined }]);

      // Kill the listener's backend: it must reconnect, LISTEN again and report the gap so the caller polls.
      const killed = await knex.raw("select pg_terminate_backend(pid) from pg_stat_activity where query = ?", [
        `LISTEN "${channel}"`,
      ]);
      expect(killed.rows).toHaveLength(1);
      await until("the reconnect", () => reconnects === 1, 10_000);
      await events.publish({ accountId: "acct_2" });
      await until("the change after the reconnect", () => seen.length === 2, 5_000);
      expect(seen[1]).toEqual({ keyId: undefined, accountId: "acct_2" });
    } finally {
      await subscription.close();
    }
  });

  it("ignores payloads that are not key changes, and a publish failure does not throw into the caller", async () => {
    const seen: KeyChange[] = [];
    const errors: unknown[] = [];
    const subscription = subscribePgKeyEvents({
      url,
      channel,
      onChange: (c) => seen.push(c),
      onError: (e) => errors.push(e),
    });
    try {
      await subscription.ready;
      await knex.raw("select pg_notify(?, ?)", [channel, "not json"]);
      await knex.raw("select pg_notify(?, ?)", [channel, "42"]);
      await createPgKeyEvents({ knex: () => knex, channel }).publish({ keyId: "key_3" });
      await until("the valid change", () => seen.length === 1, 5_000);
      expect(seen).toEqual([{ keyId: "key_3", accountId: undefined }]);
      expect(errors).toHaveLength(1);
      const failing: unknown[] = [];
      await createPgKeyEvents({
        knex: () => {
          throw new Error("pool gone");
        },
        channel,
        onError: (e) => failing.push(e),
      }).publish({ keyId: "key_4" });
      expect(failing).toHaveLength(1);
    } finally {
      await subscription.close();
    }
  });
});
