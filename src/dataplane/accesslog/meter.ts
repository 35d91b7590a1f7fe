import type { CreditReservations } from "../../domain/credits.js";
import { classify, type DeadLetter, type ExpiredReservation, type Ledger, type LogRecord, type UsageEvent } from "../../domain/metering.js";
import type { Logger } from "../../logging.js";
import { UnreadableEntry } from "./log-record.js";

/** One entry handed to the meter: how to lift it, and its raw form for the dead-letter table. */
export interface MeterInput {
  source: "als" | "file";
  lift(): LogRecord;
  payload(): string;
}

/** What happened to the entries of one submit. */
export interface MeterCounts {
  received: number;
  billed: number;
  alreadyBilled: number;
  /** Counted, not billed: denied requests (no decision id), non-final entries. */
  skipped: number;
  deadLettered: number;
}

/** Options for the group-commit meter. */
export interface MeterOptions {
  ledger: Ledger;
  /** Told about every commit so reservations are released and cached balances move (may be absent: reconcile). */
  credits?: CreditReservations;
  logger: Logger;
  clock?: () => number;
  /** Commit as soon as this many events are queued. */
  maxBatch?: number;
  /** Otherwise commit this long after the first queued event. */
  windowMs?: number;
  /** Transactions in flight at once. */
  concurrency?: number;
}

/** The meter: classifies entries and group-commits them to the ledger. */
export interface Meter {
  /** Queues entries; resolves once they are durably committed. Rejects only on an infrastructure fault. */
  submit(inputs: readonly MeterInput[]): Promise<MeterCounts>;
  /** Charges reservations past their time to live (through the same commit path); returns how many were charged. */
  sweepExpired(): Promise<number>;
  /** Totals since start, for metrics and logs. */
  readonly totals: MeterCounts;
  /** Commits what is queued and waits for every transaction in flight. */
  drain(): Promise<void>;
}

interface Ticket {
  events: UsageEvent[];
  expired: ExpiredReservation[];
  deadLetters: DeadLetter[];
  counts: MeterCounts;
  resolve(counts: MeterCounts): void;
  reject(error: unknown): void;
  /** For sweeps: how many charges the commit made. */
  onExpired?(charged: number): void;
}

/** Creates a meter over a ledger: many callers, few transactions (group commit). */
export function createMeter(options: MeterOptions): Meter {
  const clock = options.clock ?? Date.now;
  const maxBatch = options.maxBatch ?? 2000;
  const windowMs = options.windowMs ?? 5;
  const concurrency = options.concurrency ?? 1;
  const totals: MeterCounts = { received: 0, billed: 0, alreadyBilled: 0, skipped: 0, deadLettered: 0 };
  let queue: Ticket[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let inFlight = 0;
  const idle: Array<() => void> = [];

  function schedule(): void {
    if (queued === 0 || inFlight >= concurrency) return;
    if (queued >= maxBatch) {
      flush();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = undefined;
        flush();
      }, windowMs);
    }
  }

  function flush(): void {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (queue.length === 0 || inFlight >= concurrency) return;
    const tickets: Ticket[] = [];
    let size = 0;
    while (queue.length > 0 && size < maxBatch) {
      const t = queue.shift()!;
      tickets.push(t);
      size += t.events.length + t.expired.length + t.deadLetters.length;
    }
    queued -= size;
    inFlight++;
    void commit(tickets).finally(() => {
      inFlight--;
      if (queued > 0) {
        if (queued >= maxBatch) flush();
        else schedule();
      }
      if (inFlight === 0 && queued === 0) for (const done of idle.splice(0)) done();
    });
  }

  async function commit(tickets: Ticket[]): Promise<void> {
    try {
      const result = await options.ledger.commit({
        events: tickets.flatMap((t) => t.events),
        expired: tickets.flatMap((t) => t.expired),
        deadLetters: tickets.flatMap((t) => t.deadLetters),
        now: clock(),
      });
      // Per-ticket counts: a decision billed by this commit is billed for its first occurrence only.
      const billed = new Set(result.billedDecisions);
      for (const t of tickets) {
        for (const e of t.events) {
          if (billed.delete(e.decisionId)) t.counts.billed++;
          else t.counts.alreadyBilled++;
        }
        t.counts.deadLettered += t.deadLetters.length;
        totals.billed += t.counts.billed;
        totals.alreadyBilled += t.counts.alreadyBilled;
        totals.deadLettered += t.deadLetters.length;
      }
      if (options.credits) {
        try {
          await options.credits.committed(result.changes);
        } catch (error) {
          // SQL is the truth and is committed; the gate catches up by expiry and balance reloads.
          options.logger.warn({ err: error }, "credit gate update after ledger commit failed");
        }
      }
      for (const t of tickets) {
        t.onExpired?.(result.expired);
        t.resolve(t.counts);
      }
    } catch (error) {
      options.logger.error({ err: error }, "ledger commit failed; these entries stay unbilled until reconcile");
      for (const t of tickets) t.reject(error);
    }
  }

  function enqueue(ticket: Ticket): void {
    queue.push(ticket);
    queued += ticket.events.length + ticket.expired.length + ticket.deadLetters.length;
    if (ticket.events.length + ticket.expired.length + ticket.deadLetters.length === 0) {
      // Nothing to write (every entry was skipped): answer now.
      queue.pop();
      ticket.resolve(ticket.counts);
      return;
    }
    schedule();
  }

  return {
    totals,
    submit(inputs) {
      return new Promise<MeterCounts>((resolve, reject) => {
        const ticket: Ticket = {
          events: [],
          expired: [],
          deadLetters: [],
          counts: { received: inputs.length, billed: 0, alreadyBilled: 0, skipped: 0, deadLettered: 0 },
          resolve,
          reject,
        };
        totals.received += inputs.length;
        for (const input of inputs) {
          let verdict;
          try {
            verdict = classify(input.lift());
          } catch (error) {
            if (!(error instanceof UnreadableEntry)) throw error;
            verdict = { kind: "malformed" as const, reason: error.message };
          }
          if (verdict.kind === "bill") ticket.events.push(verdict.event);
          else if (verdict.kind === "skip") ticket.counts.skipped++;
          else ticket.deadLetters.push({ source: input.source, reason: verdict.reason, payload: input.payload() });
        }
        totals.skipped += ticket.counts.skipped;
        enqueue(ticket);
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
          expired,
          deadLetters: [],
          counts: { received: 0, billed: 0, alreadyBilled: 0, skipped: 0, deadLettered: 0 },
          resolve: () => resolve(charged),
          reject,
          onExpired: (n) => (charged = n),
        });
      });
    },
    drain() {
      flush();
      if (inFlight === 0 && queued === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}
