// A process opening a SQLite file while another holds a write lock on it: switching the file to WAL needs an
// exclusive lock, and SQLite refuses that at once (SQLITE_BUSY without a busy wait, as it could deadlock), so
// opening must wait for the lock and try again rather than fail (CI saw two processes starting together fail so).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, expect, it } from "vitest";
import { openDatabase } from "../../src/adapters/sql/database.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it("opens a file another connection is writing to once that write commits, in WAL mode", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-wal-busy-"));
  dirs.push(dir);
  const file = join(dir, "tollgate.db");
  const other = new Database(file);
  other.exec("create table t (x integer)");
  other.exec("begin immediate");
  other.exec("insert into t values (1)");
  const committed = new Promise<void>((resolve) =>
    setTimeout(() => {
      other.exec("commit");
      resolve();
    }, 300),
  );
  const db = await openDatabase(`sqlite:${file}`);
  try {
    const rows = (await db.knex.raw("pragma journal_mode")) as Array<{ journal_mode: string }>;
    expect(rows[0]!.journal_mode).toBe("wal");
    const count = (await db.knex.raw("select count(*) as n from t")) as Array<{ n: bigint }>;
    expect(count[0]!.n).toBe(1n);
  } finally {
    await committed;
    other.close();
    await db.close();
  }
});
