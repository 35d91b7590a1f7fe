import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { type AccountService, ListAccountsResponseSchema } from "../gen/tollgate/admin/v1/accounts_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { accountMessage } from "./views.js";

/** AccountService: protobuf ↔ the account use cases. */
export function accountService(deps: AdminDeps): ServiceImpl<typeof AccountService> {
  const ops = deps.ops.accounts;
  return {
    async createAccount(req, ctx) {
      return {
        account: accountMessage(
          await ops.create(await caller(deps.authenticate, ctx), { name: req.name, planId: req.planId }),
        ),
      };
    },
    async getAccount(req, ctx) {
      return { account: accountMessage(await ops.get(await caller(deps.authenticate, ctx), req.accountId)) };
    },
    async listAccounts(req, ctx) {
      const { items, nextPageToken } = await ops.list(await caller(deps.authenticate, ctx), req);
      return create(ListAccountsResponseSchema, { accounts: items.map(accountMessage), nextPageToken });
    },
    async updateAccount(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      return {
        account: accountMessage(
          await ops.update(who, {
            accountId: req.accountId,
            name: req.name,
            planId: req.planId,
            suspended: req.suspended,
          }),
        ),
      };
    },
    async setAccountBudget(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      return {
        account: accountMessage(
          await deps.ops.budgets.setAccountBudget(who, {
            accountId: req.accountId,
            budgetNanos: req.budgetNanoUsd,
            budgetPeriod: req.budgetPeriod,
            timeZone: req.timeZone,
          }),
        ),
      };
    },
  };
}
