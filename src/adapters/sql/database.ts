import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import knexFactory, { type Knex } from "knex";
import { migrationSource } from "./migrations.js";

/** An open store connection and which SQL dialect it speaks. */
export interface Database {
  knex: Knex;
  dialect: "sqlite" | "postgres";
  close(): Promise<void>;
}

/** How long SQLite waits for another connection's lock before refusing (SQLITE_BUSY). */
const BUSY_TIMEOUT_MS = 5000;

/**
 * Opens the database named by a config URL: `sqlite:PATH` (the embedded default; the file and its folder are created
 * on first start) or `postgres://…`. `schema` isolates a PostgreSQL run (tests give each suite its own).
 */
export async function openDatabase(url: string, options: { schema?: string } = {}): Promise<Database> {
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    const filename = path === ":memory:" ? ":memory:" : resolve(path);
    if (filename !== ":memory:") mkdirSync(dirname(filename), { recursive: true });
    const knex = knexFactory({
      client: "better-sqlite3",
      // safeIntegers: every INTEGER comes back as a BigInt, so money never passes through a float.
      connection: { filename, options: { safeIntegers: true } },
      useNullAsDefault: true,
      pool: {
        min: 1,
        max: 1,
        afterCreate(
          conn: { pragma(sql: string): unknown; close(): unknown },
          done: (err: Error | null, conn: unknown) => void,
        ) {
          conn.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
          // Switching a new file to WAL needs an exclusive lock, and SQLite refuses at once (no busy wait: it could
          // deadlock) while another process opening the same file holds one: try again until the busy timeout.
          const giveUpAt = Date.now() + BUSY_TIMEOUT_MS;
          const toWal = () => {
            try {
              conn.pragma("journal_mode = WAL");
              conn.pragma("synchronous = NORMAL");
              conn.pragma("foreign_keys = ON");
            } catch (error) {
              // better-sqlite3 reports extended codes (SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT, ...).
              const busy = /^SQLITE_BUSY/.test(String((error as { code?: unknown }).code));
              if (busy && Date.now() < giveUpAt) {
                setTimeout(toWal, 10 + Math.random() * 40);
                return;
              }
              conn.close();
              done(error as Error, conn);
              return;
            }
            done(null, conn);
          };
          toWal();
        },
      },
    });
    return { knex, dialect: "sqlite", close: () => knex.destroy() };
  }
  const schema = options.schema;
  const knex = knexFactory({
    client: "pg",
    connection: url,
    searchPath: schema ? [schema] : undefined,
    pool: { min: 0, max: 10 },
  });
  if (schema) await knex.raw("create schema if not exists ??", [schema]);
  return { knex, dialect: "postgres", close: () => knex.destroy() };
}

/**
 * Runs `fn` in a transaction that will write. On SQLite it takes the write lock first, as BEGIN IMMEDIATE would: a
 * transaction that read first and writes later is refused at once (SQLITE_BUSY, no busy wait) when another process
 * committed in between, since its snapshot cannot become a write transaction. Taking the lock first waits instead.
 */
export function writeTransaction<T>(db: Database, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return db.knex.transaction(async (trx) => {
    if (db.dialect === "sqlite") await trx.raw("delete from settings where 0");
    return fn(trx);
  });
}

/**
 * What a migration run that raced another process's answers: knex's migrator creates its own tables after checking
 * they are missing (outside a transaction), and refuses at once while another run holds its lock.
 */
const MIGRATION_RACE = /already exists|Migration table is already locked|database is locked|SQLITE_BUSY/;

/**
 * Brings the schema up to date; safe to run on every start and from several processes at once: each migration runs in
 * a transaction under knex's lock, and a run that raced another process's (both creating knex's tables, or the lock
 * held) tries again until the other has finished.
 */
export async function migrate(db: Database): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      const [, applied] = (await db.knex.migrate.latest({ migrationSource })) as [number, string[]];
      return applied;
    } catch (error) {
      if (attempt >= 50 || !MIGRATION_RACE.test(String((error as Error).message))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 150));
    }
  }
}

/** Reads an integer column that fits a JS number (counts, limits, timestamps in ms). */
export function int(value: unknown): number {
  return typeof value === "number" ? value : Number(value);
}

/** Reads an integer column as BigInt (money): SQLite gives BigInt, PostgreSQL gives a decimal string. */
export function big(value: unknown): bigint {
  return typeof value === "bigint" ? value : BigInt(value as string | number);
}

/** Reads a nullable integer column. */
export function intOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : int(value);
}

/** Reads a boolean column (SQLite stores 0/1, PostgreSQL real booleans). */
export function bool(value: unknown): boolean {
  return value === true || value === 1 || value === 1n || value === "1" || value === "t";
}
