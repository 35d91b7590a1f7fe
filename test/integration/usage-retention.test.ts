import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { migrate, openDatabase, type Database } from "../../src/adapters/sql/database.js";
import { createLedgerStore, type LedgerStore } from "../../src/adapters/sql/ledger-store.js";
import { migrationSource } from "../../src/adapters/sql/migrations.js";
import {
  DEFAULT_PARTITION,
  PARTITION_DAYS_AHEAD,
  PARTITION_MS,
  dayStart,
  listUsagePartitions,
  partitionName,
  prepareUsagePartitions,
} from "../../src/adapters/sql/usage-partitions.js";
import type { UsageEvent } from "../../src/domain/metering.js";
import { nanos, picoPerToken } from "../../src/domain/money.js";
import { describeStores, describeWith, postgresTarget, type StoreTarget } from "../support/services.js";

const DAY = PARTITION_MS;
const RETENTION = 90 * DAY;

function usageEvent(accountId: string, startMs: number, cost = 10n): UsageEvent {
  return {
    decisionId: randomUUID(),
    accountId,
    keyId: "key_r",
    model: "m",
    provider: "openai",
    prices: { input: picoPerToken(0n), cachedInput: picoPerToken(0n), output: picoPerToken(0n) },
    reservedNanos: nanos(cost),
    requestId: "r",
    status: 200,
    startMs,
    durationMs: 5,
    promptTokens: 1,
    completionTokens: 1,
    cachedTokens: 0,
    reasoningTokens: 0,
    cost: nanos(cost),
    estimated: false,
  };
}

/** A migrated store with a plan and an account to bill. */
function storeOn(makeTarget: () => StoreTarget, migrateFirst = true) {
  const ctx = {} as { target: StoreTarget; db: Database; ledger: LedgerStore; accountId: string };
  beforeAll(async () => {
    ctx.target = makeTarget();
    ctx.db = await openDatabase(ctx.target.url, { schema: ctx.target.schema });
    if (!migrateFirst) return;
    await migrate(ctx.db);
    ctx.ledger = createLedgerStore(ctx.db);
    ctx.accountId = await seedAccount(ctx.db);
  });
  afterAll(async () => {
    await ctx.db.close();
    await ctx.target.cleanup();
  });
  return ctx;
}

async function seedAccount(db: Database): Promise<string> {
  const now = Date.now();
  await db
    .knex("plans")
    .insert({
      id: "pro",
      name: "Pro",
      requests_per_minute: 1,
      tokens_per_minute: 1,
      tiers: "[]",
      created_at: now,
      updated_at: now,
    })
    .onConflict("id")
    .ignore();
  const id = `acct_${randomUUID().slice(0, 8)}`;
  await db.knex("accounts").insert({ id, name: "r", plan_id: "pro", created_at: now, updated_at: now });
  return id;
}

const usageCount = async (db: Database, table = "usage_log") =>
  Number((await db.knex(table).count({ n: "*" }).first())!.n);

describeStores("usage retention", (makeTarget) => {
  const ctx = storeOn(makeTarget);

  it("prune removes usage older than the retention and keeps the rest; the ledger and daily rollups stay", async () => {
    const now = Date.now();
    const old = usageEvent(ctx.accountId, now - RETENTION - 3 * DAY);
    const recent = usageEvent(ctx.accountId, now - DAY);
    await ctx.ledger.commit({ events: [old, recent], expired: [], deadLetters: [], now });
    expect(await usageCount(ctx.db)).toBe(2);

    const pruned = await ctx.ledger.prune(now - RETENTION);
    expect(pruned.usage).toBe(1);
    const left = await ctx.db.knex("usage_log").select("decision_id");
    expect(left.map((r) => r.decision_id)).toEqual([recent.decisionId]);
    expect((await ctx.ledger.entries(ctx.accountId)).filter((e) => e.kind === "usage_debit")).toHaveLength(2);
    expect(await ctx.ledger.daily({ accountId: ctx.accountId })).toHaveLength(2);
  });
});

describeWith("postgres", "usage_log partitions [postgres]", (url) => {
  const ctx = storeOn(() => postgresTarget(url));
  const days = async () => (await listUsagePartitions(ctx.db.knex)).filter((p) => !p.isDefault && p.from !== undefined);

  it("usage_log is partitioned by UTC day, with a default partition and the days ahead made by the migration", async () => {
    const partitioned = await ctx.db.knex.raw(
      "select count(*)::int as n from pg_partitioned_table where partrelid = 'usage_log'::regclass",
    );
    expect(partitioned.rows[0].n).toBe(1);
    const all = await listUsagePartitions(ctx.db.knex);
    expect(all.filter((p) => p.isDefault).map((p) => p.name)).toEqual([DEFAULT_PARTITION]);
    const today = dayStart(Date.now());
    for (let d = 0; d <= PARTITION_DAYS_AHEAD; d++) {
      const start = today + d * DAY;
      expect(all).toContainEqual({ name: partitionName(start), from: start, to: start + DAY, isDefault: false });
    }
  });

  it("a row lands in its day's partition; a row of a day with no partition waits in the default one and moves when the day is made", async () => {
    const now = Date.now();
    const today = usageEvent(ctx.accountId, now);
    const later = now + 30 * DAY;
    const future = usageEvent(ctx.accountId, later);
    await ctx.ledger.commit({ events: [today, future], expired: [], deadLetters: [], now });
    const inToday = await ctx.db.knex(partitionName(dayStart(now))).where({ decision_id: today.decisionId });
    expect(inToday).toHaveLength(1);
    expect(await ctx.db.knex(DEFAULT_PARTITION).where({ decision_id: future.decisionId })).toHaveLength(1);

    expect(await prepareUsagePartitions(ctx.db.knex, later)).toBe(PARTITION_DAYS_AHEAD + 1);
    expect(await ctx.db.knex(DEFAULT_PARTITION).where({ decision_id: future.decisionId })).toHaveLength(0);
    expect(await ctx.db.knex(partitionName(dayStart(later))).where({ decision_id: future.decisionId })).toHaveLength(1);
    expect(await ctx.db.knex("usage_log").where({ decision_id: future.decisionId })).toHaveLength(1);
    // Made once: a second round finds every day there.
    expect(await prepareUsagePartitions(ctx.db.knex, later)).toBe(0);
  });

  it("meters sharing the database make each day once when they prepare the same days at the same time", async () => {
    const second = await openDatabase(url, { schema: ctx.target.schema });
    try {
      const later = Date.now() + 100 * DAY;
      const made = await Promise.all([
        prepareUsagePartitions(ctx.db.knex, later),
        prepareUsagePartitions(second.knex, later),
        prepareUsagePartitions(ctx.db.knex, later),
      ]);
      expect(made.reduce((a, b) => a + b, 0)).toBe(PARTITION_DAYS_AHEAD + 1);
    } finally {
      await second.close();
    }
  });

  it("retention drops whole expired day partitions, deletes nothing row by row in them, and keeps the newer days", async () => {
    const now = Date.now();
    const past = now - RETENTION - 10 * DAY;
    await prepareUsagePartitions(ctx.db.knex, past); // days past .. past + 7, all expired by now - RETENTION
    const expiredEvents = [usageEvent(ctx.accountId, past), usageEvent(ctx.accountId, past + 2 * DAY)];
    const kept = usageEvent(ctx.accountId, now);
    await ctx.ledger.commit({ events: [...expiredEvents, kept], expired: [], deadLetters: [], now });
    const expiredDays = (await days()).filter((p) => p.to! <= now - RETENTION);
    expect(expiredDays.map((p) => p.name)).toContain(partitionName(dayStart(past)));

    await ctx.ledger.prune(now - RETENTION);
    // Dropped, not emptied: the expired days' tables are gone.
    const left = (await days()).map((p) => p.name);
    for (const p of expiredDays) expect(left).not.toContain(p.name);
    expect(left).toContain(partitionName(dayStart(now)));
    // Partitions for the days ahead of today exist after each round.
    expect(left).toContain(partitionName(dayStart(now) + PARTITION_DAYS_AHEAD * DAY));
    expect(
      await ctx.db.knex("usage_log").whereIn(
        "decision_id",
        expiredEvents.map((e) => e.decisionId),
      ),
    ).toHaveLength(0);
    expect(await ctx.db.knex("usage_log").where({ decision_id: kept.decisionId })).toHaveLength(1);
    // The ledger keeps every entry.
    const debits = (await ctx.ledger.entries(ctx.accountId)).filter((e) => e.kind === "usage_debit");
    expect(debits.map((e) => e.decisionId)).toEqual(
      expect.arrayContaining([...expiredEvents, kept].map((e) => e.decisionId)),
    );
  });
});

describeWith("postgres", "migration 0012 on a database with usage [postgres]", (url) => {
  const ctx = storeOn(() => postgresTarget(url), false);

  it("keeps every existing usage row, readable and retained, when usage_log becomes partitioned", async () => {
    // Migrate up to the one before 0012, write usage the old way, then migrate the rest.
    for (;;) {
      const [, pending] = (await ctx.db.knex.migrate.list({ migrationSource })) as [unknown[], Array<{ name: string }>];
      if (pending.length === 0 || pending[0]!.name === "0012_usage_log_partitions") break;
      await ctx.db.knex.migrate.up({ migrationSource });
    }
    const accountId = await seedAccount(ctx.db);
    const now = Date.now();
    const row = (time: number) => ({
      decision_id: randomUUID(),
      request_id: "r",
      time,
      account_id: accountId,
      key_id: "key_r",
      model: "m",
      provider: "openai",
      status: 200,
      prompt_tokens: 1,
      completion_tokens: 1,
      cached_tokens: 0,
      reasoning_tokens: 0,
      cost: 10,
      estimated: false,
      duration_ms: 5,
    });
    const rows = [row(now - RETENTION - DAY), row(now - DAY), row(now)];
    await ctx.db.knex("usage_log").insert(rows);

    await migrate(ctx.db);
    const ledger = createLedgerStore(ctx.db);
    expect((await ledger.usage({ accountId })).map((u) => u.decisionId).sort()).toEqual(
      rows.map((r) => r.decision_id).sort(),
    );
    // New rows go in beside them, exactly once.
    const next = usageEvent(accountId, now);
    await ledger.commit({ events: [next, next], expired: [], deadLetters: [], now });
    expect(await usageCount(ctx.db)).toBe(4);
    // Retention still removes the old table's expired rows (row by row until the whole of it has expired).
    expect((await ledger.prune(now - RETENTION)).usage).toBe(1);
    expect(await usageCount(ctx.db)).toBe(3);
  });
});
