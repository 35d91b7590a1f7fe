import { classify, type Classified, type DeadLetter, type LogRecord, type UsageEvent } from "../../domain/metering.js";
import type { Logger } from "../../logging.js";
import type { DecisionVerifier } from "../signing/decision-signature.js";
import { errorMessage, safePayload, type Origin } from "./commit-work.js";
import { UnreadableEntry } from "./log-record.js";

/** One entry handed to the meter: how to lift it, and its raw form for the dead-letter table. */
export interface MeterInput {
  source: "als" | "file";
  lift(): LogRecord;
  payload(): string;
}

/** What a set of entries holds for the ledger, and what was counted without reaching it. */
export interface Intaken {
  events: UsageEvent[];
  /** The input each event came from (same order). */
  origins: Origin[];
  deadLetters: DeadLetter[];
  /** Denied requests (no decision id) and non-final entries. */
  skipped: number;
  /** Billing metadata whose signature does not verify: refused unbilled. */
  forged: number;
  /** Malformed ALS entries that no signature vouches for, past this process's sample: counted, never stored. */
  dropped: number;
}

/** Options for the meter's intake. */
export interface IntakeOptions {
  /** Only entries whose billing metadata authz signed may touch the ledger, credits or the limiter. */
  verifier: DecisionVerifier;
  logger: Logger;
  clock: () => number;
  /**
   * Malformed ALS entries whose ext_authz signature does not verify (anyone reaching the port can send them) are
   * dead-lettered at most this many per minute per process, as a sample; the rest are only counted (`dropped`).
   */
  unsignedDeadLettersPerMinute?: number;
}

/** Turns raw entries into verdicts: bill (signed only), skip, or dead-letter; never fails a batch for one entry. */
export interface Intake {
  read(inputs: readonly MeterInput[]): Intaken;
}

/** Unsigned entries are client-controlled input: one warn line per this long at most, never an error. */
const WARN_EVERY_MS = 10_000;
/** Default sample of unauthenticated malformed entries kept per minute (enough to diagnose, bounded in rows). */
export const UNSIGNED_DEAD_LETTERS_PER_MINUTE = 10;
const MINUTE_MS = 60_000;

/** A warn line summarising how many times `note` was called since the last line, at most once per WARN_EVERY_MS. */
function throttledWarn(
  logger: Logger,
  clock: () => number,
  message: string,
): (fields: Record<string, unknown>) => void {
  let warnedAt = -Infinity;
  let since = 0;
  return (fields) => {
    since++;
    if (clock() - warnedAt < WARN_EVERY_MS) return;
    warnedAt = clock();
    logger.warn({ ...fields, entries: since }, message);
    since = 0;
  };
}

/** A fixed one-minute window admitting at most `perMinute` calls. */
function perMinuteBudget(perMinute: number, clock: () => number): () => boolean {
  let windowStart = -Infinity;
  let used = 0;
  return () => {
    const now = clock();
    if (now - windowStart >= MINUTE_MS) {
      windowStart = now;
      used = 0;
    }
    if (used >= perMinute) return false;
    used++;
    return true;
  };
}

/** An entry's verdict, and whether authz's signature vouches for its billing metadata. */
interface Read {
  verdict: Classified;
  signed: boolean;
}

/** Creates the meter's intake (see Intake). */
export function createIntake(options: IntakeOptions): Intake {
  const { verifier, logger, clock } = options;
  const warnForged = throttledWarn(
    logger,
    clock,
    "access-log entries with an unsigned or altered ext_authz metadata refused unbilled (forged, or authz and meter do not share signing.secret)",
  );
  const warnDropped = throttledWarn(
    logger,
    clock,
    "malformed access-log entries without a valid authz signature dropped (counted, not stored: past this minute's dead-letter sample)",
  );
  const sample = perMinuteBudget(options.unsignedDeadLettersPerMinute ?? UNSIGNED_DEAD_LETTERS_PER_MINUTE, clock);

  function verdictOf(input: MeterInput): Read {
    try {
      const record = input.lift();
      const verdict = classify(record);
      // A malformed entry is signed too when authz's fields verify (the usage filter's part is what broke).
      const signed = verdict.kind !== "skip" && record.authz !== undefined && verifier.verify(record.authz);
      return { verdict, signed };
    } catch (error) {
      // Whatever an entry holds, it is a verdict about that entry, never a failure of its whole batch.
      return {
        verdict: {
          kind: "malformed",
          reason: error instanceof UnreadableEntry ? error.message : `unreadable entry: ${errorMessage(error)}`,
        },
        signed: false,
      };
    }
  }

  /**
   * Dead letters are rows written for whoever sent the entry. Signed ones came through authz; the file log is the
   * operator's own (reconcile). Anything else reached the port unauthenticated: a bounded sample only.
   */
  function keeps(input: MeterInput, signed: boolean): boolean {
    return signed || input.source === "file" || sample();
  }

  return {
    read(inputs) {
      const out: Intaken = { events: [], origins: [], deadLetters: [], skipped: 0, forged: 0, dropped: 0 };
      for (const input of inputs) {
        const { verdict, signed } = verdictOf(input);
        if (verdict.kind === "bill" && !signed) {
          out.forged++;
          warnForged({ source: input.source });
        } else if (verdict.kind === "bill") {
          out.events.push(verdict.event);
          // The input is its own origin: no per-entry wrapper, and the payload is rendered only if the ledger refuses it.
          out.origins.push(input);
        } else if (verdict.kind === "skip") out.skipped++;
        else if (keeps(input, signed))
          out.deadLetters.push({ source: input.source, reason: verdict.reason, payload: safePayload(input) });
        else {
          out.dropped++;
          warnDropped({ source: input.source });
        }
      }
      return out;
    },
  };
}
