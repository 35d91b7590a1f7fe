import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { describeStores } from "../support/services.js";
import { refused } from "./admin-support.js";

/** A page token as the old unkeyed scheme made them: anyone could compute the digest of a scope. */
function forged(cursor: unknown[], scope: string): string {
  const s = createHash("sha256").update(scope).digest("base64url").slice(0, 12);
  return Buffer.from(JSON.stringify({ c: cursor, s })).toString("base64url");
}

/** Issue 11 item 10: page tokens are authenticated, and a forged cursor never reaches the database. */
describeStores("admin page tokens", (target) => {
  let h: AdminHarness;
  let accountId: string;
  beforeAll(async () => {
    h = await startAdmin(target());
    accountId = (await h.client(AccountService).createAccount({ name: "Paged", planId: "pro" })).account!.id;
    for (let i = 0; i < 3; i++) await h.client(KeyService).createKey({ accountId, name: `k${i}` });
    await h.client(CreditService).topUp({ accountId, amountNanoUsd: 1000n, idempotencyKey: "a" });
    await h.client(CreditService).topUp({ accountId, amountNanoUsd: 1000n, idempotencyKey: "b" });
  });
  afterAll(() => h?.close());

  it("refuses a forged cursor past bigint with InvalidArgument naming page_token (was Internal on PostgreSQL)", async () => {
    const credits = h.client(CreditService);
    await refused(
      credits.listLedgerEntries({ accountId, pageToken: forged(["9999999999999999999"], `ledger:${accountId}`) }),
      Code.InvalidArgument,
      /^page_token: /,
    );
    await refused(
      credits.listLedgerEntries({
        accountId,
        pageToken: forged(["99999999999999999999999999"], `ledger:${accountId}`),
      }),
      Code.InvalidArgument,
      /^page_token: /,
    );
  });

  it("refuses a well-formed token it did not sign", async () => {
    await refused(
      h.client(KeyService).listKeys({ accountId, pageToken: forged([0, ""], `keys:${accountId}`) }),
      Code.InvalidArgument,
      /^page_token: /,
    );
    await refused(
      h.client(AccountService).listAccounts({ pageToken: "A".repeat(5000) }),
      Code.InvalidArgument,
      /^page_token: /,
    );
  });

  it("pages through with the tokens it issues, and refuses one used on another list", async () => {
    const keys = h.client(KeyService);
    const first = await keys.listKeys({ accountId, pageSize: 2 });
    expect(first.nextPageToken).not.toBe("");
    const second = await keys.listKeys({ accountId, pageSize: 2, pageToken: first.nextPageToken });
    expect([...first.keys, ...second.keys].map((k) => k.name)).toEqual(["k0", "k1", "k2"]);
    await refused(
      h.client(CreditService).listLedgerEntries({ accountId, pageToken: first.nextPageToken }),
      Code.InvalidArgument,
      /^page_token: /,
    );
    const ledger = await h.client(CreditService).listLedgerEntries({ accountId, pageSize: 1 });
    const tampered = Buffer.from(ledger.nextPageToken, "base64url");
    tampered[tampered.length - 1]! ^= 1;
    await refused(
      h.client(CreditService).listLedgerEntries({ accountId, pageSize: 1, pageToken: tampered.toString("base64url") }),
      Code.InvalidArgument,
      /^page_token: /,
    );
  });
});
