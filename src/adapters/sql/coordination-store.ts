import type { Knex } from "knex";
import type { Database } from "./database.js";
import { big, int } from "./database.js";

// The `coordination` table (migration 0005): one row per named fact that processes sharing a database agree on.
// - `lease:<name>`: holder id and heartbeat; whoever heartbeats within the lease's TTL holds it.
// - `redis_epoch:<prefix>`: the epoch of the Redis dataset credit reservations were last taken in, so a process
//   started after Redis lost its data still knows it was lost.

/** A lease held by this process; heartbeats until released. */
export interface Lease {
  /**
   * Gives the lease back at once (a clean shutdown), so a successor does not wait for it to expire. The hand-over
   * (see handOverWith) runs in the same transaction, only if this process still held the lease: what it writes is
   * there exactly when the lease was released, and if it fails the lease is not released (it expires instead).
   */
  release(): Promise<void>;
  /** Sets what the holder writes for its successor when it releases the lease (whoever calls release). */
  handOverWith(handoff: (trx: Knex.Transaction) => Promise<void>): void;
  /**
   * Whether this process may still act as the holder, decided without I/O: never lost, not released, and its last
   * successful heartbeat is younger than the TTL minus a margin (a successor takes the lease only after the full TTL).
   */
  isCurrent(): boolean;
  /** The holder this process took the lease from because it stopped heartbeating (crashed or stalled), if any. */
  readonly predecessor?: { holder: string; lastHeartbeatAt: number; takenOverAt: number };
  /** Adds a listener for the loss of the lease to another holder (after options.onLost). */
  whenLost(listener: () => void): void;
}

/** Who holds a lease this process could not take. */
export class LeaseHeldError extends Error {
  override name = "LeaseHeldError";
  constructor(
    message: string,
    readonly holder: string,
  ) {
    super(message);
  }
}

/** Options for taking a lease. */
export interface LeaseOptions {
  name: string;
  /** This process's identity (host, pid, random), written as the holder. */
  holder: string;
  /** A holder that has not heartbeaten for this long is presumed dead and replaced. */
  ttlMs: number;
  /** How long before the TTL runs out the holder stops acting as one (covers clock skew between processes); TTL/4. */
  marginMs?: number;
  /** Wall clock (every process sharing the database must agree on it); tests pass a fake one. */
  clock?: () => number;
  /** Called once when a heartbeat finds the lease taken by another holder (this one stalled past the TTL). */
  onLost(error: Error): void;
  /** Called when a heartbeat fails (the database is unreachable); the lease stops being current until one succeeds. */
  onHeartbeatError?(error: Error): void;
  /** Builds the refusal when a live holder keeps the lease. */
  refusal(holder: string): string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface LeaseRow {
  holder: string | null;
  heartbeat_at: unknown;
}

/**
 * Takes a lease, waiting out a holder that has stopped heartbeating (a crashed or stalled predecessor, for up to the
 * TTL) but refusing at once once the holder's heartbeat moves (it is alive). A released lease (row deleted) is taken
 * at once, with no predecessor. Wall-clock time: every process sharing the database must agree on it to well under
 * the margin.
 */
export async function acquireLease(db: Database, options: LeaseOptions): Promise<Lease> {
  const { knex } = db;
  const clock = options.clock ?? Date.now;
  const name = `lease:${options.name}`;
  const heartbeatMs = Math.max(50, Math.floor(options.ttlMs / 3));
  const currentForMs = options.ttlMs - (options.marginMs ?? Math.floor(options.ttlMs / 4));
  let seen: number | undefined;
  let predecessor: Lease["predecessor"];
  let lastBeat = 0;
  const deadline = clock() + options.ttlMs + heartbeatMs;
  for (;;) {
    const now = clock();
    await knex("coordination")
      .insert({ name, holder: options.holder, value: null, heartbeat_at: now })
      .onConflict("name")
      .ignore();
    const row = (await knex("coordination").where({ name }).first("holder", "heartbeat_at")) as LeaseRow | undefined;
    if (row?.holder === options.holder) {
      lastBeat = int(row.heartbeat_at);
      break;
    }
    if (row) {
      const beat = int(row.heartbeat_at);
      if (beat <= now - options.ttlMs) {
        // Compare-and-set on the row as read: only one successor takes it over, and it knows from whom.
        const taken = await knex("coordination")
          .where({ name, holder: row.holder, heartbeat_at: row.heartbeat_at as number })
          .update({ holder: options.holder, heartbeat_at: now });
        if (taken === 1) {
          // Read after the takeover committed, on this process's clock: the predecessor's last successful heartbeat
          // happened before it, whatever its own clock said.
          predecessor = { holder: row.holder ?? "", lastHeartbeatAt: beat, takenOverAt: clock() };
          lastBeat = now;
          break;
        }
      } else if ((seen !== undefined && beat !== seen) || clock() > deadline) {
        throw new LeaseHeldError(options.refusal(row.holder ?? ""), row.holder ?? "");
      } else {
        seen = beat;
      }
    }
    await sleep(Math.min(heartbeatMs, 500));
  }
  let released = false;
  let lost = false;
  let handoff: ((trx: Knex.Transaction) => Promise<void>) | undefined;
  const listeners: Array<() => void> = [];
  const timer = setInterval(() => {
    const at = clock();
    knex("coordination")
      .where({ name, holder: options.holder })
      .update({ heartbeat_at: at })
      .then((n) => {
        if (n === 1) lastBeat = Math.max(lastBeat, at);
        else if (!released && !lost) {
          lost = true;
          clearInterval(timer);
          options.onLost(new Error(`lease ${options.name} was taken over by another process`));
          for (const listener of listeners) listener();
        }
      })
      .catch((error: Error) => options.onHeartbeatError?.(error));
  }, heartbeatMs);
  timer.unref();
  return {
    predecessor,
    whenLost: (listener) => void listeners.push(listener),
    isCurrent: () => !lost && !released && clock() - lastBeat < currentForMs,
    handOverWith(fn) {
      handoff = fn;
    },
    async release() {
      released = true;
      clearInterval(timer);
      await knex.transaction(async (trx) => {
        const deleted = await trx("coordination").where({ name, holder: options.holder }).delete();
        if (deleted === 1 && handoff) await handoff(trx);
      });
    },
  };
}

/** The Redis dataset epoch remembered in SQL for one key prefix (see the Redis credit gate). */
export function createEpochStore(
  db: Database,
  prefix: string,
): { read(): Promise<string | null>; write(epoch: string): Promise<void> } {
  const name = `redis_epoch:${prefix}`;
  return {
    async read() {
      const row = (await db.knex("coordination").where({ name }).first("value")) as
        | { value: string | null }
        | undefined;
      return row?.value ?? null;
    },
    async write(epoch) {
      await db
        .knex("coordination")
        .insert({ name, holder: null, value: epoch, heartbeat_at: Date.now() })
        .onConflict("name")
        .merge(["value", "heartbeat_at"]);
    },
  };
}

/** An open reservation handed from one admission process to the next (see the single-admission lease). */
export interface HandedOverReservation {
  accountId: string;
  decisionId: string;
  amount: bigint;
  expiresAt: number;
  /** The key it was admitted for: the successor holds it against the key's budget and charges its expiry there. */
  keyId?: string;
}

/** Rows per insert when handing reservations over (SQLite binds at most 32,766 parameters per statement). */
const HANDOVER_CHUNK = 500;

/**
 * Without Redis, the open reservations an authz process held, written when it releases the single-admission lease
 * (in the release's transaction) and read by its successor, and the time until which admissions stay fenced after a
 * predecessor that did not release the lease (its reservations are unknown).
 */
export function createAdmissionHandover(db: Database) {
  const fenceName = "admission_fence";
  return {
    /** Replaces the handed-over reservations (inside the lease release's transaction). */
    async write(trx: Knex.Transaction, reservations: readonly HandedOverReservation[]): Promise<void> {
      await trx("handed_over_reservations").delete();
      for (let i = 0; i < reservations.length; i += HANDOVER_CHUNK) {
        const rows = reservations.slice(i, i + HANDOVER_CHUNK).map((r) => ({
          decision_id: r.decisionId,
          account_id: r.accountId,
          amount: r.amount,
          expires_at: r.expiresAt,
          key_id: r.keyId ?? null,
        }));
        await trx("handed_over_reservations").insert(rows);
      }
    },
    /** The reservations the last holder handed over (kept until the next hand-over replaces them). */
    async read(): Promise<HandedOverReservation[]> {
      const rows = (await db
        .knex("handed_over_reservations")
        .select("decision_id", "account_id", "amount", "expires_at", "key_id")) as Array<Record<string, unknown>>;
      return rows.map((r) => ({
        decisionId: String(r.decision_id),
        accountId: String(r.account_id),
        amount: big(r.amount),
        expiresAt: int(r.expires_at),
        ...(r.key_id === null || r.key_id === undefined ? {} : { keyId: String(r.key_id) }),
      }));
    },
    /** Until when (ms) admissions are fenced; 0 when never. */
    async fencedUntil(): Promise<number> {
      const row = (await db.knex("coordination").where({ name: fenceName }).first("value")) as
        | { value: string | null }
        | undefined;
      return row?.value ? Number(row.value) : 0;
    },
    /** Extends the fence (never shortens it). */
    async fence(until: number): Promise<void> {
      const current = await this.fencedUntil();
      if (until <= current) return;
      await db
        .knex("coordination")
        .insert({ name: fenceName, holder: null, value: String(until), heartbeat_at: Date.now() })
        .onConflict("name")
        .merge(["value", "heartbeat_at"]);
    },
  };
}
