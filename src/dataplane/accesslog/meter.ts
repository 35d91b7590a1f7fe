import type { RateLimiter } from "../../domain/admission.js";
import type { CreditReservations } from "../../domain/credits.js";
import { ESTIMATE_REASONS, type EstimateReason, type Ledger } from "../../domain/metering.js";
import type { Logger } from "../../logging.js";
import type { DecisionVerifier } from "../signing/decision-signature.js";
import {
  createAfterCommit,
  createCreditsListener,
  createTotalsListener,
  type AfterCommitListener,
  type CommitCounts,
} from "./after-commit.js";
import { createBatcher } from "./batcher.js";
import { createEstimatedUsageListener } from "./estimated-usage.js";
import { safePayload, workSize, type CommitOutcome, type CommitWork } from "./commit-work.js";
import { createIntake, type MeterInput } from "./intake.js";
import { createOverReservationListener } from "./over-reservation.js";
import { createPoisonIsolator } from "./poison-isolator.js";
import { createSettleWindowsListener } from "./settle-windows.js";
import { createSpoolReplayer, type MeterSpool } from "./spool-replayer.js";

export type { MeterInput } from "./intake.js";
export type { MeterSpool, SpooledBatch } from "./spool-replayer.js";

/** What happened to the entries of one submit. */
export interface MeterCounts {
  received: number;
  billed: number;
  alreadyBilled: number;
  /** Counted, not billed: denied requests (no decision id), non-final entries. */
  skipped: number;
  deadLettered: number;
  /** Refused unbilled: billing metadata whose signature does not verify (forged, altered, or an unknown secret). */
  forged: number;
  /** Written to the local spool because the ledger was unreachable; billed when it returns. */
  spooled: number;
  /** Malformed ALS entries no signature vouches for, past the per-minute dead-letter sample: counted, not stored. */
  dropped: number;
}

/** The meter's totals since start: its counts, first billings above their signed reservation and margin, and first
 * billings that are estimates, by reason. */
export interface MeterTotals extends MeterCounts {
  overReservation: number;
  estimated: Record<EstimateReason, number>;
}

/** Options for the group-commit meter. */
export interface MeterOptions {
  ledger: Ledger;
  /** Checks each billable entry's signature before anything reaches the ledger; entries that fail are never billed. */
  verifier: DecisionVerifier;
  /** Told about every commit so reservations are released and cached balances move (may be absent: reconcile). */
  credits?: CreditReservations;
  /** Told each billed request's actual tokens, so its key's window holds usage instead of the admission's reservation. */
  limiter?: Pick<RateLimiter, "settle">;
  logger: Logger;
  clock?: () => number;
  /** Commit as soon as this many events are queued. */
  maxBatch?: number;
  /** Otherwise commit this long after the first queued event. */
  windowMs?: number;
  /** Transactions in flight at once. */
  concurrency?: number;
  /** Where batches go while the ledger is unreachable (absent: such batches are rejected, as reconcile wants). */
  spool?: MeterSpool;
  /** Tells a connection-class failure (spool and retry) from a logical one (never retried as is). */
  isUnavailable?: (error: unknown) => boolean;
  /** Unauthenticated malformed ALS entries dead-lettered per minute, as a sample (default 10); the rest are dropped. */
  unsignedDeadLettersPerMinute?: number;
  /** Replay backoff while the ledger stays down: starts at retryMinMs, doubles up to retryMaxMs. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** More work after each commit (e.g. webhook alerts); never a condition of the commit. */
  listeners?: readonly AfterCommitListener[];
}

/** The meter: classifies entries and group-commits them to the ledger. */
export interface Meter {
  /**
   * Queues entries; resolves once they are durably committed, or durably spooled when the ledger is unreachable
   * (`spooled` in the counts). Rejects only on an infrastructure fault that the spool could not absorb.
   */
  submit(inputs: readonly MeterInput[]): Promise<MeterCounts>;
  /** Charges reservations past their time to live (through the same commit path); returns how many were charged. */
  sweepExpired(): Promise<number>;
  /** Totals since start, for metrics and logs. */
  readonly totals: MeterTotals;
  /** Batches waiting in the spool for the ledger to come back (0 without a spool). */
  spooled(): number;
  /** Commits (or spools) what is queued and waits for every transaction in flight; does not wait for the spool. */
  drain(): Promise<void>;
  /** Drains, stops replaying and closes the spool; what is still spooled is replayed at the next start. */
  close(): Promise<void>;
}

/** One submit (or sweep) waiting in the queue: its work and how to answer it. */
interface Ticket extends CommitWork {
  counts: MeterCounts;
  resolve(counts: MeterCounts): void;
  reject(error: unknown): void;
  /** For sweeps: how many charges the commit made. */
  onExpired?(charged: number): void;
}

/** Counts of nothing yet (`received` entries taken in): the start of every tally of meter outcomes. */
export const zeroCounts = (received = 0): MeterCounts => ({
  received,
  billed: 0,
  alreadyBilled: 0,
  skipped: 0,
  deadLettered: 0,
  forged: 0,
  spooled: 0,
  dropped: 0,
});

/** No estimated billings yet, every reason present (metrics export each from the start). */
export const zeroEstimated = (): Record<EstimateReason, number> =>
  Object.fromEntries(ESTIMATE_REASONS.map((r) => [r, 0])) as Record<EstimateReason, number>;

/** For a meter that only sweeps expired reservations (roles other than the meter): it has no entries to verify. */
export const VERIFY_NOTHING: DecisionVerifier = { verify: () => false };

/** Merges the tickets of one batch into one commit's work. */
function merged(tickets: readonly Ticket[]): CommitWork {
  return {
    events: tickets.flatMap((t) => t.events),
    origins: tickets.flatMap((t) => t.origins),
    expired: tickets.flatMap((t) => t.expired),
    deadLetters: tickets.flatMap((t) => t.deadLetters),
  };
}

/** Per-ticket counts of a commit (a decision billed by it is billed for its first occurrence only); returns the sums. */
function attribute(outcome: CommitOutcome, tickets: readonly Ticket[]): CommitCounts {
  const billed = new Set(outcome.billedDecisions);
  const sum: CommitCounts = { billed: 0, alreadyBilled: 0, deadLettered: 0 };
  for (const t of tickets) {
    for (const e of t.events) {
      if (outcome.refused.has(e)) t.counts.deadLettered++;
      else if (billed.delete(e.decisionId)) t.counts.billed++;
      else t.counts.alreadyBilled++;
    }
    t.counts.deadLettered += t.deadLetters.length;
    sum.billed += t.counts.billed;
    sum.alreadyBilled += t.counts.alreadyBilled;
    sum.deadLettered += t.counts.deadLettered;
  }
  return sum;
}

/**
 * Creates a meter over a ledger: many callers, few transactions (group commit). Composed of an intake (verdicts,
 * signatures), a batcher, a poison-entry isolator, a spool replayer and after-commit listeners (totals, rate-limit
 * windows, credit gate).
 */
export function createMeter(options: MeterOptions): Meter {
  const { ledger, logger, spool } = options;
  const clock = options.clock ?? Date.now;
  const isUnavailable = options.isUnavailable ?? (() => false);
  const totals: MeterTotals = { ...zeroCounts(), overReservation: 0, estimated: zeroEstimated() };
  const intake = createIntake({
    verifier: options.verifier,
    logger,
    clock,
    unsignedDeadLettersPerMinute: options.unsignedDeadLettersPerMinute,
  });
  const isolator = createPoisonIsolator({ ledger, logger, clock, isUnavailable });
  const listeners: AfterCommitListener[] = [
    createTotalsListener(totals),
    createOverReservationListener({ totals, logger, clock }),
    createEstimatedUsageListener({ totals, logger, clock }),
  ];
  if (options.limiter) listeners.push(createSettleWindowsListener({ limiter: options.limiter, logger, clock }));
  if (options.credits) listeners.push(createCreditsListener({ credits: options.credits, logger }));
  listeners.push(...(options.listeners ?? []));
  const afterCommit = createAfterCommit({ listeners, logger });
  const batcher = createBatcher<Ticket>({
    maxBatch: options.maxBatch ?? 2000,
    windowMs: options.windowMs ?? 5,
    concurrency: options.concurrency ?? 1,
    sizeOf: workSize,
    commit: commitTickets,
  });
  const replayer =
    spool &&
    createSpoolReplayer({
      spool,
      isolator,
      slots: batcher,
      isUnavailable,
      logger,
      retryMinMs: options.retryMinMs ?? 100,
      retryMaxMs: options.retryMaxMs ?? 5_000,
      replayed: (outcome, events) => afterCommit.run({ result: outcome, events, counts: outcome }),
    });

  async function commitTickets(tickets: Ticket[]): Promise<void> {
    if (replayer && replayer.pending() > 0) {
      park(tickets, new Error("the ledger is unavailable; earlier batches are still spooled"));
      return;
    }
    let outcome: CommitOutcome;
    try {
      outcome = await isolator.commit(merged(tickets));
    } catch (error) {
      if (replayer && isUnavailable(error)) {
        logger.warn({ err: error }, "ledger unreachable; spooling access-log batches until it returns");
        park(tickets, error);
        return;
      }
      logger.error({ err: error }, "ledger commit failed; these entries stay unbilled until reconcile");
      for (const t of tickets) t.reject(error);
      return;
    }
    const counts = attribute(outcome, tickets);
    await afterCommit.run({ result: outcome, events: tickets.flatMap((t) => t.events), counts });
    for (const t of tickets) {
      t.onExpired?.(outcome.expired);
      t.resolve(t.counts);
    }
  }

  /** Parks the tickets' events and dead letters in the spool (one durable append) and answers them as spooled. */
  function park(tickets: Ticket[], cause: unknown): void {
    const writable = tickets.filter((t) => t.events.length + t.deadLetters.length > 0);
    if (writable.length > 0) {
      try {
        replayer!.append({
          events: writable.flatMap((t) => t.events),
          origins: writable.flatMap((t) => t.origins.map((o) => ({ source: o.source, payload: safePayload(o) }))),
          deadLetters: writable.flatMap((t) => t.deadLetters),
        });
      } catch (error) {
        logger.error(
          { err: error },
          "ledger unreachable and the spool cannot be written; these entries stay unbilled until reconcile",
        );
        for (const t of tickets) t.reject(error);
        return;
      }
    }
    for (const t of tickets) {
      if (t.expired.length > 0) {
        // Expired reservations are not spooled: they stay held in the credit gate and the next sweep finds them.
        t.reject(cause);
        continue;
      }
      t.counts.spooled += t.events.length + t.deadLetters.length;
      totals.spooled += t.counts.spooled;
      t.resolve(t.counts);
    }
    replayer!.wake();
  }

  function enqueue(ticket: Ticket): void {
    // Nothing to write (every entry was skipped): answer now.
    if (workSize(ticket) === 0) ticket.resolve(ticket.counts);
    else batcher.add(ticket);
  }

  const meter: Meter = {
    totals,
    submit(inputs) {
      return new Promise<MeterCounts>((resolve, reject) => {
        totals.received += inputs.length;
        const read = intake.read(inputs);
        const counts: MeterCounts = {
          ...zeroCounts(inputs.length),
          skipped: read.skipped,
          forged: read.forged,
          dropped: read.dropped,
        };
        totals.forged += read.forged;
        totals.dropped += read.dropped;
        totals.skipped += read.skipped;
        enqueue({
          events: read.events,
          origins: read.origins,
          expired: [],
          deadLetters: read.deadLetters,
          counts,
          resolve,
          reject,
        });
      });
    },
    async sweepExpired() {
      if (!options.credits) return 0;
      const expired = await options.credits.expired(clock());
      if (expired.length === 0) return 0;
      return new Promise<number>((resolve, reject) => {
        let charged = 0;
        enqueue({
          events: [],
          origins: [],
          expired,
          deadLetters: [],
          counts: zeroCounts(),
          resolve: () => resolve(charged),
          reject,
          onExpired: (n) => (charged = n),
        });
      });
    },
    spooled: () => replayer?.pending() ?? 0,
    drain: () => batcher.drain(),
    async close() {
      await batcher.drain();
      replayer?.close();
      // A replay that was in flight has finished: drain waits for every commit slot.
      await batcher.drain();
      spool?.close();
    },
  };
  return meter;
}
