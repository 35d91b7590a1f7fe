import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, expect, it } from "vitest";
import { MAX_BALANCE_NANOS } from "../../src/domain/money.js";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { describeStores } from "../support/services.js";
import { refused } from "./admin-support.js";

const USD = 1_000_000_000n;

/** Issue 11 item 7: money is exact at every size the API accepts, and the API refuses what it cannot hold, naming the field. */
describeStores("admin money fields", (target) => {
  let h: AdminHarness;
  let accountId: string;
  beforeAll(async () => {
    h = await startAdmin(target());
    accountId = (await h.client(AccountService).createAccount({ name: "Big spender", planId: "pro" })).account!.id;
  });
  afterAll(() => h?.close());

  /** Calls a Connect method with a raw JSON body (numbers a typed client cannot even encode). */
  async function rawCall(path: string, body: unknown): Promise<{ status: number; code: string; message: string }> {
    const res = await fetch(`${h.url}/tollgate.admin.v1.${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${h.operatorToken}` },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { code?: string; message?: string };
    return { status: res.status, code: json.code ?? "ok", message: json.message ?? "" };
  }

  it("tops up exactly to the balance cap and refuses one nano-USD beyond it, naming amount_nano_usd", async () => {
    const credits = h.client(CreditService);
    for (let i = 0; i < 9; i++)
      await credits.topUp({ accountId, amountNanoUsd: 1_000_000n * USD, idempotencyKey: `big-${i}` });
    expect((await credits.getBalance({ accountId })).balanceNanoUsd).toBe(MAX_BALANCE_NANOS);
    await refused(
      credits.topUp({ accountId, amountNanoUsd: 1n, idempotencyKey: "one-too-many" }),
      Code.InvalidArgument,
      /^amount_nano_usd: .*9000000/,
    );
    expect((await credits.getBalance({ accountId })).balanceNanoUsd).toBe(MAX_BALANCE_NANOS);
    // Stored as an exact integer, never a floating-point REAL.
    const { knex } = h.t.plane.stores.db;
    const row = await knex("balances").where({ account_id: accountId }).first();
    expect(BigInt(row.balance)).toBe(MAX_BALANCE_NANOS);
    if (h.t.plane.stores.db.dialect === "sqlite") {
      expect((await knex.raw("select typeof(balance) as t from balances where account_id = ?", [accountId]))[0].t).toBe(
        "integer",
      );
      expect(await knex.raw("select distinct typeof(amount) as t from ledger_entries")).toEqual([{ t: "integer" }]);
    }
  });

  it("refuses amounts beyond int64 and beyond one top-up's maximum with InvalidArgument naming the field", async () => {
    for (const amount of ["9223372037000000000", "99999999999999999999999", "-1", "1.5"]) {
      const r = await rawCall("CreditService/TopUp", {
        accountId,
        amountNanoUsd: amount,
        idempotencyKey: `raw-${amount}`,
      });
      expect(r.code, amount).toBe("invalid_argument");
      expect(r.message, amount).toMatch(/amount_nano_usd/);
      expect(r.message, amount).not.toMatch(/internal/i);
    }
    await refused(
      h.client(CreditService).topUp({ accountId, amountNanoUsd: 1_000_001n * USD, idempotencyKey: "too-big" }),
      Code.InvalidArgument,
      /^amount_nano_usd: /,
    );
  });

  it("refuses out-of-range limits and prices on plans and models, naming the field", async () => {
    const plan = await rawCall("PlanService/CreatePlan", {
      plan: {
        id: "huge",
        name: "Huge",
        requestsPerMinute: 10,
        tokensPerMinute: "9223372036854775808",
        tiers: ["TIER_BASIC"],
      },
    });
    expect(plan).toMatchObject({ code: "invalid_argument" });
    expect(plan.message).toMatch(/tokens_per_minute/);
    const model = await rawCall("CatalogueService/CreateModel", {
      model: {
        id: "m",
        name: "M",
        provider: "openai",
        upstreamModel: "m",
        tier: "TIER_BASIC",
        contextWindow: 1,
        maxOutputTokens: 1,
        prices: {
          inputPicoUsdPerToken: "1",
          cachedInputPicoUsdPerToken: "1",
          outputPicoUsdPerToken: "1000000000000000001",
        },
      },
    });
    expect(model).toMatchObject({ code: "invalid_argument" });
    expect(model.message).toMatch(/model\.prices\.output_pico_usd_per_token/);
  });
});
