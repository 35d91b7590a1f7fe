import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { migrate, openDatabase, type Database } from "../../src/adapters/sql/database.js";
import { arrayLiteral, createLedgerStore, type LedgerStore } from "../../src/adapters/sql/ledger-store.js";
import type { UsageEvent } from "../../src/domain/metering.js";
import { nanos, picoPerToken } from "../../src/domain/money.js";
import { describeStores, describeWith, postgresTarget } from "../support/services.js";

const ACCOUNTS = 20;
const DECISIONS = 3000;
const TOP_UP = 1_000_000_000_000n;

/** A deterministic generator, so a failure replays. */
function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

function usage(accountId: string, decisionId: string, cost: bigint, startMs: number): UsageEvent {
  return {
    decisionId,
    accountId,
    keyId: `key_${accountId}`,
    model: "m",
    provider: "openai",
    prices: { input: picoPerToken(0n), cachedInput: picoPerToken(0n), output: picoPerToken(0n) },
    reservedNanos: nanos(cost * 2n),
    requestId: "r",
    status: 200,
    startMs,
    durationMs: 5,
    promptTokens: 3,
    completionTokens: 2,
    cachedTokens: 0,
    reasoningTokens: 0,
    cost: nanos(cost),
    estimated: false,
  };
}

describeStores("group commit under concurrency", (makeTarget) => {
  const ctx = {} as { cleanup(): Promise<void>; dbs: Database[]; ledgers: LedgerStore[]; accounts: string[] };
  beforeAll(async () => {
    const target = makeTarget();
    // Two handles on one database: two meters (or a meter and reconcile) committing at once. SQLite gets one handle
    // (its one writer): a second connection's write transaction can fail with "database is locked" under this load,
    // before and after the PostgreSQL write path changed.
    const first = await openDatabase(target.url, { schema: target.schema });
    ctx.dbs = [first, target.name === "sqlite" ? first : await openDatabase(target.url, { schema: target.schema })];
    await migrate(ctx.dbs[0]!);
    ctx.ledgers = ctx.dbs.map(createLedgerStore);
    ctx.cleanup = async () => {
      for (const db of new Set(ctx.dbs)) await db.close();
      await target.cleanup();
    };
    const now = Date.now();
    const k = ctx.dbs[0]!.knex;
    await k("plans").insert({
      id: "pro",
      name: "Pro",
      requests_per_minute: 1,
      tokens_per_minute: 1,
      tiers: "[]",
      created_at: now,
      updated_at: now,
    });
    ctx.accounts = Array.from({ length: ACCOUNTS }, (_, i) => `acct_gc${i}`);
    for (const id of ctx.accounts) {
      await k("accounts").insert({ id, name: id, plan_id: "pro", created_at: now, updated_at: now });
      await ctx.ledgers[0]!.topUp({ accountId: id, amount: nanos(TOP_UP), feeBps: 2500, now });
    }
  });
  afterAll(() => ctx.cleanup());

  it("large batches with duplicates and expiries, committed at once from two handles, bill each decision exactly once", async () => {
    const next = random(7);
    const now = Date.now();
    const decisions = Array.from({ length: DECISIONS }, (_, i) => ({
      id: randomUUID(),
      accountId: ctx.accounts[i % ACCOUNTS]!,
      cost: BigInt(1 + Math.floor(next() * 1_000_000)),
      startMs: now - Math.floor(next() * 3) * 86_400_000,
      expires: next() < 0.2,
    }));
    // Every decision delivered one to three times, shuffled over six batches; the expiries of a fifth of them race
    // their deliveries in batches of their own.
    const deliveries = decisions.flatMap((d) =>
      Array.from({ length: 1 + Math.floor(next() * 3) }, () => usage(d.accountId, d.id, d.cost, d.startMs)),
    );
    for (let i = deliveries.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [deliveries[i], deliveries[j]] = [deliveries[j]!, deliveries[i]!];
    }
    const size = Math.ceil(deliveries.length / 6);
    const batches = Array.from({ length: 6 }, (_, b) => deliveries.slice(b * size, (b + 1) * size));
    const expiries = decisions
      .filter((d) => d.expires)
      .map((d) => ({ accountId: d.accountId, decisionId: d.id, amount: nanos(d.cost * 2n) }));
    const half = Math.ceil(expiries.length / 2);
    const results = await Promise.all([
      ...batches.map((events, b) => ctx.ledgers[b % 2]!.commit({ events, expired: [], deadLetters: [], now })),
      ctx.ledgers[0]!.commit({ events: [], expired: expiries.slice(0, half), deadLetters: [], now }),
      ctx.ledgers[1]!.commit({ events: [], expired: expiries.slice(half), deadLetters: [], now }),
    ]);
    const billed = results.reduce((s, r) => s + r.billed, 0);
    const alreadyBilled = results.reduce((s, r) => s + r.alreadyBilled, 0);
    expect(billed).toBe(DECISIONS);
    expect(billed + alreadyBilled).toBe(deliveries.length);
    expect(new Set(results.flatMap((r) => r.billedDecisions)).size).toBe(DECISIONS);

    const k = ctx.dbs[0]!.knex;
    const costOf = new Map<string, bigint>(decisions.map((d) => [d.id, d.cost]));
    for (const accountId of ctx.accounts) {
      const mine = decisions.filter((d) => d.accountId === accountId);
      const spent = mine.reduce((s, d) => s + d.cost, 0n);
      const balance = (await ctx.ledgers[0]!.balance(accountId)).balance;
      expect(balance).toBe(TOP_UP - spent);
      expect(await ctx.ledgers[0]!.entriesTotal(accountId)).toBe(balance);
      // Each decision nets exactly −cost: a debit, or an expired charge and its correction.
      const net = new Map<string, bigint>();
      for (const e of await ctx.ledgers[0]!.entries(accountId))
        if (e.kind !== "top_up" && e.kind !== "platform_fee")
          net.set(e.decisionId, (net.get(e.decisionId) ?? 0n) + e.amount);
      expect(net.size).toBe(mine.length);
      for (const [id, amount] of net) expect(amount).toBe(-costOf.get(id)!);
      // One usage row per decision, and the daily rollups add up to the same requests and cost.
      const daily = await ctx.ledgers[0]!.daily({ accountId });
      expect(daily.reduce((s, d) => s + d.requests, 0)).toBe(mine.length);
      expect(daily.reduce((s, d) => s + BigInt(d.cost), 0n)).toBe(spent);
    }
    const rows = await k("usage_log").select("decision_id");
    expect(rows).toHaveLength(DECISIONS);
    expect(new Set(rows.map((r) => r.decision_id)).size).toBe(DECISIONS);
  });
});

describeWith("postgres", "array literals [postgres]", (url) => {
  it("arrayLiteral round-trips any text through PostgreSQL, and numbers, booleans and nulls", async () => {
    const db = await openDatabase(url);
    try {
      const texts = ["", "NULL", "null", 'a"b', "a\\b", "\\", '"', "{x,y}", " spaced ", "é€😀", "a,b", "'"];
      const back = await db.knex.raw("select unnest(?::text[]) as v", [arrayLiteral(texts)]);
      expect(back.rows.map((r: { v: string }) => r.v)).toEqual(texts);
      const mixed = await db.knex.raw("select ?::bigint[] as n, ?::boolean[] as b, ?::text[] as t", [
        arrayLiteral([1n, -2n, 9_007_199_254_740_993n]),
        arrayLiteral([true, false]),
        arrayLiteral([null, "x"]),
      ]);
      expect(mixed.rows[0]).toEqual({ n: ["1", "-2", "9007199254740993"], b: [true, false], t: [null, "x"] });
    } finally {
      await db.close();
    }
  });
});

describeWith("postgres", "group commit refused by a unique key [postgres]", (url) => {
  it("a row the unique keys refuse fails the whole group commit (nothing written); the retry bills it exactly once", async () => {
    const target = postgresTarget(url);
    const db = await openDatabase(target.url, { schema: target.schema });
    try {
      await migrate(db);
      const now = Date.now();
      await db.knex("plans").insert({
        id: "pro",
        name: "Pro",
        requests_per_minute: 1,
        tokens_per_minute: 1,
        tiers: "[]",
        created_at: now,
        updated_at: now,
      });
      await db.knex("accounts").insert({ id: "acct_u", name: "u", plan_id: "pro", created_at: now, updated_at: now });
      const ledger = createLedgerStore(db);
      await ledger.topUp({ accountId: "acct_u", amount: nanos(1_000_000n), feeBps: 0, now });
      const events = Array.from({ length: 5 }, () => usage("acct_u", randomUUID(), 100n, now));
      // A usage row nothing billed (written behind the ledger's back): the batch's write must not half-happen.
      const decision_id = events[2]!.decisionId;
      await db.knex("usage_log").insert({
        decision_id,
        time: now,
        request_id: "r",
        account_id: "acct_u",
        key_id: "k",
        model: "m",
        provider: "openai",
        status: 200,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
        reasoning_tokens: 0,
        cost: 0,
        estimated: false,
        duration_ms: 0,
      });
      await expect(ledger.commit({ events, expired: [], deadLetters: [], now })).rejects.toThrow(/unique/);
      expect((await ledger.entries("acct_u")).filter((e) => e.kind === "usage_debit")).toHaveLength(0);
      expect((await ledger.balance("acct_u")).balance).toBe(1_000_000n);
      expect(await ledger.daily({ accountId: "acct_u" })).toHaveLength(0);

      await db.knex("usage_log").where({ decision_id }).delete();
      const retried = await ledger.commit({ events: [...events, ...events], expired: [], deadLetters: [], now });
      expect([retried.billed, retried.alreadyBilled]).toEqual([5, 5]);
      expect((await ledger.balance("acct_u")).balance).toBe(1_000_000n - 500n);
      expect(await db.knex("usage_log").count({ n: "*" }).first()).toEqual({ n: "5" });
    } finally {
      await db.close();
      await target.cleanup();
    }
  });
});
