import type { DeadLetter, ExpiredReservation, Ledger, UsageEvent } from "../../domain/metering.js";
import type { Logger } from "../../logging.js";
import {
  errorMessage,
  safePayload,
  storable,
  workSize,
  type CommitOutcome,
  type CommitWork,
  type Origin,
} from "./commit-work.js";

/** Options for the poison-entry isolator. */
export interface PoisonIsolatorOptions {
  ledger: Ledger;
  logger: Logger;
  clock: () => number;
  /** Tells a connection-class failure (thrown as is: spool and retry) from a logical one (isolated). */
  isUnavailable: (error: unknown) => boolean;
}

/** Commits work so that one entry the ledger refuses never takes the entries committed beside it down with it. */
export interface PoisonIsolator {
  /**
   * Commits the work in one transaction; on a logical refusal, bisects until the refused entry is alone and
   * dead-letters it with the ledger's reason. Throws connection-class failures, and a refusal it cannot isolate.
   */
  commit(work: CommitWork): Promise<CommitOutcome>;
}

/** Halves a piece of work, keeping each event with its origin. */
export function splitWork(work: CommitWork): [CommitWork, CommitWork] {
  type Item = { event: UsageEvent; origin: Origin } | { dead: DeadLetter } | { expired: ExpiredReservation };
  const items: Item[] = [
    ...work.events.map((event, i) => ({ event, origin: work.origins[i]! })),
    ...work.deadLetters.map((dead) => ({ dead })),
    ...work.expired.map((expired) => ({ expired })),
  ];
  const build = (part: Item[]): CommitWork => ({
    events: part.flatMap((it) => ("event" in it ? [it.event] : [])),
    origins: part.flatMap((it) => ("event" in it ? [it.origin] : [])),
    deadLetters: part.flatMap((it) => ("dead" in it ? [it.dead] : [])),
    expired: part.flatMap((it) => ("expired" in it ? [it.expired] : [])),
  });
  const middle = Math.ceil(items.length / 2);
  return [build(items.slice(0, middle)), build(items.slice(middle))];
}

function combine(a: CommitOutcome, b: CommitOutcome): CommitOutcome {
  return {
    billed: a.billed + b.billed,
    alreadyBilled: a.alreadyBilled + b.alreadyBilled,
    expired: a.expired + b.expired,
    deadLettered: a.deadLettered + b.deadLettered,
    billedDecisions: [...a.billedDecisions, ...b.billedDecisions],
    changes: [...a.changes, ...b.changes],
    refused: new Set([...a.refused, ...b.refused]),
  };
}

/** Creates a poison-entry isolator over a ledger (see PoisonIsolator). */
export function createPoisonIsolator(options: PoisonIsolatorOptions): PoisonIsolator {
  const { ledger, logger, clock, isUnavailable } = options;

  const deadLetterOnly = async (dead: DeadLetter, refused: Set<UsageEvent>): Promise<CommitOutcome> => ({
    ...(await ledger.commit({ events: [], expired: [], deadLetters: [dead], now: clock() })),
    refused,
  });

  /** The refused piece is down to one item: dead-letter an event, clean a dead letter, or give up (an expiry). */
  async function isolateOne(work: CommitWork, error: unknown): Promise<CommitOutcome> {
    if (work.events.length === 1) {
      const origin = work.origins[0]!;
      const reason = `ledger refused the entry: ${errorMessage(error)}`;
      const dead: DeadLetter = {
        source: origin.source,
        reason: storable(reason, 2_000),
        payload: storable(safePayload(origin)),
      };
      const outcome = await deadLetterOnly(dead, new Set(work.events));
      logger.warn({ reason: dead.reason }, "access-log entry refused by the ledger; dead-lettered");
      return outcome;
    }
    if (work.deadLetters.length === 1) {
      const d = work.deadLetters[0]!;
      const clean: DeadLetter = { source: d.source, reason: storable(d.reason, 2_000), payload: storable(d.payload) };
      if (clean.reason !== d.reason || clean.payload !== d.payload) return deadLetterOnly(clean, new Set());
    }
    throw error;
  }

  async function commit(work: CommitWork): Promise<CommitOutcome> {
    try {
      return {
        ...(await ledger.commit({
          events: work.events,
          expired: work.expired,
          deadLetters: work.deadLetters,
          now: clock(),
        })),
        refused: new Set(),
      };
    } catch (error) {
      if (isUnavailable(error)) throw error;
      if (workSize(work) <= 1) return isolateOne(work, error);
      const [first, second] = splitWork(work);
      const a = await commit(first);
      const b = await commit(second);
      return combine(a, b);
    }
  }

  return { commit };
}
