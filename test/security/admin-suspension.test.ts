import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { sqliteTarget } from "../support/services.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { refused } from "./admin-support.js";

/** Issue 11 item 4: suspension stops an account's keys and its admin tokens. */
describe("a suspended account's admin token stops working", () => {
  let h: AdminHarness;
  let accountId: string;
  let token: string;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    accountId = (await h.client(AccountService).createAccount({ name: "Late payer", planId: "pro" })).account!.id;
    token = await h.accountToken(accountId);
  });
  afterAll(() => h?.close());

  /** One chat completion Check with `secret`, as Envoy would send it. */
  const check = async (secret: string) =>
    outcome(
      await h.t.authz.check(
        envoyCheckRequest({
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "gpt-5.5", messages: [{ role: "user", content: "hi" }], max_tokens: 16 }),
        }),
      ),
    );

  it("stops the account's keys at once on suspension (the key cache is dropped, no poll wait)", async () => {
    await h.client(CreditService).topUp({ accountId, amountNanoUsd: 10_000_000_000n, idempotencyKey: "funding" });
    const { secret } = await h.client(KeyService).createKey({ accountId, name: "data plane" });
    expect((await check(secret)).allowed).toBe(true);
    await h.client(AccountService).updateAccount({ accountId, suspended: true });
    const refusedCheck = await check(secret);
    expect(refusedCheck).toMatchObject({ allowed: false, httpStatus: 401 });
    expect(refusedCheck.error?.message).toMatch(/suspended/);
    await h.client(AccountService).updateAccount({ accountId, suspended: false });
    expect((await check(secret)).allowed).toBe(true);
    await h.client(KeyService).revokeKey({ keyId: (await h.client(KeyService).listKeys({ accountId })).keys[0]!.id });
  });

  it("refuses every call of the account's token while suspended, and works again once reinstated", async () => {
    const keys = h.client(KeyService, token);
    await keys.createKey({ accountId, name: "before" });
    await h.client(AccountService).updateAccount({ accountId, suspended: true });
    await refused(keys.createKey({ accountId, name: "after" }), Code.PermissionDenied, /suspended/);
    await refused(keys.listKeys({}), Code.PermissionDenied, /suspended/);
    await refused(h.client(CreditService, token).getBalance({ accountId }), Code.PermissionDenied, /suspended/);
    expect((await h.client(KeyService).listKeys({ accountId })).keys.map((k) => k.name)).toEqual([
      "data plane",
      "before",
    ]);
    await h.client(AccountService).updateAccount({ accountId, suspended: false });
    expect((await keys.listKeys({})).keys).toHaveLength(2);
  });
});
