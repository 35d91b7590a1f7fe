import type { Logger } from "../../logging.js";
import type { AfterCommitListener } from "./after-commit.js";

// The usage counts are the usage filter's (unsigned; trusted because only Envoy reaches the meter), while the
// reservation is authz's signed worst case: exact for text prompts and for output (n × max_tokens), not for images
// (a flat per-image estimate) or another provider's tokenizer. A bill well above it is billed as counted, never
// refused (the provider charged it), but counted and warned about, so an operator can look at that decision.

/** How far above the signed reservation a bill may go before it is reported, in percent of the reservation. */
export const OVER_RESERVATION_MARGIN_PERCENT = 25;
/** A bill over its reservation is anyone's input too (a forged usage namespace): a warn line per this long at most. */
const WARN_EVERY_MS = 10_000;

/** True when `cost` exceeds `reserved` by more than `marginPercent` percent of it (exact integer arithmetic). */
export function overReservation(
  cost: bigint,
  reserved: bigint,
  marginPercent: number = OVER_RESERVATION_MARGIN_PERCENT,
): boolean {
  return cost * 100n > reserved * (100n + BigInt(marginPercent));
}

/** Options for the over-reservation listener. */
export interface OverReservationOptions {
  /** Running totals: `overReservation` counts first billings above the margin (metrics read it on scrape). */
  totals: { overReservation: number };
  logger: Logger;
  clock: () => number;
  marginPercent?: number;
}

/**
 * Counts each decision first billed (by this commit) above its signed reservation plus the margin, and warns at most
 * once per 10 s naming the latest such decision id and how many since the last line (no account, key or amounts).
 */
export function createOverReservationListener(options: OverReservationOptions): AfterCommitListener {
  const { totals, logger, clock } = options;
  const margin = options.marginPercent ?? OVER_RESERVATION_MARGIN_PERCENT;
  let warnedAt = -Infinity;
  let since = 0;
  return {
    name: "over-reservation",
    committed({ result, events }) {
      const firstBilled = new Set(result.billedDecisions);
      for (const e of events) {
        // Duplicates (already billed) and refused events are not first billings; each decision counts once.
        if (!firstBilled.delete(e.decisionId) || !overReservation(e.cost, e.reservedNanos, margin)) continue;
        totals.overReservation++;
        since++;
        if (clock() - warnedAt < WARN_EVERY_MS) continue;
        warnedAt = clock();
        logger.warn(
          { decisionId: e.decisionId, entries: since, marginPercent: margin },
          "billed usage exceeds the signed credit reservation by more than the margin (see tollgate_meter_usage_over_reservation_total)",
        );
        since = 0;
      }
    },
  };
}
