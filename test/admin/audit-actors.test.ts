import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminTokenStore } from "../../src/admin/tokens.js";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { AdminTokenService } from "../../src/gen/tollgate/admin/v1/admin_tokens_pb.js";
import { AuditService } from "../../src/gen/tollgate/admin/v1/audit_pb.js";
import { CatalogueService, Tier } from "../../src/gen/tollgate/admin/v1/catalogue_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../../src/gen/tollgate/admin/v1/plans_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";

/** Every mutating admin call leaves exactly one audit record naming the token that made it. */
describe("audit records name their actor", () => {
  let h: AdminHarness;
  let operator: { id: string; secret: string };
  let account: { id: string; secret: string };
  let accountId: string;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    const tokens = createAdminTokenStore(h.t.plane.stores.db);
    const op = await tokens.create({ kind: "operator" }, "auditor");
    operator = { id: op.token.id, secret: op.secret };
    accountId = (await h.client(AccountService, operator.secret).createAccount({ name: "Audited", planId: "pro" }))
      .account!.id;
    const acct = await tokens.create({ kind: "account", accountId }, "self-service");
    account = { id: acct.token.id, secret: acct.secret };
  });
  afterAll(() => h?.close());

  /** Runs `call` and returns the audit records it added: [token id, method] pairs. */
  async function added(call: () => Promise<unknown>): Promise<Array<[string, string]>> {
    const audit = h.client(AuditService);
    const before = (await audit.listAuditEvents({ pageSize: 1 })).events[0]?.id ?? "0";
    await call();
    const events = (await audit.listAuditEvents({ pageSize: 50 })).events.filter((e) => BigInt(e.id) > BigInt(before));
    return events.map((e) => [e.tokenId, e.method.split("/")[1]!]);
  }

  it("for an operator's every mutating RPC", async () => {
    const c = <S extends Parameters<AdminHarness["client"]>[0]>(s: S) => h.client(s, operator.secret);
    let keyId = "";
    let tokenId = "";
    const calls: Array<[string, () => Promise<unknown>]> = [
      [
        "CreateAdminToken",
        async () => (tokenId = (await c(AdminTokenService).createAdminToken({ accountId, name: "x" })).token!.id),
      ],
      ["RevokeAdminToken", () => c(AdminTokenService).revokeAdminToken({ tokenId })],
      ["CreateAccount", () => c(AccountService).createAccount({ name: "Second", planId: "pro" })],
      ["UpdateAccount", () => c(AccountService).updateAccount({ accountId, name: "Renamed" })],
      ["CreateKey", async () => (keyId = (await c(KeyService).createKey({ accountId })).key!.id)],
      ["UpdateKey", () => c(KeyService).updateKey({ keyId, requestsPerMinute: 5 })],
      ["RotateKey", () => c(KeyService).rotateKey({ keyId, grace: durationFromMs(1000) })],
      ["RevokeKey", () => c(KeyService).revokeKey({ keyId })],
      ["TopUp", () => c(CreditService).topUp({ accountId, amountNanoUsd: 1000n, idempotencyKey: "audited" })],
      [
        "CreatePlan",
        () =>
          c(PlanService).createPlan({
            plan: { id: "audited", name: "Audited", requestsPerMinute: 1, tokensPerMinute: 1n, tiers: [Tier.BASIC] },
          }),
      ],
      ["UpdatePlan", () => c(PlanService).updatePlan({ planId: "audited", maxKeys: 3 })],
      ["RetirePlan", () => c(PlanService).retirePlan({ planId: "audited" })],
      [
        "CreateModel",
        () =>
          c(CatalogueService).createModel({
            model: {
              id: "audited-model",
              name: "A",
              provider: "openai",
              upstreamModel: "a",
              tier: Tier.BASIC,
              prices: {},
              contextWindow: 1000,
              maxOutputTokens: 100,
            },
          }),
      ],
      ["UpdateModel", () => c(CatalogueService).updateModel({ modelId: "audited-model", name: "B" })],
      ["RetireModel", () => c(CatalogueService).retireModel({ modelId: "audited-model" })],
    ];
    for (const [method, call] of calls) expect(await added(call), method).toEqual([[operator.id, method]]);
  });

  it("for an account token's every mutating RPC, and none for a replayed top-up or a refused call", async () => {
    const keys = h.client(KeyService, account.secret);
    let keyId = "";
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["CreateKey", async () => (keyId = (await keys.createKey({ accountId, name: "mine" })).key!.id)],
      ["UpdateKey", () => keys.updateKey({ keyId, name: "still mine" })],
      ["RotateKey", () => keys.rotateKey({ keyId })],
      ["RevokeKey", () => keys.revokeKey({ keyId })],
    ];
    for (const [method, call] of calls) expect(await added(call), method).toEqual([[account.id, method]]);
    expect(
      await added(() =>
        h.client(CreditService, operator.secret).topUp({ accountId, amountNanoUsd: 1000n, idempotencyKey: "audited" }),
      ),
    ).toEqual([]);
    expect(await added(() => keys.updateKey({ keyId, requestsPerMinute: 10_000_000 }).catch(() => undefined))).toEqual(
      [],
    );
  });
});
