import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { refused } from "./admin-support.js";

/**
 * The hostile review of issue 11: every key change writes an audit row, is published to every replica and sends
 * in-flight key loads back to SQL, and an account token could make them without limit. Each account token has a
 * token bucket (here 1 a second, burst 5); operators are not limited.
 */
describe("admin writes are rate limited per account token", () => {
  let h: AdminHarness;
  // A clock that moves only when a test moves it, so the buckets refill exactly when told.
  const clock = { now: Date.now() };
  const account = async () => {
    const accountId = (await h.client(AccountService).createAccount({ name: "Writer", planId: "pro" })).account!.id;
    const keys = h.client(KeyService, await h.accountToken(accountId));
    return { accountId, keys };
  };
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget(), {
      env: { TOLLGATE_ADMIN_ACCOUNT_WRITES_PER_SECOND: "1", TOLLGATE_ADMIN_ACCOUNT_WRITE_BURST: "5" },
      clock: () => clock.now,
    });
  });
  afterAll(() => h?.close());

  it("refuses an account token's writes past its burst with ResourceExhausted and a retry hint, without writing", async () => {
    const { accountId, keys } = await account();
    const keyId = (await keys.createKey({ accountId, name: "k" })).key!.id;
    for (let i = 0; i < 4; i++) await keys.updateKey({ keyId, name: `n${i}` });
    for (const call of [
      () => keys.updateKey({ keyId, name: "over" }),
      () => keys.rotateKey({ keyId }),
      () => keys.revokeKey({ keyId }),
      () => keys.createKey({ accountId }),
    ]) {
      await refused(call(), Code.ResourceExhausted, /too many changes from this admin token.*retry in \d+(\.\d+)? ?s/);
    }
    const key = (await keys.getKey({ keyId })).key!;
    expect(key.name).toBe("n3");
    expect(key.revokedAt).toBeUndefined();
    // Reads are not limited.
    for (let i = 0; i < 20; i++) await keys.listKeys({});
  });

  it("refills at the configured rate", async () => {
    const { accountId, keys } = await account();
    const keyId = (await keys.createKey({ accountId })).key!.id;
    for (let i = 0; i < 4; i++) await keys.updateKey({ keyId, name: `n${i}` });
    await refused(keys.updateKey({ keyId, name: "over" }), Code.ResourceExhausted);
    clock.now += 500;
    await refused(keys.updateKey({ keyId, name: "over" }), Code.ResourceExhausted, /retry in 0\.5s/);
    clock.now += 500;
    await keys.updateKey({ keyId, name: "after a second" });
    await refused(keys.updateKey({ keyId, name: "over" }), Code.ResourceExhausted);
  });

  it("gives each token its own bucket and does not limit operators", async () => {
    const a = await account();
    const b = await account();
    const keyA = (await a.keys.createKey({ accountId: a.accountId })).key!.id;
    for (let i = 0; i < 4; i++) await a.keys.updateKey({ keyId: keyA, name: `n${i}` });
    await refused(a.keys.updateKey({ keyId: keyA, name: "over" }), Code.ResourceExhausted);
    await b.keys.createKey({ accountId: b.accountId });
    const op = h.client(KeyService);
    for (let i = 0; i < 30; i++) await op.updateKey({ keyId: keyA, name: `op${i}` });
  });
});
