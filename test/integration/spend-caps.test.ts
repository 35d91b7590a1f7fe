import { afterEach, describe, expect, it } from "vitest";
import type { Budget } from "../../src/domain/budgets.js";
import { nanos } from "../../src/domain/money.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { budgetRequest, settled } from "../support/budgets.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeWith, postgresTarget, sqliteTarget, suiteRedis, type StoreTarget } from "../support/services.js";

/** The worst-case reservation of BODY, read from a probe key's admission metadata. */
async function worstCase(t: TestPlane): Promise<bigint> {
  const probe = await t.account("pro");
  const probed = outcome(await t.authz.check(budgetRequest(probe.secret)));
  expect(probed.allowed).toBe(true);
  return BigInt(probed.metadata.reserved_nanos as string);
}

function spendCaps(makeTarget: () => StoreTarget, env: Record<string, string>) {
  let t: TestPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("a key's budget covering 10 worst-case requests admits exactly 10 of 200 concurrent ones; spend stays under it", async () => {
    t = await startTestPlane(makeTarget(), { env });
    const worst = await worstCase(t);
    const budget: Budget = { limit: nanos(10n * worst + worst - 1n), period: "day" };
    const { accountId, secret } = await t.account("pro", { budget });
    const results = await Promise.all(
      Array.from({ length: 200 }, () => t!.authz.check(budgetRequest(secret)).then(outcome)),
    );
    const admitted = results.filter((r) => r.allowed);
    expect(admitted).toHaveLength(10);
    const refused = results.filter((r) => !r.allowed);
    expect(refused.every((r) => r.httpStatus === 402 && r.error?.code === "budget_exceeded")).toBe(true);
    expect(refused[0]!.error!.message).toMatch(/daily budget.*resets at \d{4}-\d\d-\d\dT00:00:00\.000Z/);

    const ledger = t.plane.stores.ledger;
    const result = await ledger.commit({
      events: settled(admitted, accountId, worst, Date.now()),
      expired: [],
      deadLetters: [],
      now: Date.now(),
    });
    await t.plane.metering.credits.committed(result.changes);
    // Settled at the full worst case: 10 × worst spent, at most the cap; one more still does not fit.
    expect(10n * worst).toBeLessThanOrEqual(budget.limit);
    expect(outcome(await t.authz.check(budgetRequest(secret))).error?.code).toBe("budget_exceeded");
    // GET /v1/key shows the key what its budget holds: the figures admission decides with.
    const status = outcome(
      await t.authz.check(
        envoyCheckRequest({ method: "GET", path: "/v1/key", headers: { authorization: `Bearer ${secret}` } }),
      ),
    );
    expect(JSON.parse(status.body).budget).toMatchObject({
      key: {
        limit_nano_usd: budget.limit.toString(),
        period: "day",
        spent_nano_usd: (10n * worst).toString(),
        held_nano_usd: "0",
        remaining_nano_usd: (budget.limit - 10n * worst).toString(),
        resets_at: expect.stringMatching(/T00:00:00\.000Z$/),
      },
      account: null,
    });
    // The balance was never the limit: it still holds plenty.
    expect((await ledger.balance(accountId)).balance).toBeGreaterThan(100n * worst);
  });

  it("an account's budget caps all its keys together", async () => {
    t = await startTestPlane(makeTarget(), { env });
    const worst = await worstCase(t);
    const { accountId, secret } = await t.account("pro");
    await t.plane.stores.accounts.setBudget(accountId, { budget: { limit: nanos(3n * worst), period: "month" } });
    const second = await t.plane.stores.keys.create({ accountId });
    await t.plane.keyCache.invalidateAccount(accountId);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => t!.authz.check(budgetRequest(i % 2 ? secret : second.secret)).then(outcome)),
    );
    expect(results.filter((r) => r.allowed)).toHaveLength(3);
    const refused = results.find((r) => !r.allowed)!;
    expect(refused.httpStatus).toBe(402);
    expect(refused.error?.code).toBe("budget_exceeded");
    expect(refused.error?.message).toMatch(/account's monthly budget/);
  });
}

describe("spend caps [sqlite + in-process]", () => {
  spendCaps(sqliteTarget, {});

  let t: TestPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("a daily budget rolls over at midnight in the account's time zone (controllable clock)", async () => {
    let now = Date.parse("2026-12-01T18:00:00Z");
    t = await startTestPlane(sqliteTarget(), { clock: () => now });
    const worst = await worstCase(t);
    // Asia/Kolkata is UTC+5:30: its 2 December starts at 18:30 UTC on 1 December.
    const { accountId, secret } = await t.account("pro", { budget: { limit: nanos(worst), period: "day" } });
    await t.plane.stores.accounts.setBudget(accountId, { timeZone: "Asia/Kolkata" });
    await t.plane.keyCache.invalidateAccount(accountId);
    const first = outcome(await t.authz.check(budgetRequest(secret)));
    expect(first.allowed).toBe(true);
    const result = await t.plane.stores.ledger.commit({
      events: settled([first], accountId, worst, now),
      expired: [],
      deadLetters: [],
      now,
    });
    await t.plane.metering.credits.committed(result.changes);
    const refused = outcome(await t.authz.check(budgetRequest(secret)));
    expect(refused.error?.code).toBe("budget_exceeded");
    expect(refused.error?.message).toContain("resets at 2026-12-01T18:30:00.000Z");
    now = Date.parse("2026-12-01T18:29:59Z");
    expect(outcome(await t.authz.check(budgetRequest(secret))).error?.code).toBe("budget_exceeded");
    now = Date.parse("2026-12-01T18:30:00Z");
    expect(outcome(await t.authz.check(budgetRequest(secret))).allowed).toBe(true);
  });
});

describeWith("postgres", "spend caps [postgres + redis]", (databaseUrl) => {
  describeWith("redis", "with redis", (redisUrl) => {
    const prefix = `test-budgets-${process.pid}-${Date.now()}`;
    suiteRedis(redisUrl, `${prefix}:`);
    spendCaps(() => postgresTarget(databaseUrl), { TOLLGATE_REDIS_URL: redisUrl, TOLLGATE_REDIS_PREFIX: prefix });
  });
});
