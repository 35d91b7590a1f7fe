// The hold script decides a decision that every check simply lets through on figures it read once and keeps in Lua,
// queueing its writes (quota.ts, fast_hold); everything else goes step by step. Both must decide alike and leave the
// keys alike. A key with a daily requests quota that never binds always goes step by step, so the same random
// sequence of Checks (batches of 1–40, refusals of every kind, retries, window pruning, budgets) runs twice: without
// daily quotas (queued where it can be) and with one (step by step), and every outcome and every key must agree.
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { HoldOutcome, HoldRequest } from "../../src/domain/admission.js";
import type { BudgetHold } from "../../src/domain/budgets.js";
import type { BalanceSource } from "../../src/domain/metering.js";
import { nanos } from "../../src/domain/money.js";
import { redisAdmission, usePrivateRedis } from "../support/credit-stack.js";
import { describeWith, suiteRedis } from "../support/services.js";

const T0 = Date.UTC(2026, 5, 1, 8);
const BALANCE = 1_000n;
const source = {
  balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(BALANCE), version: 1 }])),
};

/** mulberry32: the same sequence for a seed, so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Shape = Omit<HoldRequest, "keyId" | "accountId">;

/** Batches of Checks for one key: each batch arrives together (one script run per 32). */
function sequence(seed: number): Shape[][] {
  const rand = random(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const batches: Shape[][] = [];
  const decided: string[] = [];
  let now = T0;
  // Small amounts leave the limits to refuse; larger ones run out of credit in the middle of a batch.
  const amountMax = seed % 2 === 0 ? 12 : 40;
  for (let b = 0; b < 14; b++) {
    now += rand() < 0.2 ? 61_000 : int(0, 20_000);
    const key = { scope: "key", field: "kb", limit: nanos(BigInt(int(150, 600))) };
    const account = { scope: "account", field: "ab", limit: nanos(BigInt(int(300, 900))) };
    const budgets = [undefined, [key], [account], [key, account]][int(0, 3)] as BudgetHold[] | undefined;
    // Now and then a batch whose Checks lie far apart in time, so one ages out of the window before another.
    const apart = rand() < 0.15;
    const batch: Shape[] = [];
    for (let i = int(1, 40); i > 0; i--) {
      const retry = decided.length > 0 && rand() < 0.05;
      const decisionId = retry ? decided[int(0, decided.length - 1)]! : `d${seed}-${b}-${i}-${int(0, 1e9)}`;
      decided.push(decisionId);
      batch.push({
        decisionId,
        requestsPerMinute: 45,
        tokensPerMinute: 2_000,
        tokens: int(1, 90),
        amount: nanos(BigInt(rand() < 0.05 ? int(200, 1_200) : int(1, amountMax))),
        now: now + (apart ? int(0, 90_000) : int(0, 3)),
        ...(budgets ? { budgets } : {}),
      });
    }
    batches.push(batch);
  }
  return batches;
}

/** An outcome without today's figures (only the step-by-step run has a daily quota to report). */
function comparable(outcome: HoldOutcome): unknown {
  return JSON.parse(
    JSON.stringify(outcome, (k, v) => (/day/i.test(k) ? undefined : typeof v === "bigint" ? `${v}n` : v)),
  );
}

describeWith("redis", "hold script: queued holds decide and write as step-by-step ones", (url) => {
  const prefix = `test_qbatch_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);

  /** Every key of the account's tag but today's and the requests in flight, with its contents (no TTLs). */
  async function keysOf(accountId: string): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const name of (await redis.keys(`${prefix}*{${accountId}}*`)).sort()) {
      const short = name.slice(name.indexOf("}:") + 2);
      if (/:day:|:conc/.test(short)) continue;
      const type = await redis.type(name);
      if (type === "hash") out[short] = await redis.hgetall(name);
      else if (type === "zset") out[short] = await redis.zrange(name, "0", "-1", "WITHSCORES");
      else out[short] = await redis.get(name);
    }
    return out;
  }

  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) {
    it(`seed ${seed}: the same outcomes and the same keys`, async () => {
      const { quota } = redisAdmission(redis, prefix, source, 70);
      const batches = sequence(seed);
      const run = async (extra: Partial<HoldRequest>) => {
        const who = { keyId: "key_q", accountId: `acct_${randomUUID().slice(0, 8)}` };
        const outcomes: unknown[] = [];
        for (const batch of batches) {
          const settled = await Promise.all(batch.map((r) => quota.hold({ ...r, ...who, ...extra })));
          outcomes.push(...settled.map(comparable));
        }
        return { outcomes, keys: await keysOf(who.accountId) };
      };
      const queued = await run({});
      const stepwise = await run({ requestsPerDay: 1_000_000_000 });
      const kinds = queued.outcomes.map((o) => Object.keys(o as object).find((k) => k !== "held") ?? "held");
      // The sequence exercises what it is for: holds, and refusals of several kinds among them.
      expect(new Set(kinds).size).toBeGreaterThanOrEqual(3);
      expect(queued.outcomes).toEqual(stepwise.outcomes);
      expect(queued.keys).toEqual(stepwise.keys);
    });
  }
});

// A run sends the limits once for all its decisions: Checks of one key that arrive together while its limits change
// (an operator's change applied mid-turn) must each be decided by their own. Each request gets its own budget array,
// as admission builds them, so equal budgets are equal by content only.
describeWith("redis", "hold script: Checks of one turn with different limits", (url) => {
  const prefix = `test_qlimits_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  const budget = (scope: "key" | "account", field: string, limit: bigint) =>
    ({ scope, field, limit: nanos(limit) }) as BudgetHold;

  /**
   * Ten Checks of one key arriving together, those where `changed(i)` is true (by default the last five) with `limits`
   * applied; what each was refused by. The account's balance is loaded by one Check first (which holds 10 of credit
   * and of each budget), so the turn's runs are decided in the order sent.
   */
  async function outcomes(
    limits: (i: number) => Partial<HoldRequest>,
    { changed = (i: number) => i >= 5, from = source }: { changed?: (i: number) => boolean; from?: BalanceSource } = {},
  ): Promise<string[]> {
    const { quota } = redisAdmission(redis, prefix, from);
    const who = { keyId: "key_l", accountId: `acct_${randomUUID().slice(0, 8)}` };
    const hold = (i: number): HoldRequest => ({
      ...who,
      decisionId: `d${i}`,
      requestsPerMinute: 100,
      tokensPerMinute: 10_000,
      tokens: 1,
      amount: nanos(10n),
      now: T0 + 1,
      budgets: [budget("key", "kb", 1_000n), budget("account", "ab", 1_000n)],
      ...(changed(i) ? limits(i) : {}),
    });
    const loaded = await quota.hold({ ...hold(0), decisionId: "warm", now: T0 - 120_000 });
    expect(loaded.held).toBe(true);
    const settled = await Promise.all(Array.from({ length: 10 }, (_, i) => quota.hold(hold(i))));
    return settled.map((o) =>
      o.held ? "held" : "rate" in o ? o.rate.dimension : "budget" in o ? `budget:${o.budget.scope}` : "credit",
    );
  }
  const held = (n: number) => Array<string>(n).fill("held");
  const refused = (n: number, by: string) => Array<string>(n).fill(by);

  it("a lower requests-per-minute limit refuses the Checks after the change", async () => {
    expect(await outcomes(() => ({ requestsPerMinute: 6 }))).toEqual([...held(6), ...refused(4, "requests")]);
  });

  it("a lower tokens-per-minute limit refuses the Checks after the change", async () => {
    expect(await outcomes(() => ({ tokensPerMinute: 7 }))).toEqual([...held(7), ...refused(3, "tokens")]);
  });

  // Daily quotas and requests in flight count the Checks decided while they are set (the first five were not).
  it("a requests-per-day quota set mid-turn refuses by it", async () => {
    expect((await outcomes(() => ({ requestsPerDay: 2 }))).slice(5)).toEqual([
      ...held(2),
      ...refused(3, "requests_day"),
    ]);
  });

  it("a tokens-per-day quota set mid-turn refuses by it", async () => {
    expect((await outcomes(() => ({ tokensPerDay: 3 }))).slice(5)).toEqual([...held(3), ...refused(2, "tokens_day")]);
  });

  it("a concurrency limit set mid-turn refuses by it", async () => {
    expect((await outcomes(() => ({ maxConcurrency: 2 }))).slice(5)).toEqual([
      ...held(2),
      ...refused(3, "concurrency"),
    ]);
  });

  it("a lower key or account budget limit refuses by it", async () => {
    const key = await outcomes(() => ({ budgets: [budget("key", "kb", 75n), budget("account", "ab", 1_000n)] }));
    expect(key).toEqual([...held(6), ...refused(4, "budget:key")]);
    const account = await outcomes(() => ({ budgets: [budget("key", "kb", 1_000n), budget("account", "ab", 85n)] }));
    expect(account).toEqual([...held(7), ...refused(3, "budget:account")]);
  });

  it("a budget of another period (field) is its own", async () => {
    // 40 is spent in period kb, nothing yet in kb-next; the key may spend 120 in either. The warm-up and the first five
    // hold 60, so in kb two more fit (80 = 120 - 40) and in kb-next all five do.
    const spent: BalanceSource = {
      balances: async (ids) =>
        new Map(
          ids.map((id) => [id, { balance: nanos(BALANCE), version: 1, spend: [{ field: "kb", spent: nanos(40n) }] }]),
        ),
    };
    const period = (field: string) => ({ budgets: [budget("key", field, 120n), budget("account", "ab", 1_000n)] });
    const all = { changed: () => true, from: spent };
    expect(await outcomes(() => period("kb"), all)).toEqual([...held(7), ...refused(3, "budget:key")]);
    expect(await outcomes((i) => period(i < 5 ? "kb" : "kb-next"), all)).toEqual(held(10));
  });

  it("limits that change and change back (A, B, A) decide each Check by its own", async () => {
    const got = await outcomes(() => ({ requestsPerMinute: 3 }), { changed: (i) => i >= 3 && i < 6 });
    // Checks 0-2 (A: 100) hold; 3-5 (B: 3) are refused, three being held already; 6-9 (A again) hold.
    expect(got).toEqual([...held(3), ...refused(3, "requests"), ...held(4)]);
  });
});

// The comparison above passes just as well if nothing is ever queued; this proves the queued path is the one taken, by
// counting the commands the scripts ran (a private server, so no other suite's commands are counted).
describe("hold script: Checks that simply pass are queued", () => {
  const stack = usePrivateRedis();

  /**
   * Data commands the scripts ran per hold, for 20 holds of one key arriving together (one script run); `extra` is
   * called per hold, so each has arrays of its own.
   */
  async function commandsPerHold(extra: () => Partial<HoldRequest>): Promise<number> {
    const prefix = `cmds_${randomUUID().slice(0, 8)}`;
    const { quota } = redisAdmission(stack.redis, prefix, source);
    const hold = (now: number): HoldRequest => ({
      keyId: "key_c",
      accountId: "acct_c",
      decisionId: randomUUID(),
      requestsPerMinute: 1_000,
      tokensPerMinute: 1_000_000,
      tokens: 1,
      amount: nanos(1n),
      now,
      ...extra(),
    });
    // Verifies the connection, loads the balance and indexes the account, outside what is counted.
    expect((await quota.hold(hold(T0))).held).toBe(true);
    await stack.admin.config("RESETSTAT");
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => quota.hold(hold(T0 + 1))));
    expect(outcomes.every((o) => o.held)).toBe(true);
    const stats = await stack.admin.info("commandstats");
    let calls = 0;
    for (const [, name, n] of stats.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
      if (!["evalsha", "eval", "config", "info"].includes(name!)) calls += Number(n);
    }
    return calls / 20;
  }

  it("a run of 20 holds that pass costs about one command each; step by step, a dozen", async () => {
    const queued = await commandsPerHold(() => ({}));
    const stepwise = await commandsPerHold(() => ({ requestsPerDay: 1_000_000_000 }));
    expect(queued).toBeLessThanOrEqual(2);
    expect(stepwise).toBeGreaterThanOrEqual(10);
  });

  it("holds whose budgets are equal but not the same arrays still share one run", async () => {
    const budgets = () => [
      { scope: "key", field: "kb", limit: nanos(1_000_000n) },
      { scope: "account", field: "ab", limit: nanos(1_000_000n) },
    ];
    // Queued in one run: the budget reads come once per run, so per hold they stay near the plain run's one command.
    expect(await commandsPerHold(() => ({ budgets: budgets() as BudgetHold[] }))).toBeLessThanOrEqual(2.5);
  });
});
