import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { runCli } from "../support/cli.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";

/** KeyService/GetKeyLimits: a key's rate-limit windows now, as the limiter the data plane admits against holds them. */
describe("admin API: a key's limits now", () => {
  let h: AdminHarness;
  let mine: { accountId: string; token: string };
  let theirs: { accountId: string; keyId: string };
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    const accounts = h.client(AccountService);
    mine = { accountId: (await accounts.createAccount({ name: "Mine", planId: "pro" })).account!.id, token: "" };
    mine.token = await h.accountToken(mine.accountId);
    const other = (await accounts.createAccount({ name: "Theirs", planId: "pro" })).account!.id;
    theirs = { accountId: other, keyId: (await h.client(KeyService).createKey({ accountId: other })).key!.id };
    await h
      .client(CreditService)
      .topUp({ accountId: mine.accountId, amountNanoUsd: 10_000_000_000n, idempotencyKey: "limits" });
  });
  afterAll(() => h?.close());

  it("reads the windows the Checks used, with the key's own limits, without admitting anything", async () => {
    const keys = h.client(KeyService, mine.token);
    const created = await keys.createKey({ accountId: mine.accountId, requestsPerMinute: 5, requestsPerDay: 50 });
    const before = await keys.getKeyLimits({ keyId: created.key!.id });
    expect(before.live).toBe(true);
    expect(before.requestsPerMinute).toMatchObject({ limit: 5n, remaining: 5n });
    expect(before.requestsPerDay).toMatchObject({ limit: 50n, remaining: 50n });
    expect(before.tokensPerDay).toBeUndefined();
    for (let i = 0; i < 2; i++) {
      const check = envoyCheckRequest({
        headers: { authorization: `Bearer ${created.secret}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-5.5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(outcome(await h.t.authz.check(check)).allowed).toBe(true);
    }
    const after = await keys.getKeyLimits({ keyId: created.key!.id });
    expect(after.requestsPerMinute).toMatchObject({ limit: 5n, remaining: 3n });
    expect(after.requestsPerMinute!.resetSeconds).toBeGreaterThan(0);
    expect(after.requestsPerDay).toMatchObject({ limit: 50n, remaining: 48n });
    expect(after.tokensPerMinute!.remaining).toBeLessThan(after.tokensPerMinute!.limit);
    // Reading is not admitting: the windows are where the two Checks left them.
    expect((await keys.getKeyLimits({ keyId: created.key!.id })).requestsPerMinute!.remaining).toBe(3n);
  });

  it("tollgate keys limits prints the same windows (a table, or the API's JSON)", { timeout: 60_000 }, async () => {
    const key = await h.client(KeyService).createKey({ accountId: mine.accountId, requestsPerMinute: 4 });
    const env = { TOLLGATE_ADMIN_URL: h.url, TOLLGATE_ADMIN_TOKEN: mine.token, TOLLGATE_REDIS_URL: "" };
    const asJson = await runCli(["keys", "limits", key.key!.id, "--json"], env);
    expect(asJson.code, asJson.stderr).toBe(0);
    expect(JSON.parse(asJson.stdout)).toMatchObject({
      live: true,
      requests_per_minute: { limit: "4", remaining: "4" },
    });
    const table = await runCli(["keys", "limits", key.key!.id], env);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/requests per minute\s+4\s+4\s+0/);
  });

  it("another account's key does not exist for an account token", async () => {
    const error = await h
      .client(KeyService, mine.token)
      .getKeyLimits({ keyId: theirs.keyId })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.NotFound);
    expect((await h.client(KeyService).getKeyLimits({ keyId: theirs.keyId })).requestsPerMinute!.remaining).toBe(
      (await h.client(KeyService).getKeyLimits({ keyId: theirs.keyId })).requestsPerMinute!.limit,
    );
  });
});
