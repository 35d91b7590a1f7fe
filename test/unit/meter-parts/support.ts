import { Writable } from "node:stream";
import { recordFromFileLine } from "../../../src/dataplane/accesslog/log-record.js";
import type { MeterInput } from "../../../src/dataplane/accesslog/meter.js";
import type { CommitResult, DeadLetter, ExpiredReservation, Ledger, UsageEvent } from "../../../src/domain/metering.js";
import { createLogger, type Logger } from "../../../src/logging.js";
import { fileLogLine } from "../../support/als-client.js";

/** A connection-class failure, as isStoreUnavailable would classify one. */
export class LedgerDown extends Error {
  override name = "LedgerDown";
}

/** Tells the fake ledger's outage from a logical refusal. */
export const isLedgerDown = (error: unknown): boolean => error instanceof LedgerDown;

/** One ledger.commit call as the fake ledger saw it. */
export interface SeenCommit {
  events: string[];
  expired: string[];
  deadLetters: DeadLetter[];
  ok: boolean;
}

/**
 * An in-memory ledger with the real one's contract: idempotent per decision id, all-or-nothing per commit. It
 * refuses (logically) any commit holding a poisoned decision id, and throws LedgerDown while `down` is set.
 */
export interface FakeLedger extends Ledger {
  down: boolean;
  poisoned: Set<string>;
  billed: string[];
  deadLetters: DeadLetter[];
  commits: SeenCommit[];
}

/** Creates a fake ledger (see FakeLedger). */
export function fakeLedger(): FakeLedger {
  const ledger: FakeLedger = {
    down: false,
    poisoned: new Set(),
    billed: [],
    deadLetters: [],
    commits: [],
    async commit(batch: {
      events: UsageEvent[];
      expired: ExpiredReservation[];
      deadLetters: DeadLetter[];
      now: number;
    }): Promise<CommitResult> {
      await Promise.resolve();
      const seen: SeenCommit = {
        events: batch.events.map((e) => e.decisionId),
        expired: batch.expired.map((e) => e.decisionId),
        deadLetters: batch.deadLetters,
        ok: false,
      };
      ledger.commits.push(seen);
      if (ledger.down) throw new LedgerDown("connection refused");
      const bad = batch.events.find((e) => ledger.poisoned.has(e.decisionId));
      if (bad) throw new Error(`value out of range for ${bad.decisionId}`);
      const billedDecisions: string[] = [];
      let alreadyBilled = 0;
      for (const e of batch.events) {
        if (ledger.billed.includes(e.decisionId) || billedDecisions.includes(e.decisionId)) alreadyBilled++;
        else billedDecisions.push(e.decisionId);
      }
      ledger.billed.push(...billedDecisions);
      ledger.deadLetters.push(...batch.deadLetters);
      seen.ok = true;
      return {
        billed: billedDecisions.length,
        alreadyBilled,
        expired: batch.expired.length,
        deadLettered: batch.deadLetters.length,
        billedDecisions,
        changes: [],
      };
    },
  };
  return ledger;
}

/** A meter input for one signed, final, billable entry. */
export function billable(decisionId: string, accountId = "acct_a"): MeterInput {
  const line = fileLogLine({ decisionId, accountId, usage: { prompt: 10, completion: 5 } });
  return { source: "file", lift: () => recordFromFileLine(line), payload: () => line };
}

/** A logger that keeps its lines, so tests can say what was (and was not) logged. */
export function recordingLogger(): {
  logger: Logger;
  lines: Array<{ level: number; msg: string } & Record<string, unknown>>;
} {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger({ level: "debug", destination }), lines };
}

/** Resolves once `ok` holds (polling), or rejects naming what never happened. */
export async function until(what: string, ok: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
