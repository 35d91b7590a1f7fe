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
        afterCreate(conn: { pragma(sql: string): unknown }, done: (err: Error | null, conn: unknown) => void) {
          conn.pragma("journal_mode = WAL");
          conn.pragma("synchronous = NORMAL");
          conn.pragma("busy_timeout = 5000");
          conn.pragma("foreign_keys = ON");
          done(null, conn);
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

/** Brings the schema up to date; safe to run on every start and from several replicas at once (knex locks). */
export async function migrate(db: Database): Promise<string[]> {
  const [, applied] = (await db.knex.migrate.latest({ migrationSource })) as [number, string[]];
  return applied;
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
