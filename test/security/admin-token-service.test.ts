import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { AdminTokenService } from "../../src/gen/tollgate/admin/v1/admin_tokens_pb.js";
import { AuditService } from "../../src/gen/tollgate/admin/v1/audit_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { sqliteTarget } from "../support/services.js";
import { refused } from "./admin-support.js";

/** Admin tokens over the API: operators issue and revoke them; an account token can issue none. */
describe("AdminTokenService", () => {
  let h: AdminHarness;
  let accountId: string;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    accountId = (await h.client(AccountService).createAccount({ name: "Tokened", planId: "pro" })).account!.id;
  });
  afterAll(() => h?.close());

  it("issues an account token (secret once), which reaches only its account, and revokes it for the next call", async () => {
    const tokens = h.client(AdminTokenService);
    const { token, secret } = await tokens.createAdminToken({ accountId, name: "ci" });
    expect(secret).toMatch(/^tga_[0-9A-Za-z]{40}$/);
    expect(token).toMatchObject({ kind: "account", accountId, name: "ci" });
    expect(
      JSON.stringify((await tokens.listAdminTokens({})).tokens, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
    ).not.toContain(secret);
    expect((await h.client(CreditService, secret).getBalance({ accountId })).balanceNanoUsd).toBe(0n);
    await tokens.revokeAdminToken({ tokenId: token!.id });
    await refused(h.client(CreditService, secret).getBalance({ accountId }), Code.Unauthenticated);
    const methods = (await h.client(AuditService).listAuditEvents({})).events.map((e) => e.method.split("/")[1]);
    expect(methods).toEqual(expect.arrayContaining(["CreateAdminToken", "RevokeAdminToken"]));
  });

  it("refuses an account token every token call, and names the field of a request that is neither or both", async () => {
    const mine = h.client(AdminTokenService, await h.accountToken(accountId));
    await refused(
      mine.createAdminToken({ operator: true }),
      Code.PermissionDenied,
      /only an operator may issue admin tokens/,
    );
    await refused(mine.createAdminToken({ accountId }), Code.PermissionDenied);
    await refused(mine.listAdminTokens({}), Code.PermissionDenied);
    await refused(h.client(AdminTokenService).createAdminToken({}), Code.InvalidArgument, /^operator: /);
    await refused(
      h.client(AdminTokenService).createAdminToken({ operator: true, accountId }),
      Code.InvalidArgument,
      /^operator: /,
    );
    await refused(h.client(AdminTokenService).createAdminToken({ accountId: "acct_nope" }), Code.NotFound);
  });
});
