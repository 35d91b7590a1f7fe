import type { HeldDecision } from "../domain/admission.js";
import type { Logger } from "../logging.js";
import { throttled } from "./throttled.js";

/** Options for the hold releaser. */
export interface HoldReleaserOptions {
  /** The quota's release (idempotent); throws when the store cannot be reached. */
  release(held: HeldDecision): void | Promise<void>;
  logger: Logger;
  /**
   * After a hold whose script may still run late (a Redis Cluster re-sends after TRYAGAIN, MOVED or CLUSTERDOWN), a
   * successful release is repeated once this much later, so a hold that ran after the first release is given back too.
   */
  confirmAfterMs?: number;
  /** Retries stop after this long (the reservation then expires into a charge); the reservation TTL fits. */
  giveUpAfterMs?: number;
  /** Releases waiting at most; more are dropped (and logged), so an outage cannot grow memory without bound. */
  maxPending?: number;
}

/** Gives back holds in the background, retried until the store answers; see `createHoldReleaser`. */
export interface HoldReleaser {
  /** Releases `held` now and until it succeeds; `mayRunLate`: also once more after `confirmAfterMs`. */
  schedule(held: HeldDecision, mayRunLate: boolean): void;
  /** Releases scheduled and not finished (tests, and the log). */
  pending(): number;
  /** Stops retrying (shutdown): what is left expires into charges, as before this existed. */
  close(): void;
}

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 10_000;

/**
 * Releases of holds that may have been written although their Check was answered 503, or whose answer never reached
 * Envoy: asynchronous (never on the Check's path) and retried with backoff while the store is away. Each release is
 * idempotent, so repeating it, or releasing a hold that never ran, changes nothing.
 */
export function createHoldReleaser(options: HoldReleaserOptions): HoldReleaser {
  const confirmAfterMs = options.confirmAfterMs ?? 5_000;
  const giveUpAfterMs = options.giveUpAfterMs ?? 600_000;
  const maxPending = options.maxPending ?? 100_000;
  const timers = new Set<NodeJS.Timeout>();
  let pending = 0;
  let closed = false;
  const failed = throttled(10_000, (suppressed, err) =>
    options.logger.warn({ err, suppressed }, "releasing holds of unanswered Checks failed; retrying"),
  );
  const dropped = throttled(10_000, (suppressed, detail) =>
    options.logger.error(
      { ...(detail as object), suppressed },
      "holds of unanswered Checks not released (too many waiting, or the store stayed away): they expire into charges",
    ),
  );

  function later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!closed) run();
    }, ms);
    timer.unref();
    timers.add(timer);
  }

  function attempt(held: HeldDecision, started: number, wait: number, confirm: boolean, done: () => void): void {
    Promise.resolve()
      .then(() => options.release(held))
      .then(
        () => {
          if (confirm) later(confirmAfterMs, () => attempt(held, Date.now(), FIRST_RETRY_MS, false, done));
          else done();
        },
        (error: unknown) => {
          failed(error);
          if (closed) return done();
          if (Date.now() - started >= giveUpAfterMs) {
            dropped({ decisionId: held.decisionId, reason: "gave_up" });
            return done();
          }
          later(wait, () => attempt(held, started, Math.min(wait * 2, MAX_RETRY_MS), confirm, done));
        },
      );
  }

  return {
    schedule(held, mayRunLate) {
      if (closed) return;
      if (pending >= maxPending) {
        dropped({ decisionId: held.decisionId, reason: "too_many_waiting" });
        return;
      }
      pending++;
      let finished = false;
      attempt(held, Date.now(), FIRST_RETRY_MS, mayRunLate, () => {
        if (finished) return;
        finished = true;
        pending--;
      });
    },
    pending: () => pending,
    close() {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      pending = 0;
    },
  };
}
