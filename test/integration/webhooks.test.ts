import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyWebhookSignature } from "../../src/domain/webhook-signature.js";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { WebhookDeliveryStatus, WebhookService } from "../../src/gen/tollgate/admin/v1/webhooks_pb.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { describeStores, sqliteTarget } from "../support/services.js";
import { refused } from "../security/admin-support.js";

/** One POST a receiver got: what a real receiver sees. */
interface Received {
  body: string;
  signature: string;
  eventId: string;
  answered: number;
}

/**
 * A receiver as the README tells people to write one: verify the signature, de-duplicate by event id. `answer`
 * decides each POST's status (or never answers when it returns undefined).
 */
async function startReceiver(answer: (n: number, r: Received) => number | undefined) {
  const posts: Received[] = [];
  const seen = new Map<string, Received>();
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const r: Received = {
        body,
        signature: String(req.headers["tollgate-signature"] ?? ""),
        eventId: String(req.headers["tollgate-event-id"] ?? ""),
        answered: 0,
      };
      posts.push(r);
      const status = answer(posts.length, r);
      if (status === undefined) {
        open.add(res);
        return;
      }
      r.answered = status;
      if (status < 300 && !seen.has(r.eventId)) seen.set(r.eventId, r);
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    posts,
    /** Events the receiver accepted, once per id (its de-duplication). */
    seen,
    close: async () => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const FAST_RETRIES = {
  TOLLGATE_WEBHOOKS_ALLOWED_PRIVATE_NETWORKS: "127.0.0.0/8",
  TOLLGATE_WEBHOOKS_POLL_INTERVAL_MS: "50",
  TOLLGATE_WEBHOOKS_RETRY_BASE_MS: "100",
};

describeStores("webhooks: each event delivered at least once, signed, de-duplicable by id", (target) => {
  let h: AdminHarness;
  let hooks: Client<typeof WebhookService>;
  beforeAll(async () => {
    h = await startAdmin(target(), { env: FAST_RETRIES });
    hooks = h.client(WebhookService);
  });
  afterAll(() => h?.close());

  it("a receiver sees key.rotated and key.revoked once per id although the first delivery failed", async () => {
    const receiver = await startReceiver((n) => (n === 1 ? 500 : 200));
    try {
      const { accountId, keyId } = await h.t.account();
      const created = await hooks.createWebhook({ accountId, url: receiver.url, description: "ops" });
      const secret = created.secret;
      expect(secret).toMatch(/^whsec_/);
      const webhookId = created.webhook!.id;
      // Shown once: nothing else carries it.
      const listed = await hooks.listWebhooks({ accountId });
      expect(listed.webhooks.map((w) => w.id)).toEqual([webhookId]);
      expect(JSON.stringify(listed, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(secret);

      const keys = h.client(KeyService);
      await keys.rotateKey({ keyId });
      await keys.revokeKey({ keyId });

      await until("both events accepted", () => receiver.seen.size === 2);
      const log = await until("both deliveries delivered", async () => {
        const r = await hooks.listWebhookDeliveries({ accountId, webhookId });
        return r.deliveries.length === 2 && r.deliveries.every((d) => d.status === WebhookDeliveryStatus.DELIVERED)
          ? r.deliveries
          : undefined;
      });
      // The first POST failed (500) and was retried with the same event id and the same body.
      expect(receiver.posts[0]!.answered).toBe(500);
      const retried = receiver.posts.filter((p) => p.eventId === receiver.posts[0]!.eventId);
      expect(retried.length).toBe(2);
      expect(retried[1]!.body).toBe(retried[0]!.body);
      const types = [...receiver.seen.values()].map((r) => JSON.parse(r.body) as { type: string; id: string });
      expect(types.map((e) => e.type).sort()).toEqual(["key.revoked", "key.rotated"]);
      for (const e of types) expect(receiver.seen.get(e.id)).toBeDefined();
      // Every POST (the failed one included) is signed with the webhook's secret over its raw body.
      for (const p of receiver.posts)
        expect(verifyWebhookSignature({ secret, body: p.body, header: p.signature }).valid).toBe(true);
      const byEvent = new Map(log.map((d) => [d.eventId, d]));
      expect(byEvent.get(receiver.posts[0]!.eventId)).toMatchObject({ attempts: 2, lastStatusCode: 200 });
      expect(log.every((d) => d.eventType.startsWith("key."))).toBe(true);
      // Delivered means done: no more POSTs arrive.
      const count = receiver.posts.length;
      await new Promise((r) => setTimeout(r, 400));
      expect(receiver.posts.length).toBe(count);
      const body = JSON.parse(receiver.posts[0]!.body) as Record<string, unknown>;
      expect(body).toMatchObject({ account_id: accountId, data: { key_id: keyId } });
      // Operators see attempts by outcome.
      const metrics = await (await fetch(`${h.url}/metrics`)).text();
      expect(metrics).toMatch(/tollgate_webhook_attempts_total\{outcome="retry"\} 1\n/);
      expect(metrics).toMatch(/tollgate_webhook_attempts_total\{outcome="delivered"\} 2\n/);
      expect(metrics).toMatch(/tollgate_webhook_attempts_total\{outcome="failed"\} 0\n/);
    } finally {
      await receiver.close();
    }
  });

  it("only subscribed types are sent, and a deleted webhook gets nothing more", async () => {
    const receiver = await startReceiver(() => 200);
    try {
      const { accountId, keyId } = await h.t.account();
      const w = await hooks.createWebhook({ accountId, url: receiver.url, eventTypes: ["key.revoked"] });
      await h.client(KeyService).rotateKey({ keyId });
      await h.client(KeyService).revokeKey({ keyId });
      await until("the revocation", () => receiver.seen.size === 1);
      expect(JSON.parse([...receiver.seen.values()][0]!.body)).toMatchObject({ type: "key.revoked" });
      await hooks.deleteWebhook({ webhookId: w.webhook!.id });
      expect((await hooks.listWebhooks({ accountId })).webhooks).toEqual([]);
      const other = await h.t.account();
      await h.client(KeyService).revokeKey({ keyId: other.keyId });
      await new Promise((r) => setTimeout(r, 300));
      expect(receiver.posts.length).toBe(1);
    } finally {
      await receiver.close();
    }
  });
});

describe("webhooks: configuration is validated field by field, per account", () => {
  let h: AdminHarness;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
  });
  afterAll(() => h?.close());

  it("refuses non-https URLs, private targets, unknown event types and a threshold without balance.low", async () => {
    const hooks = h.client(WebhookService);
    const { accountId } = await h.t.account();
    await refused(
      hooks.createWebhook({ accountId, url: "http://hooks.example.com/x" }),
      Code.InvalidArgument,
      /^url: .*https/,
    );
    // No operator allow-list here: loopback, private and metadata targets are refused.
    await refused(
      hooks.createWebhook({ accountId, url: "http://127.0.0.1:9/x" }),
      Code.InvalidArgument,
      /^url: .*private/,
    );
    await refused(
      hooks.createWebhook({ accountId, url: "https://10.0.0.5/x" }),
      Code.InvalidArgument,
      /^url: .*private/,
    );
    await refused(
      hooks.createWebhook({ accountId, url: "https://169.254.169.254/latest/meta-data" }),
      Code.InvalidArgument,
      /^url: .*private/,
    );
    await refused(
      hooks.createWebhook({ accountId, url: "https://hooks.example.com/x", eventTypes: ["key.revoked", "key.eaten"] }),
      Code.InvalidArgument,
      /^event_types\[1\]: /,
    );
    await refused(
      hooks.createWebhook({
        accountId,
        url: "https://hooks.example.com/x",
        eventTypes: ["key.revoked"],
        lowBalanceThresholdNanoUsd: 5n,
      }),
      Code.InvalidArgument,
      /^low_balance_threshold_nano_usd: /,
    );
    await refused(hooks.createWebhook({ accountId, url: "" }), Code.InvalidArgument, /^url: /);
  });

  it("an account token manages only its own webhooks; other accounts' ids are NotFound", async () => {
    const mine = await h.t.account();
    const theirs = await h.t.account();
    const own = h.client(WebhookService, await h.accountToken(mine.accountId));
    const w = await own.createWebhook({ accountId: mine.accountId, url: "https://hooks.example.com/mine" });
    expect((await own.listWebhooks({})).webhooks.map((x) => x.id)).toEqual([w.webhook!.id]);
    await refused(
      own.createWebhook({ accountId: theirs.accountId, url: "https://hooks.example.com/x" }),
      Code.PermissionDenied,
    );
    const foreign = await h.client(WebhookService).createWebhook({
      accountId: theirs.accountId,
      url: "https://hooks.example.com/theirs",
    });
    await refused(own.deleteWebhook({ webhookId: foreign.webhook!.id }), Code.NotFound);
    await refused(own.listWebhookDeliveries({ accountId: theirs.accountId }), Code.PermissionDenied);
  });
});

describe("webhooks: a receiver that never answers never slows a Check", () => {
  let h: AdminHarness;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget(), {
      env: { ...FAST_RETRIES, TOLLGATE_WEBHOOKS_TIMEOUT_MS: "1500" },
    });
  });
  afterAll(() => h?.close());

  it("Checks and key changes answer while every delivery hangs, and the hung attempts time out into the log", async () => {
    const receiver = await startReceiver(() => undefined);
    try {
      const { accountId } = await h.t.account();
      const caller = await h.t.account();
      await h.client(AccountService).getAccount({ accountId });
      const hooks = h.client(WebhookService);
      for (let i = 0; i < 3; i++) await hooks.createWebhook({ accountId, url: receiver.url });
      const keys = h.client(KeyService);
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) ids.push((await keys.createKey({ accountId, name: `k${i}` })).key!.id);
      // Each revocation answers at once: the event is written with the change, delivered later.
      for (const keyId of ids) {
        const started = performance.now();
        await keys.revokeKey({ keyId });
        expect(performance.now() - started).toBeLessThan(1000);
      }
      await until("deliveries in flight to the silent receiver", () => receiver.posts.length >= 3);
      const chat = JSON.stringify({ model: "gpt-5.5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] });
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        const verdict = outcome(
          await h.t.authz.check(
            envoyCheckRequest({ headers: { authorization: `Bearer ${caller.secret}` }, body: chat }),
          ),
        );
        // Far below the delivery timeout: a Check that waited on a delivery would take 1.5 s or forever.
        expect(performance.now() - started).toBeLessThan(1000);
        expect(verdict.allowed).toBe(true);
      }
      const log = await until("a timed-out attempt in the delivery log", async () => {
        const r = await hooks.listWebhookDeliveries({ accountId });
        return r.deliveries.find((d) => d.attempts >= 1 && /timed out/.test(d.lastError));
      });
      expect(log.status).toBe(WebhookDeliveryStatus.PENDING);
      expect(log.lastStatusCode).toBe(0);
    } finally {
      await receiver.close();
    }
  });
});
