import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { createHash } from "node:crypto";
import Database from "better-sqlite3";

/** A local durable queue of JSON-able batches (bigints allowed): append-only, read and removed in append order. */
export interface Spool<T> {
  /** Appends one batch durably (one fsync'd transaction); returns its sequence number. */
  append(batch: T): number;
  /** The oldest batch still spooled, or undefined when the spool is empty. */
  oldest(): { seq: number; batch: T } | undefined;
  /** Removes a batch once the ledger has committed it. */
  remove(seq: number): void;
  /** Moves a batch the ledger refuses for a logical reason aside (kept for an operator), so it cannot block the queue. */
  quarantine(seq: number, reason: string): void;
  /** Batches waiting for replay. */
  size(): number;
  /** The file the spool lives in (created on the first append). */
  readonly path: string;
  close(): void;
}

/**
 * One spool file per database target, so two meters (or two test runs) writing to different databases can never
 * replay each other's batches into the wrong ledger: the name is a hash of the URL without its credentials and of
 * the schema. Credentials are dropped so rotating a password does not orphan a spool.
 */
export function spoolFileFor(dir: string, databaseUrl: string, schema?: string): string {
  let target = databaseUrl;
  if (!databaseUrl.startsWith("sqlite:")) {
    try {
      const u = new URL(databaseUrl);
      u.username = "";
      u.password = "";
      target = u.toString();
    } catch {
      // Not a parseable URL: hash it as given.
    }
  } else {
    target = `sqlite:${resolve(databaseUrl.slice("sqlite:".length))}`;
  }
  const id = createHash("sha256")
    .update(`${target}\u0000${schema ?? ""}`)
    .digest("hex")
    .slice(0, 16);
  return join(resolve(dir), `meter-${id}.db`);
}

// Batches hold bigints (money, prices): tagged so JSON round-trips them exactly.
function encode(batch: unknown): string {
  return JSON.stringify(batch, (_k, v: unknown) => (typeof v === "bigint" ? { $big: v.toString() } : v));
}

function decode<T>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      if (typeof o.$big === "string" && Object.keys(o).length === 1) return BigInt(o.$big);
    }
    return v;
  }) as T;
}

/**
 * The spool as an embedded SQLite file (better-sqlite3, synchronous): each append is its own transaction with
 * `synchronous = FULL` in WAL mode, so a batch the meter reports spooled survives a process crash and a power loss.
 * It is written only while the ledger is unreachable, so the fsync per batch costs nothing in normal running.
 * The file is opened lazily: a meter that never saw an outage never creates one, and a leftover file is replayed.
 */
export function createSqliteSpool<T>(file: string): Spool<T> {
  let db: Database.Database | undefined;
  function open(create: boolean): Database.Database | undefined {
    if (db) return db;
    if (!create && !existsSync(file)) return undefined;
    mkdirSync(resolve(file, ".."), { recursive: true });
    db = new Database(file);
    // The busy timeout first: switching a new file to WAL needs a lock another process may hold for a moment.
    db.pragma("busy_timeout = 5000");
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec(`create table if not exists batches (seq integer primary key autoincrement, created_at integer not null, payload text not null);
             create table if not exists quarantined (seq integer primary key, created_at integer not null, reason text not null, payload text not null)`);
    return db;
  }
  return {
    path: file,
    append(batch) {
      const result = open(true)!
        .prepare("insert into batches (created_at, payload) values (?, ?)")
        .run(Date.now(), encode(batch));
      return Number(result.lastInsertRowid);
    },
    oldest() {
      const row = open(false)?.prepare("select seq, payload from batches order by seq limit 1").get() as
        | { seq: number; payload: string }
        | undefined;
      return row ? { seq: row.seq, batch: decode<T>(row.payload) } : undefined;
    },
    remove(seq) {
      open(false)?.prepare("delete from batches where seq = ?").run(seq);
    },
    quarantine(seq, reason) {
      const d = open(false);
      if (!d) return;
      d.transaction(() => {
        d.prepare(
          "insert or replace into quarantined (seq, created_at, reason, payload) select seq, ?, ?, payload from batches where seq = ?",
        ).run(Date.now(), reason, seq);
        d.prepare("delete from batches where seq = ?").run(seq);
      })();
    },
    size() {
      const row = open(false)?.prepare("select count(*) as n from batches").get() as { n: number } | undefined;
      return row?.n ?? 0;
    },
    close() {
      db?.close();
      db = undefined;
    },
  };
}
