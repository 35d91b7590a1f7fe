import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { AuditService } from "../../src/gen/tollgate/admin/v1/audit_pb.js";
import { CatalogueService } from "../../src/gen/tollgate/admin/v1/catalogue_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../../src/gen/tollgate/admin/v1/plans_pb.js";
import { UsageService } from "../../src/gen/tollgate/admin/v1/usage_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";
import { insertUsage } from "./usage-rows.js";

async function code(call: Promise<unknown>): Promise<string> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  return error instanceof ConnectError ? Code[error.code] : "OK";
}

/** An account token reaches its own account and nothing of another's: one block per service. */
describe("account tokens are confined to their account", () => {
  let h: AdminHarness;
  let mine: { accountId: string; keyId: string; token: string };
  let theirs: { accountId: string; keyId: string };
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    const op = h.client(AccountService);
    const keys = h.client(KeyService);
    const a = (await op.createAccount({ name: "Mine", planId: "pro" })).account!.id;
    const b = (await op.createAccount({ name: "Theirs", planId: "pro" })).account!.id;
    const ka = (await keys.createKey({ accountId: a })).key!.id;
    const kb = (await keys.createKey({ accountId: b })).key!.id;
    await insertUsage(h.t.plane.stores.db.knex, { accountId: a, keyId: ka, rows: 3, start: Date.UTC(2026, 0, 1) });
    await insertUsage(h.t.plane.stores.db.knex, { accountId: b, keyId: kb, rows: 4, start: Date.UTC(2026, 0, 1) });
    mine = { accountId: a, keyId: ka, token: await h.accountToken(a) };
    theirs = { accountId: b, keyId: kb };
  });
  afterAll(() => h?.close());

  it("AccountService: sees only its own account and changes none", async () => {
    const c = h.client(AccountService, mine.token);
    expect((await c.listAccounts({})).accounts.map((a) => a.id)).toEqual([mine.accountId]);
    expect((await c.getAccount({ accountId: mine.accountId })).account!.name).toBe("Mine");
    expect(await code(c.getAccount({ accountId: theirs.accountId }))).toBe("PermissionDenied");
    expect(await code(c.updateAccount({ accountId: mine.accountId, suspended: true }))).toBe("PermissionDenied");
    expect(await code(c.createAccount({ name: "x", planId: "pro" }))).toBe("PermissionDenied");
  });

  it("KeyService: manages its own keys; another account's keys do not exist for it", async () => {
    const c = h.client(KeyService, mine.token);
    expect((await c.listKeys({})).keys.map((k) => k.id)).toEqual([mine.keyId]);
    const created = await c.createKey({ accountId: mine.accountId, name: "self-service" });
    await c.rotateKey({ keyId: created.key!.id });
    await c.updateKey({ keyId: created.key!.id, requestsPerMinute: 5 });
    await c.revokeKey({ keyId: created.key!.id });
    expect(await code(c.listKeys({ accountId: theirs.accountId }))).toBe("PermissionDenied");
    expect(await code(c.createKey({ accountId: theirs.accountId }))).toBe("PermissionDenied");
    for (const call of [
      c.getKey({ keyId: theirs.keyId }),
      c.rotateKey({ keyId: theirs.keyId }),
      c.updateKey({ keyId: theirs.keyId, name: "x" }),
      c.revokeKey({ keyId: theirs.keyId }),
    ]) {
      expect(await code(call)).toBe("NotFound");
    }
    const still = await h.client(KeyService).getKey({ keyId: theirs.keyId });
    expect(still.key!.revokedAt).toBeUndefined();
    expect(still.key!.name).toBe("");
  });

  it("CreditService: reads only its own balance and ledger, and tops up none", async () => {
    const c = h.client(CreditService, mine.token);
    expect(
      await code(c.topUp({ accountId: mine.accountId, amountNanoUsd: 1_000_000_000n, idempotencyKey: "self" })),
    ).toBe("PermissionDenied");
    await h
      .client(CreditService)
      .topUp({ accountId: mine.accountId, amountNanoUsd: 1_000_000_000n, idempotencyKey: "operator" });
    expect((await c.getBalance({ accountId: mine.accountId })).balanceNanoUsd).toBe(1_000_000_000n);
    expect((await c.listLedgerEntries({ accountId: mine.accountId })).entries).toHaveLength(2);
    expect(await code(c.getBalance({ accountId: theirs.accountId }))).toBe("PermissionDenied");
    expect(await code(c.topUp({ accountId: theirs.accountId, amountNanoUsd: 1n, idempotencyKey: "x" }))).toBe(
      "PermissionDenied",
    );
    expect(await code(c.listLedgerEntries({ accountId: theirs.accountId }))).toBe("PermissionDenied");
    expect((await h.client(CreditService).getBalance({ accountId: theirs.accountId })).balanceNanoUsd).toBe(0n);
  });

  it("UsageService: aggregates, rows and exports cover only its own usage", async () => {
    const c = h.client(UsageService, mine.token);
    const rows = await c.listUsage({});
    expect(rows.records.map((r) => r.accountId)).toEqual(Array(3).fill(mine.accountId));
    expect((await c.summarizeUsage({})).aggregates[0]!.requests).toBe(3n);
    let exported = "";
    for await (const { chunk } of c.exportUsage({})) exported += Buffer.from(chunk).toString();
    expect(exported).not.toContain(theirs.accountId);
    expect(exported.trimEnd().split("\n")).toHaveLength(4);
    expect(await code(c.listUsage({ filter: { accountId: theirs.accountId } }))).toBe("PermissionDenied");
    expect(await code(c.summarizeUsage({ filter: { accountId: theirs.accountId } }))).toBe("PermissionDenied");
    const stream = (async () => {
      for await (const _ of c.exportUsage({ filter: { accountId: theirs.accountId } })) void _;
    })();
    expect(await code(stream)).toBe("PermissionDenied");
    const http = await fetch(`${h.url}/export/usage.csv?account_id=${theirs.accountId}`, {
      headers: { authorization: `Bearer ${mine.token}` },
    });
    expect(http.status).toBe(403);
    expect(await http.text()).not.toContain(theirs.keyId);
  });

  it("PlanService, CatalogueService and AuditService are operator-only", async () => {
    expect(await code(h.client(PlanService, mine.token).listPlans({}))).toBe("PermissionDenied");
    expect(await code(h.client(PlanService, mine.token).updatePlan({ planId: "pro", requestsPerMinute: 1 }))).toBe(
      "PermissionDenied",
    );
    expect(await code(h.client(CatalogueService, mine.token).listModels({}))).toBe("PermissionDenied");
    expect(await code(h.client(CatalogueService, mine.token).retireModel({ modelId: "gpt-5.5" }))).toBe(
      "PermissionDenied",
    );
    expect(await code(h.client(AuditService, mine.token).listAuditEvents({}))).toBe("PermissionDenied");
    expect(await code(h.client(AccountService, "tga_" + "x".repeat(40)).listAccounts({}))).toBe("Unauthenticated");
  });
});
