import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { AuditService } from "../../src/gen/tollgate/admin/v1/audit_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { sqliteTarget } from "../support/services.js";
import { refused } from "./admin-support.js";

/**
 * Issue 11 item 2: credit comes only from an operator, never from the account itself. Issue 14: or from the plan's
 * grant (Basic grants USD 1 a month), which the account cannot trigger either.
 */
describe("an account token cannot give its account credit", () => {
  let h: AdminHarness;
  let accountId: string;
  let token: string;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    accountId = (await h.client(AccountService).createAccount({ name: "Self-funder", planId: "basic" })).account!.id;
    token = await h.accountToken(accountId);
  });
  afterAll(() => h?.close());

  it("refuses TopUp with PermissionDenied and leaves the balance and the audit log untouched", async () => {
    const credits = h.client(CreditService, token);
    // All the account has is the Basic plan's free monthly grant.
    expect((await credits.getBalance({ accountId })).balanceNanoUsd).toBe(1_000_000_000n);
    await refused(
      credits.topUp({ accountId, amountNanoUsd: 1_000_000n * 1_000_000_000n, idempotencyKey: "free-money" }),
      Code.PermissionDenied,
      /credit comes only from an operator/,
    );
    expect((await credits.getBalance({ accountId })).balanceNanoUsd).toBe(1_000_000_000n);
    const events = await h.client(AuditService).listAuditEvents({});
    expect(events.events.filter((e) => e.method.endsWith("/TopUp"))).toEqual([]);
  });

  it("still lets the account read its balance and ledger, and an operator top it up", async () => {
    await h.client(CreditService).topUp({ accountId, amountNanoUsd: 5_000_000_000n, idempotencyKey: "order-1" });
    const credits = h.client(CreditService, token);
    expect((await credits.getBalance({ accountId })).balanceNanoUsd).toBe(6_000_000_000n);
    expect((await credits.listLedgerEntries({ accountId })).entries.map((e) => e.kind).sort()).toEqual([
      "grant",
      "platform_fee",
      "top_up",
    ]);
  });
});
