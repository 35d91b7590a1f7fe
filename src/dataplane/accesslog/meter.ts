import type { RateLimiter } from "../../domain/admission.js";
import type { CreditReservations } from "../../domain/credits.js";
import {
  classify,
  type Classified,
  type CommitResult,
  type DeadLetter,
  type ExpiredReservation,
  type Ledger,
  type LogRecord,
  type UsageEvent,
} from "../../domain/metering.js";
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
  /** Written to the local spool because the ledger was unreachable; billed when it returns. */
  spooled: number;
}

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

/** Options for the group-commit meter. */
export interface MeterOptions {
  ledger: Ledger;
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
  /** Replay backoff while the ledger stays down: starts at retryMinMs, doubles up to retryMaxMs. */
  retryMinMs?: number;
  retryMaxMs?: number;
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
  readonly totals: MeterCounts;
  /** Batches waiting in the spool for the ledger to come back (0 without a spool). */
  spooled(): number;
  /** Commits (or spools) what is queued and waits for every transaction in flight; does not wait for the spool. */
  drain(): Promise<void>;
  /** Drains, stops replaying and closes the spool; what is still spooled is replayed at the next start. */
  close(): Promise<void>;
}

/** Where an event came from, rendered only if the ledger refuses it. */
interface Origin {
  source: DeadLetter["source"];
  payload(): string;
}

/** One commit's worth of work. */
interface Work {
  events: UsageEvent[];
  origins: Origin[];
  expired: ExpiredReservation[];
  deadLetters: DeadLetter[];
}

/** One submit (or sweep) waiting in the queue: its work and how to answer it. */
interface Ticket extends Work {
  counts: MeterCounts;
  resolve(counts: MeterCounts): void;
  reject(error: unknown): void;
  /** For sweeps: how many charges the commit made. */
  onExpired?(charged: number): void;
}

/** A commit result, plus the events the ledger refused and that went to dead letters instead. */
type Outcome = CommitResult & { refused: Set<UsageEvent> };

const zeroCounts = (received = 0): MeterCounts => ({ received, billed: 0, alreadyBilled: 0, skipped: 0, deadLettered: 0, spooled: 0 });

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Text columns cannot hold NUL in PostgreSQL; a dead letter must always be storable. */
function storable(text: string, max = 65_536): string {
  const clean = text.replace(/\u0000/g, "\\u0000");
  return clean.length > max ? `${clean.slice(0, max)}…(truncated)` : clean;
}

function safePayload(origin: Origin): string {
  try {
    return origin.payload();
  } catch (error) {
    return JSON.stringify({ unrenderable: message(error) });
  }
}

/** Creates a meter over a ledger: many callers, few transactions (group commit). */
export function createMeter(options: MeterOptions): Meter {
  const clock = options.clock ?? Date.now;
  const maxBatch = options.maxBatch ?? 2000;
  const windowMs = options.windowMs ?? 5;
  const concurrency = options.concurrency ?? 1;
  const isUnavailable = options.isUnavailable ?? (() => false);
  const retryMinMs = options.retryMinMs ?? 100;
  const retryMaxMs = options.retryMaxMs ?? 5_000;
  const spool = options.spool;
  const totals: MeterCounts = zeroCounts();
  let queue: Ticket[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let inFlight = 0;
  const idle: Array<() => void> = [];
  // Batches in the spool. While it is non-zero the ledger is presumed down: new batches join the spool behind the
  // older ones (replay stays in arrival order and a down database is not hit by every batch), and one replay
  // loop probes the ledger with backoff.
  let spoolSize = spool?.size() ?? 0;
  let replayTimer: NodeJS.Timeout | undefined;
  let backoff = retryMinMs;
  let closed = false;

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

  function afterCommit(): void {
    if (queued > 0) {
      if (queued >= maxBatch) flush();
      else schedule();
    }
    if (inFlight === 0 && queued === 0) for (const done of idle.splice(0)) done();
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
      afterCommit();
    });
  }

  /**
   * Commits one batch; a logical failure (a value the database refuses) splits the batch in halves until the
   * offending entry is alone, which then goes to dead letters with the database's reason, so one poisoned entry
   * never blocks the entries committed beside it. A connection-class failure is thrown as is (spool and retry).
   */
  async function commitIsolating(work: Work): Promise<Outcome> {
    try {
      return { ...(await options.ledger.commit({ events: work.events, expired: work.expired, deadLetters: work.deadLetters, now: clock() })), refused: new Set() };
    } catch (error) {
      if (isUnavailable(error)) throw error;
      const n = work.events.length + work.expired.length + work.deadLetters.length;
      if (n > 1) {
        const halves = split(work);
        const a = await commitIsolating(halves[0]);
        const b = await commitIsolating(halves[1]);
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
      const reason = `ledger refused the entry: ${message(error)}`;
      if (work.events.length === 1) {
        const origin = work.origins[0]!;
        const dead: DeadLetter = { source: origin.source, reason: storable(reason, 2_000), payload: storable(safePayload(origin)) };
        const result = await options.ledger.commit({ events: [], expired: [], deadLetters: [dead], now: clock() });
        options.logger.warn({ reason: dead.reason }, "access-log entry refused by the ledger; dead-lettered");
        return { ...result, refused: new Set(work.events) };
      }
      if (work.deadLetters.length === 1) {
        const d = work.deadLetters[0]!;
        const clean: DeadLetter = { source: d.source, reason: storable(d.reason, 2_000), payload: storable(d.payload) };
        if (clean.reason !== d.reason || clean.payload !== d.payload) {
          return { ...(await options.ledger.commit({ events: [], expired: [], deadLetters: [clean], now: clock() })), refused: new Set() };
        }
      }
      throw error;
    }
  }

  function split(work: Work): [Work, Work] {
    type Item = { event: UsageEvent; origin: Origin } | { dead: DeadLetter } | { expired: ExpiredReservation };
    const items: Item[] = [
      ...work.events.map((event, i) => ({ event, origin: work.origins[i]! })),
      ...work.deadLetters.map((dead) => ({ dead })),
      ...work.expired.map((expired) => ({ expired })),
    ];
    const build = (part: Item[]): Work => ({
      events: part.flatMap((it) => ("event" in it ? [it.event] : [])),
      origins: part.flatMap((it) => ("event" in it ? [it.origin] : [])),
      deadLetters: part.flatMap((it) => ("dead" in it ? [it.dead] : [])),
      expired: part.flatMap((it) => ("expired" in it ? [it.expired] : [])),
    });
    const middle = Math.ceil(items.length / 2);
    return [build(items.slice(0, middle)), build(items.slice(middle))];
  }

  /** After a commit: releases reservations and moves cached balances, and settles the billed requests' tokens. */
  async function committed(result: CommitResult, events: readonly UsageEvent[]): Promise<void> {
    const settling = settleWindows(result, events);
    if (options.credits) {
      try {
        await options.credits.committed(result.changes);
      } catch (error) {
        // SQL is the truth and is committed; the gate catches up by expiry and balance reloads.
        options.logger.warn({ err: error }, "credit gate update after ledger commit failed");
      }
    }
    await settling;
  }

  let settleWarnedAt = -Infinity;
  let unsettled = 0;
  async function settleWindows(result: CommitResult, events: readonly UsageEvent[]): Promise<void> {
    const limiter = options.limiter;
    if (!limiter || result.billedDecisions.length === 0) return;
    const billed = new Set(result.billedDecisions);
    const now = clock();
    const settles: Array<void | Promise<void>> = [];
    for (const e of events) {
      // Once per decision; a refund that does not happen only over-counts the window until the entry ages out.
      if (!billed.delete(e.decisionId)) continue;
      settles.push(limiter.settle({ keyId: e.keyId, accountId: e.accountId, decisionId: e.decisionId, actualTokens: e.promptTokens + e.completionTokens, now }));
    }
    const failed = (await Promise.allSettled(settles)).filter((r) => r.status === "rejected");
    if (failed.length === 0) return;
    unsettled += failed.length;
    // At most one line per 10 s: with Redis down every commit would otherwise log.
    if (clock() - settleWarnedAt < 10_000) return;
    settleWarnedAt = clock();
    options.logger.warn({ err: (failed[0] as PromiseRejectedResult).reason, unsettled }, "rate-limit windows not settled with actual usage; they keep the reservations until those age out");
    unsettled = 0;
  }

  async function commit(tickets: Ticket[]): Promise<void> {
    if (spool && spoolSize > 0) {
      toSpool(tickets, new Error("the ledger is unavailable; earlier batches are still spooled"));
      return;
    }
    let result: Outcome;
    try {
      result = await commitIsolating({
        events: tickets.flatMap((t) => t.events),
        origins: tickets.flatMap((t) => t.origins),
        expired: tickets.flatMap((t) => t.expired),
        deadLetters: tickets.flatMap((t) => t.deadLetters),
      });
    } catch (error) {
      if (spool && isUnavailable(error)) {
        options.logger.warn({ err: error }, "ledger unreachable; spooling access-log batches until it returns");
        toSpool(tickets, error);
        return;
      }
      options.logger.error({ err: error }, "ledger commit failed; these entries stay unbilled until reconcile");
      for (const t of tickets) t.reject(error);
      return;
    }
    // Per-ticket counts: a decision billed by this commit is billed for its first occurrence only.
    const billed = new Set(result.billedDecisions);
    for (const t of tickets) {
      for (const e of t.events) {
        if (result.refused.has(e)) t.counts.deadLettered++;
        else if (billed.delete(e.decisionId)) t.counts.billed++;
        else t.counts.alreadyBilled++;
      }
      t.counts.deadLettered += t.deadLetters.length;
      totals.billed += t.counts.billed;
      totals.alreadyBilled += t.counts.alreadyBilled;
      totals.deadLettered += t.counts.deadLettered;
    }
    await committed(result, tickets.flatMap((t) => t.events));
    for (const t of tickets) {
      t.onExpired?.(result.expired);
      t.resolve(t.counts);
    }
  }

  /** Parks the tickets' events and dead letters in the spool (one durable append) and answers them as spooled. */
  function toSpool(tickets: Ticket[], cause: unknown): void {
    const writable = tickets.filter((t) => t.events.length + t.deadLetters.length > 0);
    if (writable.length > 0) {
      try {
        spool!.append({
          events: writable.flatMap((t) => t.events),
          origins: writable.flatMap((t) => t.origins.map((o) => ({ source: o.source, payload: safePayload(o) }))),
          deadLetters: writable.flatMap((t) => t.deadLetters),
        });
        spoolSize++;
      } catch (error) {
        options.logger.error({ err: error }, "ledger unreachable and the spool cannot be written; these entries stay unbilled until reconcile");
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
    scheduleReplay(backoff);
  }

  function scheduleReplay(delayMs: number): void {
    if (!spool || closed || replayTimer || spoolSize === 0) return;
    replayTimer = setTimeout(() => {
      replayTimer = undefined;
      void replayOne();
    }, delayMs);
    replayTimer.unref();
  }

  /** Replays the oldest spooled batch (taking a commit slot), then the next at once, or backs off while down. */
  async function replayOne(): Promise<void> {
    if (!spool || closed) return;
    if (inFlight >= concurrency) {
      scheduleReplay(retryMinMs);
      return;
    }
    const next = spool.oldest();
    if (!next) {
      spoolSize = 0;
      afterCommit();
      return;
    }
    inFlight++;
    try {
      const { batch } = next;
      const result = await commitIsolating({
        events: batch.events,
        origins: batch.origins.map((o) => ({ source: o.source, payload: () => o.payload })),
        expired: [],
        deadLetters: batch.deadLetters,
      });
      spool.remove(next.seq);
      spoolSize = Math.max(0, spoolSize - 1);
      totals.billed += result.billed;
      totals.alreadyBilled += result.alreadyBilled;
      totals.deadLettered += result.deadLettered;
      backoff = retryMinMs;
      await committed(result, batch.events);
      options.logger.info({ seq: next.seq, billed: result.billed, alreadyBilled: result.alreadyBilled, remaining: spoolSize }, "spooled access-log batch replayed");
      scheduleReplay(0);
    } catch (error) {
      if (isUnavailable(error)) {
        backoff = Math.min(backoff * 2, retryMaxMs);
        options.logger.debug({ err: error, retryInMs: backoff }, "ledger still unreachable; spool replay backing off");
        scheduleReplay(backoff);
      } else {
        options.logger.error({ err: error, seq: next.seq }, "ledger refused a spooled batch; quarantined in the spool file for an operator");
        spool.quarantine(next.seq, message(error));
        spoolSize = Math.max(0, spoolSize - 1);
        scheduleReplay(0);
      }
    } finally {
      inFlight--;
      afterCommit();
    }
  }

  function enqueue(ticket: Ticket): void {
    const size = ticket.events.length + ticket.expired.length + ticket.deadLetters.length;
    if (size === 0) {
      // Nothing to write (every entry was skipped): answer now.
      ticket.resolve(ticket.counts);
      return;
    }
    queue.push(ticket);
    queued += size;
    schedule();
  }

  if (spoolSize > 0) {
    // A previous run left batches behind (it stopped or crashed while the ledger was down): replay them first.
    options.logger.info({ batches: spoolSize }, "replaying access-log batches left in the spool");
    scheduleReplay(0);
  }

  const meter: Meter = {
    totals,
    submit(inputs) {
      return new Promise<MeterCounts>((resolve, reject) => {
        const ticket: Ticket = { events: [], origins: [], expired: [], deadLetters: [], counts: zeroCounts(inputs.length), resolve, reject };
        totals.received += inputs.length;
        for (const input of inputs) {
          let verdict: Classified;
          try {
            verdict = classify(input.lift());
          } catch (error) {
            // Whatever an entry holds, it is a verdict about that entry, never a failure of its whole batch.
            verdict = { kind: "malformed", reason: error instanceof UnreadableEntry ? error.message : `unreadable entry: ${message(error)}` };
          }
          if (verdict.kind === "bill") {
            ticket.events.push(verdict.event);
            // The input is its own origin: no per-entry wrapper, and the payload is rendered only if the ledger refuses it.
            ticket.origins.push(input);
          } else if (verdict.kind === "skip") ticket.counts.skipped++;
          else ticket.deadLetters.push({ source: input.source, reason: verdict.reason, payload: safePayload(input) });
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
    spooled: () => spoolSize,
    drain() {
      flush();
      if (inFlight === 0 && queued === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
    async close() {
      await meter.drain();
      closed = true;
      if (replayTimer) clearTimeout(replayTimer);
      replayTimer = undefined;
      // A replay that was in flight has finished: drain waits for every commit slot.
      await meter.drain();
      spool?.close();
    },
  };
  return meter;
}
