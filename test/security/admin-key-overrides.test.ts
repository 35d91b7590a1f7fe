import { randomUUID } from "node:crypto";
import { Code, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { envoyCheckRequest, outcome, type CheckOutcome, type CheckShape } from "../support/authz-client.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { refused } from "./admin-support.js";

/**
 * Issue 11 item 3 (and the hostile review's follow-up): who set a key's limits and models decides what admission
 * applies. An operator's value stands (above the plan if the operator chose so, and an account can only lower it);
 * an account's value only ever narrows the plan in force now, so a downgrade takes it down with the plan.
 * Every claim is proved with a real Check, not only the admin API's answer.
 */
describe("key overrides: an operator's are authoritative, an account's only narrow the current plan", () => {
  let h: AdminHarness;
  const check = async (shape: CheckShape): Promise<CheckOutcome> =>
    outcome(await h.t.authz.check(envoyCheckRequest(shape)));
  const chat = (secret: string, model: string) =>
    check({
      headers: { authorization: `Bearer ${secret}` },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 10 }),
    });
  const listed = async (secret: string) =>
    (
      JSON.parse(
        (await check({ method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${secret}` } })).body,
      ).data as Array<{ id: string }>
    ).map((m) => m.id);

  /** A funded account on `plan` with an account-token client and one key created by that token. */
  const customer = async (plan: string) => {
    const accountId = (await h.client(AccountService).createAccount({ name: `on ${plan}`, planId: plan })).account!.id;
    await h.client(CreditService).topUp({ accountId, amountNanoUsd: 100_000_000_000n, idempotencyKey: randomUUID() });
    const keys: Client<typeof KeyService> = h.client(KeyService, await h.accountToken(accountId));
    const created = await keys.createKey({ accountId, name: "app" });
    return { accountId, keys, keyId: created.key!.id, secret: created.secret };
  };

  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
  });
  afterAll(() => h?.close());

  it("an account cannot clear an operator's punitive limits or model list, only lower them", async () => {
    const { keys, keyId, secret } = await customer("pro");
    const op = h.client(KeyService);
    await op.updateKey({
      keyId,
      requestsPerMinute: 2,
      tokensPerMinute: 5000n,
      allowedModels: { models: ["claude-haiku-4.5", "gpt-oss-120b"] },
    });

    await refused(
      keys.updateKey({ keyId, requestsPerMinute: 0 }),
      Code.PermissionDenied,
      /^requests_per_minute: .*operator/,
    );
    await refused(
      keys.updateKey({ keyId, tokensPerMinute: 0n }),
      Code.PermissionDenied,
      /^tokens_per_minute: .*operator/,
    );
    await refused(
      keys.updateKey({ keyId, allowedModels: { models: [] } }),
      Code.PermissionDenied,
      /^allowed_models\.models: .*operator/,
    );
    await refused(keys.updateKey({ keyId, requestsPerMinute: 3 }), Code.PermissionDenied, /^requests_per_minute: .*2/);
    await refused(
      keys.updateKey({ keyId, allowedModels: { models: ["gpt-5.5"] } }),
      Code.PermissionDenied,
      /^allowed_models\.models\[0\]: /,
    );
    // Lowering is the account's right; the value stays the operator's, so it cannot be raised back later.
    await keys.updateKey({ keyId, requestsPerMinute: 1, allowedModels: { models: ["claude-haiku-4.5"] } });
    await refused(keys.updateKey({ keyId, requestsPerMinute: 2 }), Code.PermissionDenied, /^requests_per_minute: /);

    const first = await chat(secret, "claude-haiku-4.5");
    expect(first.allowed, first.body).toBe(true);
    expect(first.responseHeaders).toMatchObject({
      "x-ratelimit-limit-requests": "1",
      "x-ratelimit-limit-tokens": "5000",
    });
    expect((await chat(secret, "claude-haiku-4.5")).httpStatus).toBe(429);
    expect((await chat(secret, "gpt-oss-120b")).httpStatus).toBe(403);
    expect(await listed(secret)).toEqual(["claude-haiku-4.5"]);
  });

  it("a downgrade takes an account's own limits and models down to the new plan at admission", async () => {
    const { accountId, keys, keyId, secret } = await customer("pro");
    // Pro allows 600 requests and 2,000,000 tokens a minute and premium models.
    await keys.updateKey({
      keyId,
      requestsPerMinute: 600,
      tokensPerMinute: 2_000_000n,
      allowedModels: { models: ["gpt-5.5", "claude-haiku-4.5"] },
    });
    expect((await chat(secret, "gpt-5.5")).allowed).toBe(true);

    await h.client(AccountService).updateAccount({ accountId, planId: "basic" });
    // Basic: 10 requests and 100,000 tokens a minute, basic tier only.
    const allowed = await chat(secret, "claude-haiku-4.5");
    expect(allowed.allowed, allowed.body).toBe(true);
    expect(allowed.responseHeaders).toMatchObject({
      "x-ratelimit-limit-requests": "10",
      "x-ratelimit-limit-tokens": "100000",
    });
    expect((await chat(secret, "gpt-5.5")).httpStatus).toBe(403);
    expect(await listed(secret)).toEqual(["claude-haiku-4.5"]);
  });

  it("an account may clear its own narrowing (back to the plan's)", async () => {
    const { keys, keyId, secret } = await customer("basic");
    await keys.updateKey({ keyId, requestsPerMinute: 3, allowedModels: { models: ["claude-haiku-4.5"] } });
    expect((await chat(secret, "claude-haiku-4.5")).responseHeaders["x-ratelimit-limit-requests"]).toBe("3");
    await keys.updateKey({ keyId, requestsPerMinute: 0, allowedModels: { models: [] } });
    expect((await chat(secret, "gpt-oss-120b")).responseHeaders["x-ratelimit-limit-requests"]).toBe("10");
  });

  it("an operator widens a Basic key to a premium model and above the plan's limits: admitted and listed", async () => {
    const { keyId, secret } = await customer("basic");
    await h
      .client(KeyService)
      .updateKey({ keyId, requestsPerMinute: 50, allowedModels: { models: ["gpt-5.5", "claude-haiku-4.5"] } });
    const widened = await chat(secret, "gpt-5.5");
    expect(widened.allowed, widened.body).toBe(true);
    expect(widened.responseHeaders["x-ratelimit-limit-requests"]).toBe("50");
    expect(await listed(secret)).toEqual(
      ["claude-haiku-4.5", "gpt-5.5"].sort((a, b) => catalogueOrder(a) - catalogueOrder(b)),
    );
    // The operator's list is the whole scope: a plan model outside it is refused.
    expect((await chat(secret, "gpt-oss-120b")).httpStatus).toBe(403);
    const one = await check({
      method: "GET",
      path: "/v1/models/gpt-5.5",
      headers: { authorization: `Bearer ${secret}` },
    });
    expect(one.httpStatus).toBe(200);
  });
});

/** Position in catalogue/default.yaml (GET /v1/models lists in catalogue order). */
function catalogueOrder(id: string): number {
  return [
    "claude-opus-4.8",
    "claude-haiku-4.5",
    "gpt-5.5",
    "gpt-oss-120b",
    "gemini-3.1-pro",
    "gemini-2.5-flash-lite",
    "deepseek-v4-flash",
  ].indexOf(id);
}
