import { Code, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../../src/gen/tollgate/admin/v1/plans_pb.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { sqliteTarget } from "../support/services.js";
import { refused } from "./admin-support.js";

/** Issue 11 item 3: an account may only narrow what its plan allows; widening is an operator's act. */
describe("an account token only narrows its keys within the plan", () => {
  let h: AdminHarness;
  let accountId: string;
  let keys: Client<typeof KeyService>;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    // The default Basic plan: 10 requests and 100,000 tokens a minute, basic-tier models only.
    accountId = (await h.client(AccountService).createAccount({ name: "Basic customer", planId: "basic" })).account!.id;
    keys = h.client(KeyService, await h.accountToken(accountId));
  });
  afterAll(() => h?.close());

  it("refuses raising a key's limits above the plan, naming the field", async () => {
    const keyId = (await keys.createKey({ accountId, name: "app" })).key!.id;
    await refused(
      keys.updateKey({ keyId, requestsPerMinute: 10_000_000 }),
      Code.PermissionDenied,
      /^requests_per_minute: .*plan allows 10/,
    );
    await refused(
      keys.updateKey({ keyId, tokensPerMinute: 100_001n }),
      Code.PermissionDenied,
      /^tokens_per_minute: .*plan allows 100000/,
    );
    await refused(
      keys.createKey({ accountId, requestsPerMinute: 11 }),
      Code.PermissionDenied,
      /^requests_per_minute: /,
    );
    expect((await keys.getKey({ keyId })).key).toMatchObject({ requestsPerMinute: 0, tokensPerMinute: 0n });
  });

  it("accepts narrowing and returning to the plan's limits", async () => {
    const keyId = (await keys.createKey({ accountId, requestsPerMinute: 5, tokensPerMinute: 1000n })).key!.id;
    expect((await keys.updateKey({ keyId, requestsPerMinute: 10, tokensPerMinute: 100_000n })).key).toMatchObject({
      requestsPerMinute: 10,
      tokensPerMinute: 100_000n,
    });
    expect((await keys.updateKey({ keyId, requestsPerMinute: 0 })).key!.requestsPerMinute).toBe(0);
  });

  it("refuses models outside the plan's tiers, naming the entry", async () => {
    await refused(
      keys.createKey({ accountId, allowedModels: ["claude-haiku-4.5", "gpt-5.5"] }),
      Code.PermissionDenied,
      /^allowed_models\[1\]: .*plan/,
    );
    const keyId = (await keys.createKey({ accountId, allowedModels: ["claude-haiku-4.5"] })).key!.id;
    await refused(
      keys.updateKey({ keyId, allowedModels: { models: ["gpt-5.5"] } }),
      Code.PermissionDenied,
      /^allowed_models\.models\[0\]: /,
    );
  });

  it("lets an operator widen a key beyond its plan", async () => {
    const keyId = (await keys.createKey({ accountId })).key!.id;
    const op = h.client(KeyService);
    expect(
      (await op.updateKey({ keyId, requestsPerMinute: 1000, allowedModels: { models: ["gpt-5.5"] } })).key,
    ).toMatchObject({ requestsPerMinute: 1000, allowedModels: ["gpt-5.5"] });
  });

  it("bounds the number of live keys by the plan's max_keys", async () => {
    const plan = (await h.client(PlanService).getPlan({ planId: "basic" })).plan!;
    expect(plan.maxKeys).toBe(10);
    const live = (await keys.listKeys({})).keys.filter((k) => !k.revokedAt).length;
    for (let i = live; i < plan.maxKeys; i++) await keys.createKey({ accountId, name: `k${i}` });
    await refused(keys.createKey({ accountId, name: "one too many" }), Code.ResourceExhausted, /max_keys.*10/);
    // A revoked key frees its place.
    const first = (await keys.listKeys({})).keys[0]!;
    await keys.revokeKey({ keyId: first.id });
    await keys.createKey({ accountId, name: "replacement" });
  });
});
