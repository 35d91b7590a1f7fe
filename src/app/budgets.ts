import type { AccountView, Principal } from "../domain/admin-store.js";
import {
  budgetHolds,
  isBudgetPeriod,
  isTimeZone,
  MAX_BUDGET_NANOS,
  type Budget,
  type BudgetPeriod,
  type BudgetStatus,
} from "../domain/budgets.js";
import type { CreditReservations } from "../domain/credits.js";
import { denied, invalidField, NotFoundError } from "../domain/errors.js";
import type { KeyRecord, OverrideSetter } from "../domain/keys.js";
import { formatUsd, nanos } from "../domain/money.js";
import { audit, canSee, requireAccount, requireOperator, type AdminContext } from "./admin-context.js";
import { bigCount, id } from "./validate.js";

/** A budget as an admin call gives it: amount (0 clears) and period, each optional. */
export interface BudgetInput {
  budgetNanos?: bigint;
  budgetPeriod?: string;
}

function period(value: string, field: string): BudgetPeriod {
  if (!isBudgetPeriod(value)) throw invalidField(field, 'must be "day", "week", "month" or "lifetime"');
  return value;
}

/**
 * Validates a budget change against the current one and records who set it: `undefined` when nothing changes, else
 * the new budget (null clears) and its setter. An operator sets anything. An account may set, lower and clear its
 * own key's budget (a cap only limits it), but an operator's stands: the account may lower it, never raise or clear
 * it, nor change its period.
 */
export function checkBudget(
  who: Principal,
  input: BudgetInput,
  current: Pick<KeyRecord, "budget" | "setBy"> | undefined,
  fields = { amount: "budget_nano_usd", period: "budget_period" },
): { budget: Budget | null; setter: OverrideSetter | null } | undefined {
  if (input.budgetNanos === undefined && input.budgetPeriod === undefined) return undefined;
  const now = current?.budget ?? null;
  const operators = now !== null && current?.setBy?.budget === "operator" ? now : null;
  const amount =
    input.budgetNanos === undefined ? undefined : bigCount(input.budgetNanos, fields.amount, MAX_BUDGET_NANOS);
  const newPeriod = input.budgetPeriod === undefined ? undefined : period(input.budgetPeriod, fields.period);
  let budget: Budget | null;
  if (amount === 0n) budget = null;
  else {
    const limit = amount ?? now?.limit;
    if (limit === undefined) throw invalidField(fields.amount, "set the budget's amount with its period");
    const p = newPeriod ?? now?.period;
    if (p === undefined)
      throw invalidField(fields.period, 'required with a budget: "day", "week", "month" or "lifetime"');
    budget = { limit: nanos(limit), period: p };
  }
  if (who.kind === "operator") return { budget, setter: budget === null ? null : "operator" };
  if (operators !== null) {
    if (budget === null)
      throw denied(
        `an operator set this key's budget (USD ${formatUsd(operators.limit)} per ${operators.period}); an account may lower it but not clear it`,
        fields.amount,
      );
    if (budget.period !== operators.period)
      throw denied(
        `an operator set this key's budget per ${operators.period}; an account may not change its period`,
        fields.period,
      );
    if (budget.limit > operators.limit)
      throw denied(
        `an operator set this key's budget to USD ${formatUsd(operators.limit)}; an account may only lower it`,
        fields.amount,
      );
    return { budget, setter: "operator" };
  }
  return { budget, setter: budget === null ? null : "account" };
}

const A = "tollgate.admin.v1.AccountService/";

/** Budget use cases beside the key ones: an account's own cap and time zone, and what a key's budgets hold now. */
export type BudgetOperations = ReturnType<typeof createBudgetOperations>;

/** Creates the budget use cases; `credits` (the running gate) adds what open reservations hold. */
export function createBudgetOperations(ctx: AdminContext, credits?: Pick<CreditReservations, "budgetUsage">) {
  const { store } = ctx;
  return {
    /**
     * Sets the account's budget over all its keys and/or its time zone (operators only: an account's cap bounds
     * what its own keys' caps add up to, and is the operator's to give, like its plan).
     */
    async setAccountBudget(
      who: Principal,
      input: { accountId: string; timeZone?: string } & BudgetInput,
    ): Promise<AccountView> {
      requireOperator(who, "an account's budget and time zone are set by an operator (a key's budget by its account)");
      const accountId = id(input.accountId, "account_id");
      let timeZone: string | null | undefined;
      if (input.timeZone !== undefined) {
        if (input.timeZone !== "" && !isTimeZone(input.timeZone))
          throw invalidField("time_zone", 'must be an IANA time zone such as "Europe/Paris" (or "" for UTC)');
        timeZone = input.timeZone === "" ? null : input.timeZone;
      }
      const account = await store.transaction(async (tx) => {
        const current = await tx.account(accountId, { forUpdate: true });
        if (!current) throw new NotFoundError(`account "${accountId}" does not exist`);
        const change = checkBudget(who, input, { budget: current.budget ?? null, setBy: { budget: "operator" } });
        if (change === undefined && timeZone === undefined)
          throw invalidField("account_id", "nothing to update (set budget_nano_usd, budget_period or time_zone)");
        await tx.setAccountBudget(accountId, { budget: change?.budget, timeZone }, ctx.clock());
        await audit(ctx, tx, who, A + "SetAccountBudget", { account_id: accountId });
        return (await tx.account(accountId))!;
      });
      await ctx.events.accountChanged(accountId);
      return account;
    },
    /**
     * A key's budget and its account's, each with what is spent in the current period (the ledger's totals) and
     * what admitted requests hold (from the running credit gate, when this process has one; else 0).
     */
    async keySpend(who: Principal, keyId: string): Promise<BudgetStatus[]> {
      const key = await store.key(id(keyId, "key_id"));
      if (!key || !canSee(who, key.accountId)) throw new NotFoundError(`key "${keyId}" does not exist`);
      requireAccount(who, key.accountId);
      const account = await store.account(key.accountId);
      if (!account) throw new NotFoundError(`account "${key.accountId}" does not exist`);
      const holds = budgetHolds(key, account, ctx.clock()) ?? [];
      const spent = await store.spendTotals(
        account.id,
        holds.map((h) => h.field),
      );
      const usage = credits?.budgetUsage ? await credits.budgetUsage(account.id, key.id, holds) : undefined;
      return holds.map((h, i) => ({
        scope: h.scope,
        limit: h.limit,
        period: h.budget.period,
        start: h.window.start,
        resetsAt: h.window.end,
        spent: spent.get(h.field) ?? nanos(0n),
        held: usage?.[i]?.held ?? nanos(0n),
      }));
    },
  };
}
