import type { CreditGate } from "./admission.js";
import type { BalanceChange, ExpiredReservation } from "./metering.js";

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
  /** How many reservations are open (read-only, for the open-reservations gauge); absent where it cannot be counted. */
  openReservations?(): Promise<number>;
  close(): Promise<void>;
}
