import { newId } from "../../domain/api-key.js";
import type { AccountRecord } from "../../domain/keys.js";
import { bool, int, type Database } from "./database.js";

/** Accounts in SQL. */
export interface AccountStore {
  create(input: { name: string; planId: string }): Promise<AccountRecord>;
  get(id: string): Promise<AccountRecord | undefined>;
  list(): Promise<AccountRecord[]>;
}

/** Thrown when a referenced row does not exist; the CLI and admin API turn it into a specific message. */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** Maps an `accounts` row. */
export function accountFromRow(row: Record<string, unknown>): AccountRecord {
  return {
    id: row.id as string,
    name: row.name as string,
    planId: row.plan_id as string,
    suspended: bool(row.suspended),
    updatedAt: int(row.updated_at),
  };
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
      await knex("accounts").insert(row);
      return accountFromRow(row);
    },
    async get(id) {
      const row = await knex("accounts").where({ id }).first();
      return row ? accountFromRow(row) : undefined;
    },
    async list() {
      return (await knex("accounts").select().orderBy("created_at")).map(accountFromRow);
    },
  };
}
