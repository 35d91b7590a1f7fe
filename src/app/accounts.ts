import type { AccountView, AdminRepository, Principal } from "../domain/admin-store.js";
import { newId } from "../domain/api-key.js";
import { invalidField, NotFoundError } from "../domain/errors.js";
import { audit, requireAccount, requireOperator, type AdminContext } from "./admin-context.js";
import { pageOf, pageSize } from "./page-tokens.js";
import { id, text } from "./validate.js";

const M = "tollgate.admin.v1.AccountService/";

/** Account use cases: operators create and change accounts; an account token reads only its own. */
export type AccountOperations = ReturnType<typeof createAccountOperations>;

async function activePlan(tx: AdminRepository, planId: string, field: string): Promise<void> {
  const plan = await tx.plan(planId);
  if (!plan || plan.retired) throw invalidField(field, `plan "${planId}" does not exist or is retired`);
}

/** Creates the account use cases. */
export function createAccountOperations(ctx: AdminContext) {
  const { store } = ctx;
  return {
    async create(who: Principal, input: { name: string; planId: string }): Promise<AccountView> {
      requireOperator(who);
      const name = text(input.name, "name");
      const planId = id(input.planId, "plan_id");
      const { account, grants } = await store.transaction(async (tx) => {
        await activePlan(tx, planId, "plan_id");
        const now = ctx.clock();
        const account: AccountView = {
          id: newId("acct"),
          name,
          planId,
          suspended: false,
          createdAt: now,
          updatedAt: now,
        };
        await tx.insertAccount(account);
        // The plan's free credit (sign-up and this month's grant) comes with the account: no card, no fee.
        const grants = await tx.grantOnSignup(account.id, now);
        await audit(ctx, tx, who, M + "CreateAccount", { account_id: account.id, plan_id: planId });
        return { account, grants };
      });
      for (const change of grants) await ctx.events.balanceCommitted(change);
      return account;
    },
    async get(who: Principal, accountId: string): Promise<AccountView> {
      id(accountId, "account_id");
      requireAccount(who, accountId);
      const account = await store.account(accountId);
      if (!account) throw new NotFoundError(`account "${accountId}" does not exist`);
      return account;
    },
    async list(
      who: Principal,
      page: { pageSize: number; pageToken: string },
    ): Promise<{ items: AccountView[]; nextPageToken: string }> {
      const size = pageSize(page.pageSize);
      const scope = `accounts:${who.kind === "account" ? who.accountId : "*"}`;
      const after = await ctx.pageTokens.decode(page.pageToken, scope, ["time", "id"] as const);
      const rows = await store.accounts({
        only: who.kind === "account" ? who.accountId : undefined,
        after,
        limit: size + 1,
      });
      return pageOf(ctx.pageTokens, rows, size, scope, (last) => [last.createdAt, last.id]);
    },
    async update(
      who: Principal,
      input: { accountId: string; name?: string; planId?: string; suspended?: boolean },
    ): Promise<AccountView> {
      requireOperator(who);
      const accountId = id(input.accountId, "account_id");
      const changes: { name?: string; planId?: string; suspended?: boolean } = {};
      if (input.name !== undefined) changes.name = text(input.name, "name");
      if (input.planId !== undefined) changes.planId = id(input.planId, "plan_id");
      if (input.suspended !== undefined) changes.suspended = input.suspended;
      if (Object.keys(changes).length === 0)
        throw invalidField("name", "nothing to update (set name, plan_id or suspended)");
      const account = await store.transaction(async (tx) => {
        if (changes.planId !== undefined) await activePlan(tx, changes.planId, "plan_id");
        if (!(await tx.updateAccount(accountId, changes, ctx.clock())))
          throw new NotFoundError(`account "${accountId}" does not exist`);
        await audit(ctx, tx, who, M + "UpdateAccount", { account_id: accountId });
        return (await tx.account(accountId))!;
      });
      await ctx.events.accountChanged(accountId);
      return account;
    },
  };
}
