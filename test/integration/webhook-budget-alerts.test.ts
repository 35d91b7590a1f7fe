import { afterAll, beforeAll, expect, it } from "vitest";
import { nanos } from "../../src/domain/money.js";
import { outcome } from "../support/authz-client.js";
import { budgetRequest, settled } from "../support/budgets.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeStores } from "../support/services.js";

// Review finding (uncommitted): budget.threshold and budget.exhausted are offered (event types, CLI help, admin proto)
// but nothing emits them: budgetAlertEvents (src/domain/budget-alerts.ts) has no caller, so a webhook subscribed to
// them never hears of a key's budget running out.
describeStores("webhooks: a key's spend reaching its budget emits budget.threshold and budget.exhausted", (target) => {
  let t: TestPlane;
  beforeAll(async () => {
    t = await startTestPlane(target(), { roles: ["authz"] });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("the ledger commit that spends the whole daily budget writes both events to the outbox", async () => {
    const probe = outcome(await t.authz.check(budgetRequest((await t.account("pro")).secret)));
    const worst = BigInt(probe.metadata.reserved_nanos as string);
    const { accountId, secret } = await t.account("pro", { budget: { limit: nanos(worst), period: "day" } });
    const admitted = outcome(await t.authz.check(budgetRequest(secret)));
    expect(admitted.allowed).toBe(true);
    await t.plane.stores.admin.insertWebhook({
      id: "wh_budget",
      accountId,
      url: "https://hooks.example.com/budget",
      eventTypes: ["budget.threshold", "budget.exhausted"],
      lowBalanceThreshold: null,
      description: "",
      secret: "whsec_test",
      createdAt: Date.now(),
      deletedAt: null,
    });
    await t.plane.stores.ledger.commit({
      events: settled([admitted], accountId, worst, Date.now()),
      expired: [],
      deadLetters: [],
      now: Date.now(),
    });
    const log = await t.plane.stores.admin.webhookDeliveries({ accountId, limit: 10 });
    expect(log.map((d) => d.eventType).sort()).toEqual(["budget.exhausted", "budget.threshold"]);
  });

  it("an account's budget: 80% sends budget.threshold, the rest budget.exhausted, later spend in the period nothing", async () => {
    const { accountId, keyId } = await t.account("pro");
    await t.plane.stores.accounts.setBudget(accountId, { budget: { limit: nanos(10_000n), period: "month" } });
    await t.plane.stores.admin.insertWebhook({
      id: "wh_account_budget",
      accountId,
      url: "https://hooks.example.com/budget",
      eventTypes: [],
      lowBalanceThreshold: null,
      description: "",
      secret: "whsec_test",
      createdAt: Date.now(),
      deletedAt: null,
    });
    let n = 0;
    const spend = async (requests: number) => {
      const admitted = Array.from({ length: requests }, () => ({
        metadata: { decision_id: `dec_account_budget_${n++}`, key_id: keyId },
      }));
      await t.plane.stores.ledger.commit({
        events: settled(admitted, accountId, 1000n, Date.now()),
        expired: [],
        deadLetters: [],
        now: Date.now(),
      });
      return (await t.plane.stores.admin.webhookDeliveries({ accountId, limit: 10 })).map((d) => d.eventType);
    };
    expect(await spend(7)).toEqual([]);
    expect(await spend(1)).toEqual(["budget.threshold"]);
    expect(await spend(2)).toEqual(["budget.exhausted", "budget.threshold"]);
    expect(await spend(1)).toEqual(["budget.exhausted", "budget.threshold"]);
    const [exhausted] = await t.plane.stores.admin.webhookDeliveries({ accountId, limit: 1 });
    const body = await t.plane.stores.db.knex("webhook_events").where({ id: exhausted!.eventId }).first("payload");
    expect(JSON.parse(body.payload).data).toMatchObject({
      scope: "account",
      period: "month",
      budget_nano_usd: "10000",
      spent_nano_usd: "10000",
    });
  });
});
