import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../../src/gen/tollgate/admin/v1/plans_pb.js";
import { refused } from "../security/admin-support.js";
import { budgetRequest } from "../support/budgets.js";
import { outcome } from "../support/authz-client.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";

const USD = 1_000_000_000n;

describe("admin API: budgets and plan grants", () => {
  let h: AdminHarness;
  let accountId: string;
  let token: string;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    accountId = (await h.client(AccountService).createAccount({ name: "Budgeted", planId: "pro" })).account!.id;
    token = await h.accountToken(accountId);
  });
  afterAll(() => h?.close());

  it("sets a key's budget, names the field of every bad value, and shows what the period holds", async () => {
    const keys = h.client(KeyService);
    const { key } = await keys.createKey({ accountId, name: "capped" });
    const updated = await keys.updateKey({ keyId: key!.id, budgetNanoUsd: 5n * USD, budgetPeriod: "day" });
    expect(updated.key).toMatchObject({ budgetNanoUsd: 5n * USD, budgetPeriod: "day" });
    await refused(
      keys.updateKey({ keyId: key!.id, budgetPeriod: "fortnight" }),
      Code.InvalidArgument,
      /^.*budget_period: must be "day", "week", "month" or "lifetime"/,
    );
    await refused(
      keys.updateKey({ keyId: key!.id, budgetNanoUsd: 10_000_000n * USD }),
      Code.InvalidArgument,
      /budget_nano_usd: must be at most 9000000000000000/,
    );
    const { key: fresh } = await keys.createKey({ accountId, name: "fresh" });
    await refused(
      keys.updateKey({ keyId: fresh!.id, budgetNanoUsd: USD }),
      Code.InvalidArgument,
      /budget_period: required with a budget/,
    );

    const spend = await keys.getKeySpend({ keyId: key!.id });
    expect(spend.keyBudget).toMatchObject({ limitNanoUsd: 5n * USD, period: "day", spentNanoUsd: 0n });
    expect(spend.keyBudget!.resetsAt).toBeDefined();
    expect(spend.accountBudget).toBeUndefined();
  });

  it("an account may cap its own key, lower an operator's cap, but never raise or clear it", async () => {
    const own = h.client(KeyService, token);
    const { key } = await own.createKey({
      accountId,
      name: "self-capped",
      budgetNanoUsd: 2n * USD,
      budgetPeriod: "week",
    });
    expect(key).toMatchObject({ budgetNanoUsd: 2n * USD, budgetPeriod: "week" });
    expect((await own.updateKey({ keyId: key!.id, budgetNanoUsd: 0n })).key!.budgetNanoUsd).toBe(0n);

    const { key: capped } = await h.client(KeyService).createKey({ accountId, name: "operator-capped" });
    await h.client(KeyService).updateKey({ keyId: capped!.id, budgetNanoUsd: 3n * USD, budgetPeriod: "month" });
    await refused(
      own.updateKey({ keyId: capped!.id, budgetNanoUsd: 4n * USD }),
      Code.PermissionDenied,
      /may only lower it/,
    );
    await refused(own.updateKey({ keyId: capped!.id, budgetNanoUsd: 0n }), Code.PermissionDenied, /not clear it/);
    await refused(
      own.updateKey({ keyId: capped!.id, budgetPeriod: "lifetime" }),
      Code.PermissionDenied,
      /not change its period/,
    );
    expect((await own.updateKey({ keyId: capped!.id, budgetNanoUsd: USD })).key!.budgetNanoUsd).toBe(USD);
  });

  it("operators set an account's budget and time zone; the account may not; admission enforces it", async () => {
    const accounts = h.client(AccountService);
    await h.client(CreditService).topUp({ accountId, amountNanoUsd: 10n * USD, idempotencyKey: "budget-test" });
    await refused(
      accounts.setAccountBudget({ accountId, timeZone: "Mars/Olympus" }),
      Code.InvalidArgument,
      /time_zone: must be an IANA time zone/,
    );
    await refused(
      h.client(AccountService, token).setAccountBudget({ accountId, budgetNanoUsd: 0n }),
      Code.PermissionDenied,
    );
    const { account } = await accounts.setAccountBudget({
      accountId,
      budgetNanoUsd: 1n,
      budgetPeriod: "month",
      timeZone: "Europe/Paris",
    });
    expect(account).toMatchObject({ budgetNanoUsd: 1n, budgetPeriod: "month", timeZone: "Europe/Paris" });
    const { secret } = await h.client(KeyService).createKey({ accountId, name: "over" });
    const verdict = outcome(await h.t.authz.check(budgetRequest(secret)));
    expect(verdict.httpStatus).toBe(402);
    expect(verdict.error?.code).toBe("budget_exceeded");
    expect(verdict.error?.message).toMatch(
      /account's monthly budget \(USD 0\.000000001 per month\); it resets at 2\d{3}-\d\d-\d\dT23:00:00\.000Z/,
    );
    await accounts.setAccountBudget({ accountId, budgetNanoUsd: 0n });
    expect(outcome(await h.t.authz.check(budgetRequest(secret))).allowed).toBe(true);
  });

  it("plans grant free credit; a new account's balance shows it as its free part, with no fee", async () => {
    const plans = h.client(PlanService);
    await refused(
      plans.updatePlan({ planId: "pro", grantSignupNanoUsd: 2_000_000n * USD }),
      Code.InvalidArgument,
      /grant_signup_nano_usd: must be at most/,
    );
    const { plan } = await plans.updatePlan({ planId: "pro", grantSignupNanoUsd: 5n * USD });
    expect(plan).toMatchObject({ grantSignupNanoUsd: 5n * USD, grantMonthlyNanoUsd: 0n });
    expect((await plans.getPlan({ planId: "basic" })).plan!.grantMonthlyNanoUsd).toBe(USD);
    const created = (await h.client(AccountService).createAccount({ name: "Granted", planId: "pro" })).account!.id;
    const balance = await h.client(CreditService).getBalance({ accountId: created });
    expect(balance).toMatchObject({ balanceNanoUsd: 5n * USD, freeNanoUsd: 5n * USD });
    const entries = (await h.client(CreditService).listLedgerEntries({ accountId: created })).entries;
    expect(entries.map((e) => [e.kind, e.amountNanoUsd])).toEqual([["grant", 5n * USD]]);
    await plans.updatePlan({ planId: "pro", grantSignupNanoUsd: 0n });
  });
});
