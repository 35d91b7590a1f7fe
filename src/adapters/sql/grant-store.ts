import type { Knex } from "knex";
import { grantMonth, grantReference, monthlyGrantAmount, type GrantStore } from "../../domain/grants.js";
import type { BalanceChange } from "../../domain/metering.js";
import { MAX_BALANCE_NANOS, nanos } from "../../domain/money.js";
import { big, int, type Database } from "./database.js";

/** The grant store's port is declared with the domain (src/domain/grants.ts); re-exported for its importers. */
export type { GrantStore } from "../../domain/grants.js";

/**
 * Grants `amountFor(free part, balance)` to an account once per reference: a `grant` ledger row (unique per reference,
 * so a second process or a retry grants nothing), the balance and its free part, in the caller's transaction. The
 * balance row is locked first (PostgreSQL), so the amount is decided on the balance it is added to.
 */
export async function grantOnce(
  trx: Knex.Transaction,
  postgres: boolean,
  input: { accountId: string; reference: string; now: number; amountFor(free: bigint, balance: bigint): bigint },
): Promise<BalanceChange | undefined> {
  const { accountId, reference, now } = input;
  await trx("balances")
    .insert({ account_id: accountId, balance: 0, version: 0, free_balance: 0, updated_at: now })
    .onConflict("account_id")
    .ignore();
  let q = trx("balances").where({ account_id: accountId });
  if (postgres) q = q.forUpdate();
  const row = await q.first("balance", "free_balance", "version");
  const amount = input.amountFor(big(row.free_balance), big(row.balance));
  const inserted = await trx("ledger_entries")
    .insert({
      account_id: accountId,
      kind: "grant",
      amount: amount.toString(),
      decision_id: reference,
      estimated: false,
      created_at: now,
    })
    .onConflict(["decision_id", "kind"])
    .ignore()
    .returning("id");
  if (inserted.length === 0) return undefined;
  const after = (await trx("balances")
    .where({ account_id: accountId })
    .update({
      balance: trx.raw("balance + ?", [amount.toString()]),
      free_balance: trx.raw("free_balance + ?", [amount.toString()]),
      version: trx.raw("version + 1"),
      updated_at: now,
    })
    .returning(["balance", "version"])) as Array<Record<string, unknown>>;
  return {
    accountId,
    delta: amount,
    balance: nanos(big(after[0]!.balance)),
    version: int(after[0]!.version),
    settled: [],
  };
}

/** The plan's grants for an account: what sign-up and each month give (0n when none). */
async function planGrants(q: Knex | Knex.Transaction, accountId: string): Promise<{ signup: bigint; monthly: bigint }> {
  const row = await q("accounts")
    .join("plans", "plans.id", "accounts.plan_id")
    .where("accounts.id", accountId)
    .first("plans.grant_signup_nanos as signup", "plans.grant_monthly_nanos as monthly");
  return row ? { signup: big(row.signup), monthly: big(row.monthly) } : { signup: 0n, monthly: 0n };
}

const cap = (amount: bigint, balance: bigint) => {
  const room = MAX_BALANCE_NANOS - balance;
  return amount < room ? amount : room > 0n ? room : 0n;
};

/** A new account's grants, in its creating transaction: the plan's sign-up grant and this month's. */
export async function grantOnSignup(
  trx: Knex.Transaction,
  postgres: boolean,
  accountId: string,
  now: number,
): Promise<BalanceChange[]> {
  const grants = await planGrants(trx, accountId);
  const changes: BalanceChange[] = [];
  if (grants.signup > 0n) {
    const change = await grantOnce(trx, postgres, {
      accountId,
      reference: grantReference(accountId),
      now,
      amountFor: (_free, balance) => cap(grants.signup, balance),
    });
    if (change) changes.push(change);
  }
  if (grants.monthly > 0n) {
    const change = await grantOnce(trx, postgres, {
      accountId,
      reference: grantReference(accountId, grantMonth(now)),
      now,
      amountFor: (free, balance) => monthlyGrantAmount(grants.monthly, free, balance, MAX_BALANCE_NANOS),
    });
    if (change) changes.push(change);
  }
  return changes;
}

/**
 * Writes the free parts a commit moved (each row's move decided by `moveFree`: debits from the free part first,
 * refunds of expired charges back to it up to what they took), never below zero nor above the balance after the
 * commit (so never above MAX_BALANCE_NANOS). Rows are already locked by the commit.
 */
export async function writeFreeParts(
  trx: Knex.Transaction,
  before: ReadonlyMap<string, bigint>,
  deltas: ReadonlyMap<string, bigint>,
  balances: ReadonlyMap<string, { balance: bigint }>,
): Promise<void> {
  for (const [accountId, delta] of deltas) {
    if (delta === 0n) continue;
    let free = (before.get(accountId) ?? 0n) + delta;
    if (free > MAX_BALANCE_NANOS) free = MAX_BALANCE_NANOS;
    const balance = balances.get(accountId)?.balance;
    if (balance !== undefined && free > balance) free = balance;
    if (free < 0n) free = 0n;
    await trx("balances").where({ account_id: accountId }).update({ free_balance: free.toString() });
  }
}

/** Creates the SQL grant store: the monthly sweep over accounts whose plan grants and that have no grant this month. */
export function createGrantStore(db: Database): GrantStore {
  const { knex } = db;
  const postgres = db.dialect === "postgres";
  return {
    async grantDue(now, limit) {
      const month = grantMonth(now);
      const due = await knex("accounts")
        .join("plans", "plans.id", "accounts.plan_id")
        .where("plans.grant_monthly_nanos", ">", 0)
        .where("accounts.suspended", false)
        .whereNotExists(
          knex("ledger_entries")
            .where("ledger_entries.kind", "grant")
            .whereRaw("ledger_entries.decision_id = ('grant:monthly:' || accounts.id || ':' || ?)", [month]),
        )
        .orderBy("accounts.id")
        .limit(limit)
        .select("accounts.id as id", "plans.grant_monthly_nanos as monthly");
      const changes: BalanceChange[] = [];
      for (const row of due) {
        const monthly = big(row.monthly);
        const change = await knex.transaction((trx) =>
          grantOnce(trx, postgres, {
            accountId: row.id as string,
            reference: grantReference(row.id as string, month),
            now,
            amountFor: (free, balance) => monthlyGrantAmount(monthly, free, balance, MAX_BALANCE_NANOS),
          }),
        );
        if (change) changes.push(change);
      }
      return changes;
    },
  };
}
