// Review of issue 14: a budget set on a key while its requests are in flight must hold them (spent + open
// reservations + this request), on every gate alike. The Redis scripts record a key's share of the open reservations
// only while the key had a budget, so requests admitted before the budget was set were invisible to it there.
import { afterEach, describe, expect, it } from "vitest";
import { outcome } from "../support/authz-client.js";
import { budgetRequest } from "../support/budgets.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeWith, postgresTarget, sqliteTarget, suiteRedis, type StoreTarget } from "../support/services.js";

function midFlight(makeTarget: () => StoreTarget, env: Record<string, string>) {
  let t: TestPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("a key budget set while 5 worst-case requests are in flight counts them: the next one is budget_exceeded", async () => {
    t = await startTestPlane(makeTarget(), { env });
    const { accountId, keyId, secret } = await t.account("pro");
    const first = outcome(await t.authz.check(budgetRequest(secret)));
    expect(first.allowed).toBe(true);
    const worst = BigInt(first.metadata.reserved_nanos as string);
    for (let i = 0; i < 4; i++) expect(outcome(await t.authz.check(budgetRequest(secret))).allowed).toBe(true);
    // Five requests of `worst` are in flight (none billed). The key's budget now covers exactly five.
    await t.plane.stores.db
      .knex("api_keys")
      .where({ id: keyId })
      .update({ budget_nanos: (5n * worst).toString(), budget_period: "day", budget_set_by: "operator" });
    await t.plane.keyCache.invalidateAccount(accountId);
    const sixth = outcome(await t.authz.check(budgetRequest(secret)));
    expect(sixth.allowed).toBe(false);
    expect(sixth.error?.code).toBe("budget_exceeded");
  });
}

describe("budget set mid-flight [sqlite + in-process]", () => {
  midFlight(sqliteTarget, {});
});

describeWith("postgres", "budget set mid-flight [postgres + redis]", (databaseUrl) => {
  describeWith("redis", "with redis", (redisUrl) => {
    const prefix = `test-budmid-${process.pid}-${Date.now()}`;
    suiteRedis(redisUrl, `${prefix}:`);
    midFlight(() => postgresTarget(databaseUrl), { TOLLGATE_REDIS_URL: redisUrl, TOLLGATE_REDIS_PREFIX: prefix });
  });
});
