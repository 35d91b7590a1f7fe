import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { UsageService } from "../../src/gen/tollgate/admin/v1/usage_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { refused } from "./admin-support.js";

/**
 * Reads cost too: SummarizeUsage aggregates an account's usage log, GetKeyLimits reads SQL and the limiter, and every
 * call verifies its token. An account token (a tenant's) looping on them was an unmetered load on the database every
 * tenant shares. Every request an account token makes takes from its request bucket before any work; operators are
 * not limited.
 */
describe("admin requests are rate limited per account token", () => {
  let h: AdminHarness;
  const clock = { now: Date.now() };
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget(), {
      env: { TOLLGATE_ADMIN_ACCOUNT_REQUESTS_PER_SECOND: "2", TOLLGATE_ADMIN_ACCOUNT_REQUEST_BURST: "20" },
      clock: () => clock.now,
    });
  });
  afterAll(() => h?.close());

  it("refuses an account token's reads past its burst with ResourceExhausted (HTTP 429), then refills", async () => {
    const accountId = (await h.client(AccountService).createAccount({ name: "Reader", planId: "pro" })).account!.id;
    const token = await h.accountToken(accountId);
    const keyId = (await h.client(KeyService, token).createKey({ accountId, name: "k" })).key!.id;
    const usage = h.client(UsageService, token);
    const keys = h.client(KeyService, token);
    // The key above took one; nineteen more fit the burst.
    for (let i = 0; i < 19; i++)
      await (i % 2 ? usage.summarizeUsage({ filter: { accountId } }) : keys.getKeyLimits({ keyId }));
    await refused(keys.getKeyLimits({ keyId }), Code.ResourceExhausted, /too many requests from this admin token/);
    await refused(usage.summarizeUsage({ filter: { accountId } }), Code.ResourceExhausted, /retry in/);
    // Plain HTTP (the usage export) is refused the same way, with 429.
    const exported = await fetch(`${h.url}/export/usage.csv?account_id=${accountId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(exported.status).toBe(429);
    clock.now += 1000;
    await keys.getKeyLimits({ keyId });
    await keys.getKeyLimits({ keyId });
    await refused(keys.getKeyLimits({ keyId }), Code.ResourceExhausted);
    // Operators are not limited.
    const operator = h.client(KeyService);
    for (let i = 0; i < 50; i++) await operator.getKeyLimits({ keyId });
  });
});
