import type { CreditGate } from "./admission.js";
import type { BudgetHold } from "./budgets.js";
import type { BalanceChange, ExpiredReservation } from "./metering.js";
import { MAX_BALANCE_NANOS, nanos, type Nanos } from "./money.js";

/**
 * A balance as a credit gate decides on it: within ±MAX_BALANCE_NANOS, so every gate computes exactly (Redis in
 * doubles) and alike. Beyond the bound the clamp only refuses what a larger balance would allow, never the reverse.
 */
export function clampBalance(balance: bigint): Nanos {
  if (balance > MAX_BALANCE_NANOS) return MAX_BALANCE_NANOS;
  if (balance < -MAX_BALANCE_NANOS) return nanos(-MAX_BALANCE_NANOS);
  return nanos(balance);
}

/**
 * A credit gate the meter keeps consistent with the SQL ledger: admission reserves through `reserve`, the meter
 * tells it what each commit changed, and the expiry sweep asks which reservations ran out.
 */
export interface CreditReservations extends CreditGate {
  /** Applies committed balance changes (each version once) and releases the reservations they settled. */
  committed(changes: readonly BalanceChange[]): Promise<void>;
  /** Reservations held longer than their time to live; they stay held until their charge is committed. */
  expired(now: number): Promise<ExpiredReservation[]>;
  /** Re-reads the balances it holds from SQL, picking up changes other processes committed (CLI top-ups). */
  refresh(): Promise<void>;
  /**
   * What each budget holds now: spent in its period (as of the last committed change this gate saw) and the open
   * reservations counted against it (the key's, or the account's). Loads the account's balance when it is not held.
   */
  budgetUsage?(accountId: string, keyId: string, budgets: readonly BudgetHold[]): Promise<BudgetUsage[]>;
  /** How many reservations are open (read-only, for the open-reservations gauge); absent where it cannot be counted. */
  openReservations?(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Releases reservations with no balance change (a commit of version −1 applies only its settled decisions): for holds
 * whose requests were never forwarded. Idempotent: a decision holding nothing, or released already, changes nothing.
 */
export function releaseReservations(
  gate: Pick<CreditReservations, "committed">,
  accountId: string,
  decisionIds: string[],
): Promise<void> {
  return gate.committed([{ accountId, delta: 0n, balance: nanos(0n), version: -1, settled: decisionIds }]);
}

/** One budget's figures as a gate holds them. */
export interface BudgetUsage {
  hold: BudgetHold;
  spent: Nanos;
  held: Nanos;
}
