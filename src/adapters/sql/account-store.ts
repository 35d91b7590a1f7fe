import { newId } from "../../domain/api-key.js";
import { isBudgetPeriod, type Budget } from "../../domain/budgets.js";
import { nanos } from "../../domain/money.js";
import type { AccountRecord } from "../../domain/keys.js";
import { NotFoundError } from "../../domain/errors.js";
import { big, bool, int, type Database } from "./database.js";
import { grantOnSignup } from "./grant-store.js";

/** The account store's port is declared with the domain (src/domain/ports.ts); re-exported for its importers. */
export type { AccountStore } from "../../domain/ports.js";
import type { AccountStore } from "../../domain/ports.js";

/** Thrown when a referenced row does not exist; the CLI and admin API turn it into a specific message. */
export { NotFoundError } from "../../domain/errors.js";

/** Maps an `accounts` row. */
export function accountFromRow(row: Record<string, unknown>): AccountRecord {
  return {
    id: row.id as string,
    name: row.name as string,
    planId: row.plan_id as string,
    suspended: bool(row.suspended),
    budget: budgetFromRow(row),
    timeZone: (row.time_zone as string | null | undefined) ?? null,
    updatedAt: int(row.updated_at),
  };
}

/** Reads a row's budget_nanos and budget_period (keys and accounts alike); null when unset. */
export function budgetFromRow(row: Record<string, unknown>): Budget | null {
  const period = row.budget_period;
  if (row.budget_nanos === null || row.budget_nanos === undefined || typeof period !== "string") return null;
  if (!isBudgetPeriod(period)) return null;
  return { limit: nanos(big(row.budget_nanos)), period };
}

/** Creates the SQL account store. */
export function createAccountStore(db: Database, clock: () => number = Date.now): AccountStore {
  const { knex } = db;
  return {
    async create({ name, planId }) {
      const plan = await knex("plans").where({ id: planId, retired: false }).first();
      if (!plan) throw new NotFoundError(`plan "${planId}" does not exist`);
      const now = clock();
      const row = { id: newId("acct"), name, plan_id: planId, suspended: false, created_at: now, updated_at: now };
      // The plan's sign-up and monthly grants come with the account, in its transaction.
      await knex.transaction(async (trx) => {
        await trx("accounts").insert(row);
        await grantOnSignup(trx, db.dialect === "postgres", row.id, now);
      });
      return accountFromRow(row);
    },
    async get(id) {
      const row = await knex("accounts").where({ id }).first();
      return row ? accountFromRow(row) : undefined;
    },
    async list() {
      return (await knex("accounts").select().orderBy("created_at")).map(accountFromRow);
    },
    async setBudget(id, { budget, timeZone }) {
      const changes: Record<string, unknown> = { updated_at: clock() };
      if (budget !== undefined) {
        changes.budget_nanos = budget ? budget.limit : null;
        changes.budget_period = budget ? budget.period : null;
      }
      if (timeZone !== undefined) changes.time_zone = timeZone;
      if ((await knex("accounts").where({ id }).update(changes)) === 0)
        throw new NotFoundError(`account "${id}" does not exist`);
      return (await this.get(id))!;
    },
  };
}
