import { randomUUID } from "node:crypto";
import type { LedgerEntryView, Principal, TopUpRecord } from "../domain/admin-store.js";
import { AppError, invalidField, NotFoundError } from "../domain/errors.js";
import { formatUsd, MAX_BALANCE_NANOS, nanos, type Nanos } from "../domain/money.js";
import { audit, requireAccount, requireOperator, type AdminContext } from "./admin-context.js";
import { pageOf, pageSize } from "./page-tokens.js";
import { id, text } from "./validate.js";

const M = "tollgate.admin.v1.CreditService/";
/** One top-up is at most USD 1,000,000 (in nano-USD). */
export const MAX_TOP_UP: Nanos = nanos(1_000_000n * 1_000_000_000n);

/** A top-up's answer: the record (the first one, on a replay) and whether this call was a replay. */
export interface TopUpResult extends TopUpRecord {
  replayed: boolean;
}

/** Credit use cases: balance, idempotent operator top-ups, the ledger. */
export type CreditOperations = ReturnType<typeof createCreditOperations>;

/** Creates the credit use cases. */
export function createCreditOperations(ctx: AdminContext) {
  const { store } = ctx;
  const existing = async (accountId: string) => {
    if (!(await store.account(accountId))) throw new NotFoundError(`account "${accountId}" does not exist`);
  };
  return {
    async balance(who: Principal, accountId: string): Promise<Nanos> {
      id(accountId, "account_id");
      requireAccount(who, accountId);
      await existing(accountId);
      return (await store.balance(accountId)).balance;
    },
    /** The balance and its free part (plan grants not spent yet, spent before paid credit). */
    async balanceWithFree(who: Principal, accountId: string): Promise<{ balance: Nanos; free: Nanos }> {
      id(accountId, "account_id");
      requireAccount(who, accountId);
      await existing(accountId);
      const { balance, free } = await store.balance(accountId);
      return { balance, free: free ?? nanos(0n) };
    },
    /**
     * Adds credit C (the customer pays C plus the platform fee). Operators only: credit comes from an operator or a
     * payment integration, never from the account itself. Applied once per (account, idempotency key), atomically.
     */
    async topUp(
      who: Principal,
      input: { accountId: string; amount: bigint; idempotencyKey: string },
    ): Promise<TopUpResult> {
      const accountId = id(input.accountId, "account_id");
      requireOperator(
        who,
        "credit comes only from an operator (or a payment integration), never from the account itself",
      );
      if (input.amount <= 0n) throw invalidField("amount_nano_usd", "must be greater than zero");
      if (input.amount > MAX_TOP_UP)
        throw invalidField(
          "amount_nano_usd",
          `must be at most ${MAX_TOP_UP} (USD ${formatUsd(MAX_TOP_UP)}) per top-up`,
        );
      const amount = nanos(input.amount);
      const idempotencyKey = text(input.idempotencyKey, "idempotency_key");
      const now = ctx.clock();
      const result = await store.transaction(async (tx) => {
        if (!(await tx.account(accountId))) throw new NotFoundError(`account "${accountId}" does not exist`);
        const outcome = await tx.topUp({
          accountId,
          idempotencyKey,
          topUpId: `topup_${randomUUID()}`,
          amount,
          feeBps: ctx.platformFeeBps,
          maxBalance: MAX_BALANCE_NANOS,
          now,
        });
        switch (outcome.kind) {
          case "replayed":
            return { ...outcome.record, replayed: true, change: undefined };
          case "key_reused":
            throw new AppError(
              "failed_precondition",
              `already used for a top-up of ${outcome.record.amount} nano-USD`,
              "idempotency_key",
            );
          case "over_cap":
            // Thrown inside the transaction, so the idempotency claim rolls back with it and the key stays free.
            throw invalidField(
              "amount_nano_usd",
              `would take the balance to ${outcome.balance + amount} nano-USD; an account holds at most ${MAX_BALANCE_NANOS} (USD ${formatUsd(MAX_BALANCE_NANOS)})`,
            );
          case "applied":
            await audit(ctx, tx, who, M + "TopUp", { account_id: accountId, top_up_id: outcome.record.topUpId });
            return { ...outcome.record, replayed: false, change: outcome.change };
        }
      });
      const { change, ...answer } = result;
      if (change) await ctx.events.balanceCommitted(change);
      return answer;
    },
    async ledger(
      who: Principal,
      input: { accountId: string; pageSize: number; pageToken: string },
    ): Promise<{ items: LedgerEntryView[]; nextPageToken: string }> {
      const accountId = id(input.accountId, "account_id");
      requireAccount(who, accountId);
      await existing(accountId);
      const size = pageSize(input.pageSize);
      const scope = `ledger:${accountId}`;
      const after = await ctx.pageTokens.decode(input.pageToken, scope, ["bigint"] as const);
      const rows = await store.ledgerEntries({
        accountId,
        beforeId: after ? BigInt(after[0]) : undefined,
        limit: size + 1,
      });
      return pageOf(ctx.pageTokens, rows, size, scope, (last) => [last.id]);
    },
  };
}
