import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { AccountService, ListAccountsResponseSchema } from "../gen/tollgate/admin/v1/accounts_pb.js";
import { caller, requireAccount, requireOperator } from "./access.js";
import { audit, type AdminDeps } from "./admin-deps.js";
import { afterKeyset, decodePageToken, pageOf, pageSize } from "./page-token.js";
import { id, invalid, text } from "./validate.js";
import { accountMessage, notFound, storeCall } from "./views.js";

const M = "tollgate.admin.v1.AccountService/";

/** AccountService: operators create, list and change accounts; an account token reads only its own. */
export function accountService(deps: AdminDeps): ServiceImpl<typeof AccountService> {
  const { knex } = deps.stores.db;
  const activePlan = async (planId: string, field: string) => {
    if (!(await knex("plans").where({ id: planId, retired: false }).first("id"))) throw invalid(field, `plan "${planId}" does not exist or is retired`);
  };
  return {
    async createAccount(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const name = text(req.name, "name");
      const planId = id(req.planId, "plan_id");
      await activePlan(planId, "plan_id");
      const account = await storeCall(() => deps.stores.accounts.create({ name, planId }));
      await audit(deps, who, M + "CreateAccount", { account_id: account.id, plan_id: planId });
      return { account: accountMessage((await knex("accounts").where({ id: account.id }).first())!) };
    },
    async getAccount(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const accountId = id(req.accountId, "account_id");
      requireAccount(who, accountId);
      const row = await knex("accounts").where({ id: accountId }).first();
      if (!row) throw notFound(`account "${accountId}"`);
      return { account: accountMessage(row) };
    },
    async listAccounts(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const size = pageSize(req.pageSize);
      const scope = `accounts:${who.kind === "account" ? who.accountId : "*"}`;
      const after = decodePageToken(req.pageToken, scope, ["number", "string"]);
      let q = knex("accounts").orderBy([{ column: "created_at" }, { column: "id" }]).limit(size + 1);
      if (who.kind === "account") q = q.where({ id: who.accountId });
      const { page, nextPageToken } = pageOf(await afterKeyset(q, ["created_at", "id"], after), size, scope, (last) => [Number(last.created_at), last.id]);
      return create(ListAccountsResponseSchema, { accounts: page.map(accountMessage), nextPageToken });
    },
    async updateAccount(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const accountId = id(req.accountId, "account_id");
      const changes: Record<string, unknown> = {};
      if (req.name !== undefined) changes.name = text(req.name, "name");
      if (req.planId !== undefined) {
        await activePlan(id(req.planId, "plan_id"), "plan_id");
        changes.plan_id = req.planId;
      }
      if (req.suspended !== undefined) changes.suspended = req.suspended;
      if (Object.keys(changes).length === 0) throw invalid("name", "nothing to update (set name, plan_id or suspended)");
      changes.updated_at = deps.clock();
      if ((await knex("accounts").where({ id: accountId }).update(changes)) === 0) throw notFound(`account "${accountId}"`);
      deps.invalidate({ accountId });
      await audit(deps, who, M + "UpdateAccount", { account_id: accountId });
      return { account: accountMessage((await knex("accounts").where({ id: accountId }).first())!) };
    },
  };
}
