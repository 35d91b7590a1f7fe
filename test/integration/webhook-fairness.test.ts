import { Writable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { openDatabase, type Database } from "../../src/adapters/sql/database.js";
import { createSqlWebhookDeliveryStore } from "../../src/adapters/sql/webhook-store.js";
import { startWebhookDispatcher, type WebhookDispatcherOptions } from "../../src/app/webhook-dispatcher.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import type { WebhookDeliveryStore, WebhookEventInput, WebhookSender } from "../../src/domain/webhooks.js";
import { createLogger } from "../../src/logging.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { describeStores, type StoreTarget } from "../support/services.js";

// Review finding (uncommitted): claims are FIFO over every account's due deliveries, so one account token that makes
// events quickly (10 key rotations a second × 10 webhooks pointed at a receiver that stalls for timeout_ms) fills every
// worker slot of every process, and other accounts' balance.low / key.revoked alerts wait behind its backlog for as
// long as it keeps it up. A claim should not let one account take every slot while another account has a due delivery.

const revoked = (accountId: string, n: number): WebhookEventInput => ({
  type: "key.revoked",
  accountId,
  data: { key_id: `key_${n}`, name: "", display_prefix: "tg_x", revoked_at: new Date(0).toISOString() },
});

/** A new account with one webhook subscribed to every type; returns the account id. */
async function accountWithWebhook(stores: Stores, webhookId: string): Promise<string> {
  const accountId = (await stores.accounts.create({ name: webhookId, planId: "pro" })).id;
  await stores.admin.insertWebhook({
    id: webhookId,
    accountId,
    url: "https://hooks.example.com/x",
    eventTypes: [],
    lowBalanceThreshold: null,
    description: "",
    secret: "whsec_test",
    createdAt: Date.now(),
    deletedAt: null,
  });
  return accountId;
}

describeStores("webhook claims: one account's backlog does not hold back another account's alerts", (target) => {
  let t: StoreTarget;
  let stores: Stores;
  let noisy: string;
  let quiet: string;
  let other: Database | undefined;
  beforeAll(async () => {
    t = target();
    stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: t.url } }), { schema: t.schema });
    // PostgreSQL: a second pool on the same database stands for another process (SQLite: one process, one handle).
    if (t.name === "postgres") other = await openDatabase(t.url, { schema: t.schema });
    noisy = (await stores.accounts.create({ name: "noisy", planId: "pro" })).id;
    quiet = (await stores.accounts.create({ name: "quiet", planId: "pro" })).id;
    for (const [accountId, id] of [
      [noisy, "wh_noisy"],
      [quiet, "wh_quiet"],
    ] as const)
      await stores.admin.insertWebhook({
        id,
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

  it("a claim of 4 slots takes the quiet account's due delivery beside the noisy account's 200", async () => {
    const now = Date.now();
    await stores.webhooks.emit(
      Array.from({ length: 200 }, (_, n) => revoked(noisy, n)),
      now - 1000,
    );
    await stores.webhooks.emit([revoked(quiet, 1)], now);
    const claimed = await stores.webhooks.claim({ now, leaseMs: 40_000, limit: 4 });
    expect(claimed).toHaveLength(4);
    expect(claimed.map((d) => d.webhookId)).toContain("wh_quiet");
  });

  it("two processes claiming at once never lease more than perAccount of one account's deliveries", async () => {
    const now = Date.now();
    const busy = await accountWithWebhook(stores, "wh_busy");
    const calm = await accountWithWebhook(stores, "wh_calm");
    await stores.webhooks.emit(
      Array.from({ length: 50 }, (_, n) => revoked(busy, n)),
      now - 1000,
    );
    await stores.webhooks.emit([revoked(calm, 1)], now);
    const a = stores.webhooks;
    const b: WebhookDeliveryStore = other ? createSqlWebhookDeliveryStore(other) : a;
    const q = { now, leaseMs: 40_000, limit: 10, perAccount: 3 };
    const [one, two] = await Promise.all([a.claim(q), b.claim(q)]);
    const claimed = [...one, ...two];
    expect(new Set(claimed.map((d) => d.id)).size).toBe(claimed.length);
    expect(claimed.filter((d) => d.webhookId === "wh_busy")).toHaveLength(3);
    expect(claimed.filter((d) => d.webhookId === "wh_calm")).toHaveLength(1);
    // While those 3 are leased, nothing more of the busy account; once one is recorded, one more.
    expect((await a.claim(q)).filter((d) => d.webhookId === "wh_busy")).toEqual([]);
    const first = claimed.find((d) => d.webhookId === "wh_busy")!;
    expect(await a.record(first, { kind: "delivered", statusCode: 200 }, now)).toBe(true);
    expect((await b.claim(q)).filter((d) => d.webhookId === "wh_busy")).toHaveLength(1);
  });
});

describeStores(
  "webhook outbox bounds: a pending cap per webhook, an age limit, rate-limited failure logs",
  (target) => {
    let t: StoreTarget;
    let stores: Stores;
    beforeAll(async () => {
      t = target();
      stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: t.url } }), { schema: t.schema });
    });
    afterAll(async () => {
      await stores?.db.close();
      await t?.cleanup();
    });

    const options = (
      sender: WebhookSender,
      extra: Partial<WebhookDispatcherOptions> = {},
    ): WebhookDispatcherOptions => ({
      store: stores.webhooks,
      sender,
      logger: createLogger({ level: "silent" }),
      clock: Date.now,
      pollMs: 60_000,
      timeoutMs: 1000,
      concurrency: 4,
      retry: { baseMs: 3_600_000, maxMs: 3_600_000, maxAttempts: 15 },
      ...extra,
    });

    it("a webhook over its pending cap keeps its oldest; the newest are dropped, logged with the reason and counted", async () => {
      const accountId = await accountWithWebhook(stores, "wh_capped");
      await stores.webhooks.emit(
        Array.from({ length: 30 }, (_, n) => revoked(accountId, n)),
        Date.now(),
      );
      const metrics = createMetrics();
      const sent: string[] = [];
      // Deliveries wait for the first trim (at most 5 s), so only the dispatcher's first claim, at start, can be in
      // flight before it: on a slow machine a second claim could otherwise deliver more before the trim ran.
      let trimmed!: () => void;
      const afterTrim = Promise.race([
        new Promise<void>((resolve) => (trimmed = resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, 5000)),
      ]);
      const dispatcher = startWebhookDispatcher(
        options(
          {
            async send(req) {
              await afterTrim;
              sent.push(JSON.parse(req.body).data.key_id);
              return { kind: "answered", status: 200 };
            },
          },
          {
            maxPendingPerWebhook: 10,
            onDropped: (reason, count) => {
              metrics.webhookDropped(reason, count);
              trimmed();
            },
          },
        ),
      );
      try {
        // One pass delivers at most the account's in-flight share; pass again until nothing is left pending (the kept
        // ones are delivered, the rest were dropped by the first pass's trim).
        for (let pass = 0; pass < 10; pass++) {
          await dispatcher.runOnce();
          const left = await stores.admin.webhookDeliveries({ accountId, limit: 100 });
          if (!left.some((d) => d.status === "pending")) break;
        }
      } finally {
        await dispatcher.close();
      }
      const log = await stores.admin.webhookDeliveries({ accountId, limit: 100 });
      const dropped = log.filter((d) => d.status === "dropped");
      // The dispatcher's first claim (at start, before runOnce's trim) may deliver up to 4 first; the rest is capped at 10.
      expect(sent.length + dropped.length).toBe(30);
      expect(dropped.length).toBeGreaterThanOrEqual(16);
      expect(log.filter((d) => d.status === "delivered")).toHaveLength(sent.length);
      expect(dropped.every((d) => d.lastError.includes("webhooks.max_pending_per_webhook") && d.attempts === 0)).toBe(
        true,
      );
      // The newest are the ones dropped.
      const n = (keyId: string) => Number(keyId.slice("key_".length));
      const droppedKeys = new Set(
        (
          await Promise.all(
            dropped.map((d) => stores.db.knex("webhook_events").where({ id: d.eventId }).first("payload")),
          )
        ).map((r) => n(JSON.parse(r.payload).data.key_id)),
      );
      expect(Math.max(...sent.map(n))).toBeLessThan(Math.min(...droppedKeys));
      expect((await metrics.render()).body).toContain(
        `tollgate_webhook_deliveries_dropped_total{reason="pending_cap"} ${dropped.length}`,
      );
      // Nothing over the cap any more: a second pass drops nothing.
      expect(await stores.webhooks.dropOverflow({ now: Date.now(), maxPending: 10 })).toBe(0);
    });

    it("a delivery pending past the age limit is dropped (a leased one is left to its attempt), then pruned", async () => {
      const accountId = await accountWithWebhook(stores, "wh_stale");
      const now = Date.now();
      await stores.webhooks.emit([revoked(accountId, 1), revoked(accountId, 2)], now - 4 * 86_400_000);
      const [leased] = (await stores.webhooks.claim({ now, leaseMs: 60_000, limit: 1 })).filter(
        (d) => d.webhookId === "wh_stale",
      );
      expect(leased).toBeDefined();
      // The other of the two is left due; take it out of the claim by recording a retry far ahead.
      const [waiting] = (await stores.webhooks.claim({ now, leaseMs: 60_000, limit: 1 })).filter(
        (d) => d.webhookId === "wh_stale",
      );
      expect(
        await stores.webhooks.record(
          waiting!,
          { kind: "retry", statusCode: 500, error: "x", nextAttemptAt: now + 1e9 },
          now,
        ),
      ).toBe(true);
      expect(await stores.webhooks.expirePending({ now, createdBefore: now - 3 * 86_400_000 })).toBe(1);
      const log = await stores.admin.webhookDeliveries({ accountId, limit: 10 });
      expect(log.find((d) => d.id === waiting!.id)).toMatchObject({
        status: "dropped",
        lastError: "dropped: pending for longer than webhooks.max_pending_age_ms",
        nextAttemptAt: null,
      });
      expect(log.find((d) => d.id === leased!.id)).toMatchObject({ status: "pending" });
      expect(await stores.webhooks.prune(now - 3 * 86_400_000)).toBe(1);
      const after = await stores.admin.webhookDeliveries({ accountId, limit: 10 });
      expect(after.map((d) => d.id)).toEqual([leased!.id]);
    });

    it("a receiver that fails every attempt writes one info line a minute per webhook, not one per attempt", async () => {
      const accountId = await accountWithWebhook(stores, "wh_failing");
      await stores.webhooks.emit(
        Array.from({ length: 12 }, (_, n) => revoked(accountId, n)),
        Date.now(),
      );
      const lines: Array<Record<string, unknown>> = [];
      const destination = new Writable({
        write(chunk, _encoding, done) {
          for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line));
          done();
        },
      });
      let attempts = 0;
      const dispatcher = startWebhookDispatcher(
        options(
          {
            async send() {
              attempts++;
              return { kind: "answered", status: 503 };
            },
          },
          { logger: createLogger({ level: "info", destination }), retry: { baseMs: 1, maxMs: 1, maxAttempts: 1 } },
        ),
      );
      try {
        await dispatcher.runOnce();
      } finally {
        await dispatcher.close();
      }
      expect(attempts).toBe(12);
      const failed = lines.filter((l) => l.msg === "webhook attempt failed");
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ webhookId: "wh_failing", suppressed: 0 });
    });
  },
);
