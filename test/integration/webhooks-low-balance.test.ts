import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createAdminTokenStore } from "../../src/admin/tokens.js";
import { nanos } from "../../src/domain/money.js";
import { verifyWebhookSignature } from "../../src/domain/webhook-signature.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { WebhookDeliveryStatus, WebhookService } from "../../src/gen/tollgate/admin/v1/webhooks_pb.js";
import { alsEntry, connectAls } from "../support/als-client.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeStores } from "../support/services.js";

const USD = 1_000_000_000n;

async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describeStores("webhooks: balance.low when the meter's commits take the balance below the threshold", (target) => {
  let t: TestPlane;
  let als: ReturnType<typeof connectAls>;
  let server: http.Server;
  const received: Array<{ id: string; body: string; signature: string }> = [];
  let hooks: ReturnType<typeof createClient<typeof WebhookService>>;
  let credits: ReturnType<typeof createClient<typeof CreditService>>;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString("utf8")));
      req.on("end", () => {
        received.push({
          id: String(req.headers["tollgate-event-id"]),
          body,
          signature: String(req.headers["tollgate-signature"]),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    t = await startTestPlane(target(), {
      accountCredits: 0n,
      roles: ["authz", "meter", "admin"],
      env: {
        TOLLGATE_METER_LISTEN: "127.0.0.1:0",
        TOLLGATE_ADMIN_LISTEN: "127.0.0.1:0",
        TOLLGATE_METER_BATCH_WINDOW_MS: "2",
        TOLLGATE_WEBHOOKS_ALLOWED_PRIVATE_NETWORKS: "127.0.0.0/8",
        TOLLGATE_WEBHOOKS_POLL_INTERVAL_MS: "50",
      },
    });
    als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
    const token = (await createAdminTokenStore(t.plane.stores.db).create({ kind: "operator" }, "test")).secret;
    const transport = createConnectTransport({
      baseUrl: `http://127.0.0.1:${t.plane.admin!.port}`,
      httpVersion: "1.1",
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    });
    hooks = createClient(WebhookService, transport);
    credits = createClient(CreditService, transport);
  });
  afterAll(async () => {
    als?.close();
    await t?.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  /** Bills `usd` of output tokens (10 µUSD a token at the test prices) through the meter's ALS stream. */
  async function spend(accountId: string, keyId: string, usd: bigint) {
    const stream = als.open();
    stream.send([
      alsEntry({
        decisionId: randomUUID(),
        accountId,
        keyId,
        reservedNanos: usd * USD,
        usage: { prompt: 0, completion: Number((usd * USD) / 10_000n) },
      }),
    ]);
    await stream.end();
    await t.plane.metering.meter.drain();
  }

  it("fires once on the way down, not again while low, and again after a top-up lifted it and it fell again", async () => {
    const { accountId, keyId } = await t.account("pro");
    await t.plane.stores.ledger.topUp({ accountId, amount: nanos(5n * USD), feeBps: 0, now: Date.now() });
    const created = await hooks.createWebhook({
      accountId,
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
      eventTypes: ["balance.low"],
      lowBalanceThresholdNanoUsd: 4n * USD,
    });

    await spend(accountId, keyId, 2n); // 5 → 3 USD: crosses 4
    const first = await until("the first balance.low", () => received.length === 1 && received[0]);
    expect(JSON.parse(first.body)).toMatchObject({
      type: "balance.low",
      account_id: accountId,
      data: { balance_nano_usd: String(3n * USD), threshold_nano_usd: String(4n * USD) },
    });
    expect(verifyWebhookSignature({ secret: created.secret, body: first.body, header: first.signature }).valid).toBe(
      true,
    );

    await spend(accountId, keyId, 1n); // 3 → 2 USD: still below, already alerted
    await new Promise((r) => setTimeout(r, 500));
    expect(received.length).toBe(1);

    await credits.topUp({ accountId, amountNanoUsd: 5n * USD, idempotencyKey: "lift" }); // 2 → 7: re-arms
    // The top-up pokes the watch; syncing here as well makes sure it saw the lifted balance before the next spend
    // (a fall that lands before the watch saw the lift is caught only as "still low", by design).
    await t.plane.stores.webhooks.syncLowBalance([accountId], Date.now());
    await spend(accountId, keyId, 4n); // 7 → 3: crosses again
    const second = await until("the second balance.low", () => received.length === 2 && received[1]);
    expect(second.id).not.toBe(first.id);
    expect(JSON.parse(second.body)).toMatchObject({
      type: "balance.low",
      data: { balance_nano_usd: String(3n * USD) },
    });
    const log = await hooks.listWebhookDeliveries({ accountId });
    expect(log.deliveries.map((d) => d.status)).toEqual([
      WebhookDeliveryStatus.DELIVERED,
      WebhookDeliveryStatus.DELIVERED,
    ]);
  });
});
