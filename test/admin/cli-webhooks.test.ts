import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyWebhookSignature } from "../../src/domain/webhook-signature.js";
import { runCli, until } from "../support/cli.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";

describe("tollgate webhooks create|list|delete|deliveries over the admin API", { timeout: 120_000 }, () => {
  let h: AdminHarness;
  let env: Record<string, string>;
  let server: http.Server;
  const posts: Array<{ body: string; signature: string }> = [];
  const cli = (...args: string[]) => runCli(args, env);
  const okJson = async (...args: string[]) => {
    const r = await cli(...args, "--json");
    expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout);
  };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString("utf8")));
      req.on("end", () => {
        posts.push({ body, signature: String(req.headers["tollgate-signature"]) });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    h = await startAdmin(sqliteTarget(), {
      env: { TOLLGATE_WEBHOOKS_ALLOWED_PRIVATE_NETWORKS: "127.0.0.0/8", TOLLGATE_WEBHOOKS_POLL_INTERVAL_MS: "50" },
    });
    env = {
      TOLLGATE_ADMIN_URL: h.url,
      TOLLGATE_ADMIN_TOKEN: h.operatorToken,
      TOLLGATE_DATABASE_URL: "sqlite::memory:",
    };
  });
  afterAll(async () => {
    await h?.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("creates (secret once), lists, shows deliveries of a revocation, deletes", async () => {
    const { accountId, keyId } = await h.t.account();
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
    const created = await okJson(
      "webhooks",
      "create",
      "--account",
      accountId,
      "--url",
      url,
      "--events",
      "key.revoked,balance.low",
      "--low-balance-usd",
      "2.5",
    );
    expect(created).toMatchObject({
      account_id: accountId,
      url,
      event_types: ["key.revoked", "balance.low"],
      low_balance_threshold_nano_usd: "2500000000",
      secret: expect.stringMatching(/^whsec_/),
    });
    const listed = await okJson("webhooks", "list", "--account", accountId);
    expect(listed.map((w: { id: string }) => w.id)).toEqual([created.id]);
    expect(JSON.stringify(listed)).not.toContain(created.secret);
    const human = await cli("webhooks", "list", "--account", accountId);
    expect(human.stdout).toMatch(/key\.revoked,balance\.low\s+\$2\.5/);

    expect((await cli("keys", "revoke", keyId)).code).toBe(0);
    await until("the revocation delivered", () => posts.length === 1);
    expect(
      verifyWebhookSignature({ secret: created.secret, body: posts[0]!.body, header: posts[0]!.signature }).valid,
    ).toBe(true);
    let log: Array<Record<string, unknown>> = [];
    await until("the delivery logged as delivered", async () => {
      log = await okJson("webhooks", "deliveries", "--account", accountId);
      return log.length === 1 && log[0]!.status === "WEBHOOK_DELIVERY_STATUS_DELIVERED";
    });
    expect(log[0]).toMatchObject({
      event_type: "key.revoked",
      webhook_id: created.id,
      attempts: 1,
      last_status_code: 200,
    });
    expect((await cli("webhooks", "deliveries", "--account", accountId)).stdout).toMatch(/key\.revoked.*delivered/);

    expect(await okJson("webhooks", "delete", created.id)).toMatchObject({
      id: created.id,
      deleted_at: expect.any(String),
    });
    expect(await okJson("webhooks", "list", "--account", accountId)).toEqual([]);
  });

  it("names the field the API refused, and the flag a usage error is about", async () => {
    const { accountId } = await h.t.account();
    const bad = await cli("webhooks", "create", "--account", accountId, "--url", "https://10.0.0.7/x", "--json");
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stderr)).toMatchObject({
      error: { code: "invalid_argument", message: expect.stringMatching(/^url: .*private/) },
    });
    const usage = await cli(
      "webhooks",
      "create",
      "--account",
      accountId,
      "--url",
      "https://x.example",
      "--low-balance-usd",
      "lots",
    );
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--low-balance-usd must be an amount of USD/);
  });
});
