import { afterAll, beforeAll, expect, it } from "vitest";
import { insertWebhookEvents } from "../../src/adapters/sql/webhook-store.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import type { WebhookEventInput } from "../../src/domain/webhooks.js";
import { describeStores, type StoreTarget } from "../support/services.js";

const revoked = (accountId: string, n: number): WebhookEventInput => ({
  type: "key.revoked",
  accountId,
  data: { key_id: `key_${n}`, name: "", display_prefix: "tg_x", revoked_at: new Date(0).toISOString() },
});

describeStores("webhook claims: nothing is sent to a deleted webhook", (target) => {
  let t: StoreTarget;
  let stores: Stores;
  let accountId: string;
  beforeAll(async () => {
    t = target();
    stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: t.url } }), { schema: t.schema });
    accountId = (await stores.accounts.create({ name: "deleted hook", planId: "pro" })).id;
    await stores.admin.insertWebhook({
      id: "wh_gone",
      accountId,
      url: "https://hooks.example.com/x",
      eventTypes: [],
      lowBalanceThreshold: null,
      description: "",
      secret: "whsec_test",
      createdAt: Date.now(),
      deletedAt: null,
    });
  });
  afterAll(async () => {
    await stores?.db.close();
    await t?.cleanup();
  });

  it("a delivery written by a transaction that commits after DeleteWebhook cancelled the pending ones is not claimed", async (ctx) => {
    // The emitting transaction (a key revocation, the ledger's) only reads the webhook row, so on PostgreSQL it does
    // not wait for a concurrent DeleteWebhook, whose cancel of pending deliveries cannot see the uncommitted row.
    if (t.name === "sqlite") ctx.skip(); // SQLite transactions are serial: the race needs two writers at once
    const knex = stores.db.knex;
    const trx = await knex.transaction();
    await insertWebhookEvents(trx, [revoked(accountId, 1)], Date.now());
    await stores.admin.deleteWebhook("wh_gone", Date.now());
    await trx.commit();
    const claimed = await stores.webhooks.claim({ now: Date.now() + 1, leaseMs: 40_000, limit: 10 });
    expect(claimed.filter((d) => d.webhookId === "wh_gone")).toEqual([]);
    const log = await stores.admin.webhookDeliveries({ accountId, webhookId: "wh_gone", limit: 10 });
    expect(log.map((d) => d.status)).toEqual(["cancelled"]);
  });
});
