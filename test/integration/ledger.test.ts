import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryCreditGate } from "../../src/adapters/memory/credit-gate.js";
import { createLedgerStore, type LedgerStore } from "../../src/adapters/sql/ledger-store.js";
import { migrate, openDatabase, type Database } from "../../src/adapters/sql/database.js";
import { classify, type UsageEvent } from "../../src/domain/metering.js";
import { basisPoints, nanos, picoPerToken, requestCost } from "../../src/domain/money.js";
import { describeStores, type StoreTarget } from "../support/services.js";
import { authzMetadata, usageMetadata } from "../support/als-client.js";

let accountSeq = 0;

/** Opens a fresh store target with the schema migrated; each describeStores run gets its own. */
function ledgerOn(makeTarget: () => StoreTarget) {
  const ctx = {} as { target: StoreTarget; db: Database; ledger: LedgerStore; newAccount(): Promise<string> };
  beforeAll(async () => {
    ctx.target = makeTarget();
    ctx.db = await openDatabase(ctx.target.url, { schema: ctx.target.schema });
    await migrate(ctx.db);
    ctx.ledger = createLedgerStore(ctx.db);
    const now = Date.now();
    await ctx.db.knex("plans").insert({
      id: "pro",
      name: "Pro",
      requests_per_minute: 1,
      tokens_per_minute: 1,
      tiers: "[]",
      created_at: now,
      updated_at: now,
    });
  });
  afterAll(async () => {
    await ctx.db.close();
    await ctx.target.cleanup();
  });
  ctx.newAccount = async () => {
    const id = `acct_test${++accountSeq}`;
    const now = Date.now();
    await ctx.db.knex("accounts").insert({ id, name: "t", plan_id: "pro", created_at: now, updated_at: now });
    return id;
  };
  return ctx;
}

function event(accountId: string, decisionId: string, cost: bigint, reserved = cost): UsageEvent {
  return {
    decisionId,
    accountId,
    keyId: "key_t",
    model: "m",
    provider: "openai",
    prices: { input: picoPerToken(0n), cachedInput: picoPerToken(0n), output: picoPerToken(0n) },
    reservedNanos: nanos(reserved),
    requestId: "r",
    status: 200,
    startMs: Date.UTC(2025, 0, 1),
    durationMs: 5,
    promptTokens: 1,
    completionTokens: 1,
    cachedTokens: 0,
    reasoningTokens: 0,
    cost: nanos(cost),
    estimated: false,
  };
}

const price = fc.bigInt({ min: 0n, max: 200_000_000n }); // up to 200 USD per million tokens

describe("pricing (property)", () => {
  it("each request costs its exact rational cost rounded up once to a nano-USD", () => {
    fc.assert(
      fc.property(
        price,
        price,
        price,
        fc.nat({ max: 2_000_000 }),
        fc.nat({ max: 2_000_000 }),
        fc.nat({ max: 200_000 }),
        (pi, pc, po, prompt, cachedRaw, completion) => {
          const cached = Math.min(cachedRaw, prompt);
          const classified = classify({
            logType: "DownstreamEnd",
            requestId: "r",
            status: 200,
            startMs: 0,
            durationMs: 0,
            authz: authzMetadata({
              decisionId: "d",
              accountId: "a",
              prices: { input: pi, cachedInput: pc, output: po },
            }),
            usage: usageMetadata({ prompt, completion, cached, reasoning: Math.floor(completion / 2) }),
          });
          expect(classified.kind).toBe("bill");
          const cost = classified.kind === "bill" ? classified.event.cost : -1n;
          // Exact rational cost in USD = picos / 10^12; in nano-USD = picos / 1000. The charge is its ceiling.
          const picos = BigInt(prompt - cached) * pi + BigInt(cached) * pc + BigInt(completion) * po;
          expect(cost * 1000n >= picos).toBe(true);
          expect((cost - 1n) * 1000n < picos).toBe(true);
          // Reasoning tokens never add to the bill: they are inside completion_tokens.
          expect(cost).toBe(
            requestCost(
              { promptTokens: prompt, cachedTokens: cached, completionTokens: completion },
              { input: picoPerToken(pi), cachedInput: picoPerToken(pc), output: picoPerToken(po) },
            ),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it("the platform fee is the basis-point share rounded up", () => {
    expect(basisPoints(nanos(10_000_000_000n), 2500)).toBe(2_500_000_000n);
    expect(basisPoints(nanos(1n), 2500)).toBe(1n);
    expect(basisPoints(nanos(3n), 0)).toBe(0n);
  });
});

describeStores("ledger", (makeTarget) => {
  const ctx = ledgerOn(makeTarget);

  describe("ledger (property): replays, expiries and late settlements", () => {
    it("the sum of an account's ledger entries equals its balance, and each decision nets exactly −cost", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              cost: fc.bigInt({ min: 0n, max: 5_000_000_000n }),
              extra: fc.bigInt({ min: 0n, max: 1_000_000n }),
              expireFirst: fc.boolean(),
              deliveries: fc.integer({ min: 1, max: 3 }),
            }),
            { minLength: 1, maxLength: 15 },
          ),
          fc.array(fc.bigInt({ min: 1n, max: 50_000_000_000n }), { minLength: 1, maxLength: 3 }),
          async (requests, topUps) => {
            const accountId = await ctx.newAccount();
            for (const amount of topUps)
              await ctx.ledger.topUp({ accountId, amount: nanos(amount), feeBps: 2500, now: 1 });
            const decisions = requests.map((r) => ({ ...r, id: randomUUID() }));
            // Some reservations expire (worst case = cost + extra) before their entry arrives.
            await ctx.ledger.commit({
              events: [],
              expired: decisions
                .filter((d) => d.expireFirst)
                .map((d) => ({ accountId, decisionId: d.id, amount: nanos(d.cost + d.extra) })),
              deadLetters: [],
              now: 2,
            });
            // Deliveries in batches, duplicates within and across batches; then an expiry sweep that must do nothing.
            const deliveries = decisions.flatMap((d) =>
              Array.from({ length: d.deliveries }, () => event(accountId, d.id, d.cost, d.cost + d.extra)),
            );
            for (let i = 0; i < deliveries.length; i += 4)
              await ctx.ledger.commit({ events: deliveries.slice(i, i + 4), expired: [], deadLetters: [], now: 3 });
            await ctx.ledger.commit({
              events: [],
              expired: decisions.map((d) => ({ accountId, decisionId: d.id, amount: nanos(d.cost + d.extra) })),
              deadLetters: [],
              now: 4,
            });

            const balance = (await ctx.ledger.balance(accountId)).balance;
            expect(await ctx.ledger.entriesTotal(accountId)).toBe(balance);
            const spent = decisions.reduce((s, d) => s + d.cost, 0n);
            expect(balance).toBe(topUps.reduce((s, a) => s + a, 0n) - spent);
            const entries = await ctx.ledger.entries(accountId);
            for (const d of decisions) {
              const mine = entries.filter((e) => e.decisionId === d.id);
              expect(mine.reduce((s, e) => s + e.amount, 0n)).toBe(-d.cost);
              expect(mine.map((e) => e.kind).sort()).toEqual(
                d.expireFirst ? ["adjustment", "expired_reservation_charge"] : ["usage_debit"],
              );
            }
            const fees = entries.filter((e) => e.kind === "platform_fee").reduce((s, e) => s + e.amount, 0n);
            expect(fees).toBe(topUps.reduce((s, a) => s + basisPoints(nanos(a), 2500), 0n));
          },
        ),
        { numRuns: 40 },
      );
    });
  });

  describe("reservation expiry (in-process gate)", () => {
    it("an unsettled reservation expires into an estimated worst-case charge; a late settlement corrects it to the true cost", async () => {
      const accountId = await ctx.newAccount();
      await ctx.ledger.topUp({ accountId, amount: nanos(1_000n), feeBps: 2500, now: 1 });
      let now = 1_000;
      const gate = createMemoryCreditGate({ source: ctx.ledger, reservationTtlMs: 600_000 });
      expect(await gate.reserve({ accountId, decisionId: "d1", amount: nanos(700n), now })).toEqual({ reserved: true });
      expect(await gate.reserve({ accountId, decisionId: "d2", amount: nanos(400n), now })).toEqual({
        reserved: false,
        available: 300n,
      });
      expect(await gate.expired(now + 599_999)).toEqual([]);
      now += 600_000;
      const expired = await gate.expired(now);
      expect(expired).toEqual([{ accountId, decisionId: "d1", amount: 700n }]);
      const charged = await ctx.ledger.commit({ events: [], expired, deadLetters: [], now });
      await gate.committed(charged.changes);
      expect(charged.expired).toBe(1);
      expect((await ctx.ledger.entries(accountId)).at(-1)).toMatchObject({
        kind: "expired_reservation_charge",
        amount: -700n,
        estimated: true,
      });
      // The hold is gone and the charge is in the balance: 300 left.
      expect(await gate.reserve({ accountId, decisionId: "d3", amount: nanos(301n), now })).toEqual({
        reserved: false,
        available: 300n,
      });

      const late = await ctx.ledger.commit({
        events: [event(accountId, "d1", 123n, 700n)],
        expired: [],
        deadLetters: [],
        now,
      });
      await gate.committed(late.changes);
      expect(late.billed).toBe(1);
      expect((await ctx.ledger.entries(accountId)).at(-1)).toMatchObject({ kind: "adjustment", amount: 577n });
      expect((await ctx.ledger.balance(accountId)).balance).toBe(1_000n - 123n);
      expect(await gate.reserve({ accountId, decisionId: "d3", amount: nanos(877n), now })).toEqual({ reserved: true });
      // A replay of the late entry changes nothing.
      expect(
        (await ctx.ledger.commit({ events: [event(accountId, "d1", 123n, 700n)], expired: [], deadLetters: [], now }))
          .alreadyBilled,
      ).toBe(1);
      expect((await ctx.ledger.balance(accountId)).balance).toBe(877n);
    });
  });
});
