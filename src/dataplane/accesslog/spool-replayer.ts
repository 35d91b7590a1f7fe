import type { DeadLetter, UsageEvent } from "../../domain/metering.js";
import type { Logger } from "../../logging.js";
import type { Batcher } from "./batcher.js";
import { errorMessage, type CommitOutcome } from "./commit-work.js";
import type { PoisonIsolator } from "./poison-isolator.js";

/** A group-commit batch the ledger could not take, as the meter parks it: events with their raw entries. */
export interface SpooledBatch {
  events: UsageEvent[];
  /** The raw entry of each event (same order), so an event the ledger refuses on replay can be dead-lettered. */
  origins: Array<{ source: DeadLetter["source"]; payload: string }>;
  deadLetters: DeadLetter[];
}

/** The meter's local durable queue (src/adapters/spool): append-only, replayed oldest first. */
export interface MeterSpool {
  /** Appends one batch durably; throws when it cannot (then the batch is reported as not committed). */
  append(batch: SpooledBatch): number;
  oldest(): { seq: number; batch: SpooledBatch } | undefined;
  /** Removes a batch once the ledger has committed it. */
  remove(seq: number): void;
  /** Sets aside a batch the ledger refuses for a logical reason, so it cannot block the queue. */
  quarantine(seq: number, reason: string): void;
  size(): number;
  close(): void;
}

/** Options for the spool replayer. */
export interface SpoolReplayerOptions {
  spool: MeterSpool;
  /** Commits a replayed batch (a poisoned entry in it is dead-lettered, not a reason to quarantine the batch). */
  isolator: PoisonIsolator;
  /** The commit slots replay shares with new batches, so replay never adds a transaction to the configured ones. */
  slots: Pick<Batcher<unknown>, "tryRun">;
  isUnavailable: (error: unknown) => boolean;
  logger: Logger;
  /** Backoff while the ledger stays down: starts at retryMinMs, doubles up to retryMaxMs. */
  retryMinMs: number;
  retryMaxMs: number;
  /** Told about each replayed batch once the ledger has committed it and it has left the spool. */
  replayed(outcome: CommitOutcome, events: readonly UsageEvent[]): Promise<void>;
}

/**
 * Parks batches while the ledger is unreachable and replays them, oldest first, once each, when it returns.
 * While anything is parked the ledger is presumed down: the meter parks new batches behind the older ones (replay
 * stays in arrival order, and a down database is not hit by every batch) and one replay loop probes it.
 */
export interface SpoolReplayer {
  /** Batches parked and not yet replayed. */
  pending(): number;
  /** Parks one batch durably; throws when the spool cannot be written. */
  append(batch: SpooledBatch): void;
  /** Makes sure a replay is scheduled (after the current backoff). */
  wake(): void;
  /** Stops replaying (what is parked stays for the next start); does not close the spool. */
  close(): void;
}

/** Creates a spool replayer; batches a previous run left behind start replaying at once. */
export function createSpoolReplayer(options: SpoolReplayerOptions): SpoolReplayer {
  const { spool, isolator, slots, isUnavailable, logger, retryMinMs, retryMaxMs } = options;
  let size = spool.size();
  let timer: NodeJS.Timeout | undefined;
  let backoff = retryMinMs;
  let closed = false;

  function schedule(delayMs: number): void {
    if (closed || timer || size === 0) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (closed) return;
      if (!slots.tryRun(replayOne)) schedule(retryMinMs);
    }, delayMs);
    timer.unref();
  }

  function failed(seq: number, error: unknown): void {
    if (isUnavailable(error)) {
      backoff = Math.min(backoff * 2, retryMaxMs);
      logger.debug({ err: error, retryInMs: backoff }, "ledger still unreachable; spool replay backing off");
      schedule(backoff);
      return;
    }
    logger.error({ err: error, seq }, "ledger refused a spooled batch; quarantined in the spool file for an operator");
    spool.quarantine(seq, errorMessage(error));
    size = Math.max(0, size - 1);
    schedule(0);
  }

  /** Replays the oldest parked batch (in a commit slot), then the next at once, or backs off while down. */
  async function replayOne(): Promise<void> {
    const next = spool.oldest();
    if (!next) {
      size = 0;
      return;
    }
    const { batch } = next;
    let outcome: CommitOutcome;
    try {
      outcome = await isolator.commit({
        events: batch.events,
        origins: batch.origins.map((o) => ({ source: o.source, payload: () => o.payload })),
        expired: [],
        deadLetters: batch.deadLetters,
      });
      spool.remove(next.seq);
    } catch (error) {
      failed(next.seq, error);
      return;
    }
    size = Math.max(0, size - 1);
    backoff = retryMinMs;
    await options.replayed(outcome, batch.events);
    logger.info(
      { seq: next.seq, billed: outcome.billed, alreadyBilled: outcome.alreadyBilled, remaining: size },
      "spooled access-log batch replayed",
    );
    schedule(0);
  }

  if (size > 0) {
    // A previous run left batches behind (it stopped or crashed while the ledger was down): replay them first.
    logger.info({ batches: size }, "replaying access-log batches left in the spool");
    schedule(0);
  }

  return {
    pending: () => size,
    append(batch) {
      spool.append(batch);
      size++;
    },
    wake: () => schedule(backoff),
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
