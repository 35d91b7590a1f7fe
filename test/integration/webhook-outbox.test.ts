import { afterAll, beforeAll, expect, it } from "vitest";
import { openDatabase, type Database } from "../../src/adapters/sql/database.js";
import { createSqlWebhookDeliveryStore } from "../../src/adapters/sql/webhook-store.js";
import { startWebhookDispatcher } from "../../src/app/webhook-dispatcher.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import type { WebhookDeliveryStore, WebhookEventInput, WebhookSender } from "../../src/domain/webhooks.js";
import { createLogger } from "../../src/logging.js";
import { describeStores, type StoreTarget } from "../support/services.js";

const revoked = (accountId: string, n: number): WebhookEventInput => ({
  type: "key.revoked",
  accountId,
  data: { key_id: `key_${n}`, name: "", display_prefix: "tg_x", revoked_at: new Date(0).toISOString() },
});

describeStores("webhook outbox: two control-plane processes share deliveries through leases", (target) => {
  let t: StoreTarget;
  let stores: Stores;
  let other: Database;
  let a: WebhookDeliveryStore;
  let b: WebhookDeliveryStore;
  let accountId: string;
  beforeAll(async () => {
    t = target();
    stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: t.url } }), { schema: t.schema });
    // A second connection pool on the same database: the other process.
    other = await openDatabase(t.url, { schema: t.schema });
    a = stores.webhooks;
    b = createSqlWebhookDeliveryStore(other);
    accountId = (await stores.accounts.create({ name: "hooks", planId: "pro" })).id;
    await stores.admin.insertWebhook({
      id: "wh_shared",
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
    await other?.close();
    await stores?.db.close();
    await t?.cleanup();
  });

  it("two workers draining 60 deliveries send each exactly once", async (ctx) => {
    // Two SQLite connections in one thread cannot stand for two processes: better-sqlite3 waits for the file lock
    // synchronously, so it would wait on a transaction this same thread holds open. PostgreSQL proves it.
    if (t.name === "sqlite") ctx.skip();
    const now = Date.now();
    await a.emit(
      Array.from({ length: 60 }, (_, n) => revoked(accountId, n)),
      now,
    );
    const sent = new Map<string, number>();
    const sender: WebhookSender = {
      async send(req) {
        const id = req.headers["tollgate-event-id"]!;
        sent.set(id, (sent.get(id) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 5));
        return { kind: "answered", status: 200 };
      },
    };
    const options = {
      sender,
      logger: createLogger({ level: "silent" }),
      clock: Date.now,
      pollMs: 60_000,
      timeoutMs: 1000,
      concurrency: 4,
      retry: { baseMs: 1000, maxMs: 1000, maxAttempts: 3 },
    };
    const one = startWebhookDispatcher({ ...options, store: a });
    const two = startWebhookDispatcher({ ...options, store: b });
    try {
      await Promise.all([one.runOnce(), two.runOnce()]);
      await Promise.all([one.runOnce(), two.runOnce()]);
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
    expect(sent.size).toBe(60);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    const log = await stores.admin.webhookDeliveries({ accountId, limit: 100 });
    expect(log.filter((d) => d.status === "delivered" && d.attempts === 1)).toHaveLength(60);
  });

  it("a claim is exclusive while its lease holds; after it runs out the other process takes over, and the late outcome is refused", async () => {
    const now = Date.now();
    await a.emit([revoked(accountId, 1000)], now);
    const [mine] = await a.claim({ now, leaseMs: 60_000, limit: 10 });
    expect(mine).toBeDefined();
    expect(await b.claim({ now, leaseMs: 60_000, limit: 10 })).toEqual([]);
    // "a" dies mid-attempt; its lease runs out a minute later and "b" claims the same delivery (at least once).
    const [taken] = await b.claim({ now: now + 60_001, leaseMs: 60_000, limit: 10 });
    expect(taken).toMatchObject({ id: mine!.id, eventId: mine!.eventId, payload: mine!.payload });
    expect(await b.record(taken!, { kind: "delivered", statusCode: 200 }, now + 60_002)).toBe(true);
    expect(
      await a.record(mine!, { kind: "retry", statusCode: 0, error: "late", nextAttemptAt: now }, now + 60_003),
    ).toBe(false);
    const [row] = (await stores.admin.webhookDeliveries({ accountId, limit: 1 })).filter((d) => d.id === mine!.id);
    expect(row).toMatchObject({ status: "delivered", attempts: 1, lastError: "" });
  });

  it("an event with a dedupe key is written once; an event nobody subscribes to writes nothing", async () => {
    const before = (await stores.admin.webhookDeliveries({ accountId, limit: 1000 })).length;
    const twice = { ...revoked(accountId, 2000), dedupeKey: "budget.exhausted:key_x:day:2026-12-01" };
    await a.emit([twice], Date.now());
    await b.emit([twice], Date.now());
    const other = (await stores.accounts.create({ name: "no hooks", planId: "pro" })).id;
    await a.emit([revoked(other, 1)], Date.now());
    expect((await stores.admin.webhookDeliveries({ accountId, limit: 1000 })).length).toBe(before + 1);
    expect(await stores.admin.webhookDeliveries({ accountId: other, limit: 10 })).toEqual([]);
  });

  it("prunes finished deliveries and their events past retention, never pending ones", async () => {
    const old = Date.now() - 40 * 86_400_000;
    await a.emit([revoked(accountId, 3000), revoked(accountId, 3001)], old);
    const claimed = await a.claim({ now: Date.now(), leaseMs: 60_000, limit: 100 });
    const done = claimed.find((d) => JSON.parse(d.payload).data.key_id === "key_3000")!;
    const waiting = claimed.find((d) => JSON.parse(d.payload).data.key_id === "key_3001")!;
    expect(await a.record(done, { kind: "delivered", statusCode: 200 }, Date.now())).toBe(true);
    expect(
      await a.record(
        waiting,
        { kind: "retry", statusCode: 500, error: "x", nextAttemptAt: Date.now() + 1e9 },
        Date.now(),
      ),
    ).toBe(true);
    const before = await stores.admin.webhookDeliveries({ accountId, limit: 1000 });
    const pruned = await b.prune(Date.now() - 30 * 86_400_000);
    expect(pruned).toBe(1);
    const after = await stores.admin.webhookDeliveries({ accountId, limit: 1000 });
    expect(after.map((d) => d.id).sort()).toEqual(
      before
        .filter((d) => d.id !== done.id)
        .map((d) => d.id)
        .sort(),
    );
    expect(after.find((d) => d.id === waiting.id)).toMatchObject({ status: "pending" });
  });
});
