import type { CommitResult, DeadLetter, ExpiredReservation, UsageEvent } from "../../domain/metering.js";

/** Where an event came from, rendered only if the ledger refuses it (rendering costs; most entries never need it). */
export interface Origin {
  source: DeadLetter["source"];
  payload(): string;
}

/** One commit's worth of work: billable events (each with its origin, same order), expired charges, dead letters. */
export interface CommitWork {
  events: UsageEvent[];
  origins: Origin[];
  expired: ExpiredReservation[];
  deadLetters: DeadLetter[];
}

/** A commit result, plus the events the ledger refused and that went to dead letters instead. */
export type CommitOutcome = CommitResult & { refused: Set<UsageEvent> };

/** How many ledger rows a piece of work asks for: what batches are sized by. */
export function workSize(work: Pick<CommitWork, "events" | "expired" | "deadLetters">): number {
  return work.events.length + work.expired.length + work.deadLetters.length;
}

/** An error's message for logs and dead-letter reasons, whatever was thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Text columns cannot hold NUL in PostgreSQL; a dead letter must always be storable. */
export function storable(text: string, max = 65_536): string {
  const clean = text.replace(/\u0000/g, "\\u0000");
  return clean.length > max ? `${clean.slice(0, max)}…(truncated)` : clean;
}

/** An origin's raw payload; an entry that cannot even be rendered still yields a dead letter that says so. */
export function safePayload(origin: Origin): string {
  try {
    return origin.payload();
  } catch (error) {
    return JSON.stringify({ unrenderable: errorMessage(error) });
  }
}
