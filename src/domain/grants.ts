import type { BalanceChange } from "./metering.js";
import type { Nanos } from "./money.js";

// Free credit (issue 14): a plan may grant credit once at sign-up and each UTC month. It is the balance's free part,
// spent before paid credit, and never carries the platform fee (only top-ups do). A monthly grant tops the free part
// up to the plan's monthly amount (unused free credit does not pile up), at most once per account and month: its
// ledger row's reference is unique per account and month, so two processes granting at once grant once.

/** What a plan grants: once at sign-up, and each UTC month (0: nothing). */
export interface PlanGrants {
  signup: Nanos;
  monthly: Nanos;
}

/** The UTC month of `now` ("2026-12"): monthly grants' period. */
export function grantMonth(now: number): string {
  return new Date(now).toISOString().slice(0, 7);
}

/** The ledger reference of an account's sign-up grant, or of its grant for one month: one row each, ever. */
export function grantReference(accountId: string, month?: string): string {
  return month === undefined ? `grant:signup:${accountId}` : `grant:monthly:${accountId}:${month}`;
}

/** How much a monthly grant adds: up to the plan's amount for the free part, within the balance cap. */
export function monthlyGrantAmount(monthly: bigint, free: bigint, balance: bigint, maxBalance: bigint): bigint {
  let amount = monthly - (free > 0n ? free : 0n);
  if (amount > maxBalance - balance) amount = maxBalance - balance;
  return amount > 0n ? amount : 0n;
}

/** Grants that are due: applied in SQL transactions, announced to the credit gates like any committed change. */
export interface GrantStore {
  /**
   * Applies this month's grant to up to `limit` accounts whose plan grants monthly and that have none yet, each in
   * its own transaction; returns the balance changes to announce.
   */
  grantDue(now: number, limit: number): Promise<BalanceChange[]>;
}

/**
 * How one ledger row moves the balance's free part (plan grants, spent before paid credit): a debit takes from the
 * free part first and says how much (`took`, recorded on an expired charge); a credit gives back to the free part at
 * most `refundable`, what the charge it corrects took from it, the rest going to the paid part. Else a refund of a
 * charge paid from free credit would become paid credit, which the next monthly grant does not count.
 */
export function moveFree(free: bigint, amount: bigint, refundable: bigint): { free: bigint; took: bigint } {
  if (amount < 0n) {
    const took = free < -amount ? (free > 0n ? free : 0n) : -amount;
    return { free: free - took, took };
  }
  const back = amount < refundable ? amount : refundable > 0n ? refundable : 0n;
  return { free: free + back, took: 0n };
}
