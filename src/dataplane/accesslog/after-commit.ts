import type { CreditReservations } from "../../domain/credits.js";
import type { CommitResult, UsageEvent } from "../../domain/metering.js";
import type { Logger } from "../../logging.js";

/** The billing counts of one commit, as the meter attributes them (per submitted entry, or per replayed batch). */
export interface CommitCounts {
  billed: number;
  alreadyBilled: number;
  deadLettered: number;
}

/** What a listener is told about one commit the ledger has made durable. */
export interface Committed {
  result: CommitResult;
  /** The events the commit carried (billed, already billed or refused: `result.billedDecisions` says which billed). */
  events: readonly UsageEvent[];
  counts: CommitCounts;
}

/** Work that follows a ledger commit (caches, windows, metrics); never a condition of the commit itself. */
export interface AfterCommitListener {
  /** Names the listener in the line logged if it fails. */
  readonly name: string;
  committed(commit: Committed): void | Promise<void>;
}

/** Runs the after-commit listeners of one commit. */
export interface AfterCommit {
  /** Calls every listener (in order, concurrently) and resolves when all have finished; never rejects. */
  run(commit: Committed): Promise<void>;
}

/** Options for the after-commit runner. */
export interface AfterCommitOptions {
  listeners: readonly AfterCommitListener[];
  logger: Logger;
}

/**
 * Creates the after-commit runner. SQL is the truth and is already committed when listeners run: a listener that
 * throws (synchronously or not) is logged as a warning and changes nothing about the commit or its answer.
 */
export function createAfterCommit(options: AfterCommitOptions): AfterCommit {
  const { listeners, logger } = options;
  const guarded = async (listener: AfterCommitListener, commit: Committed): Promise<void> => {
    try {
      await listener.committed(commit);
    } catch (error) {
      logger.warn({ err: error, listener: listener.name }, "after-commit listener failed; the ledger commit stands");
    }
  };
  return {
    async run(commit) {
      await Promise.all(listeners.map((listener) => guarded(listener, commit)));
    },
  };
}

/** Adds each commit's counts to running totals (metrics and logs read them). */
export function createTotalsListener(totals: CommitCounts): AfterCommitListener {
  return {
    name: "totals",
    committed({ counts }) {
      totals.billed += counts.billed;
      totals.alreadyBilled += counts.alreadyBilled;
      totals.deadLettered += counts.deadLettered;
    },
  };
}

/** Releases the reservations a commit settled and moves cached balances in the credit gate. */
export function createCreditsListener(options: { credits: CreditReservations; logger: Logger }): AfterCommitListener {
  const { credits, logger } = options;
  return {
    name: "credits",
    async committed({ result }) {
      try {
        await credits.committed(result.changes);
      } catch (error) {
        // SQL is the truth and is committed; the gate catches up by expiry and balance reloads.
        logger.warn({ err: error }, "credit gate update after ledger commit failed");
      }
    },
  };
}
