import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createCatalogueStore } from "../../src/adapters/sql/catalogue-store.js";
import { type Database, migrate, openDatabase, writeTransaction } from "../../src/adapters/sql/database.js";
import { readCatalogueFile } from "../../src/config/catalogue-file.js";

/**
 * SQLite refuses at once (SQLITE_BUSY, no busy wait) a transaction that read first and then writes, when another
 * connection committed in between: its snapshot is stale and cannot become a write transaction. Two admin processes
 * starting on one database file both seeded the catalogue; one died with "database is locked" (CI, stop 17).
 * A write transaction takes the write lock first, so it waits its turn instead.
 */
describe("SQLite write transactions take the write lock before they read", () => {
  const dirs: string[] = [];
  const dbs: Database[] = [];
  afterEach(async () => {
    await Promise.all(dbs.splice(0).map((d) => d.close()));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function fileDatabase(): Promise<{ db: Database; other: (busyMs?: number) => void }> {
    const dir = mkdtempSync(join(tmpdir(), "tollgate-sqlite-write-"));
    dirs.push(dir);
    const file = join(dir, "tollgate.db");
    const db = await openDatabase(`sqlite:${file}`);
    dbs.push(db);
    await migrate(db);
    // Another process's connection: a synchronous commit, made while our transaction is between its read and write.
    const other = (busyMs = 5000) => {
      const conn = new BetterSqlite3(file);
      try {
        conn.pragma(`busy_timeout = ${busyMs}`);
        conn.prepare("insert into settings (name, value) values (?, ?)").run(`other-${Math.random()}`, "x");
      } finally {
        conn.close();
      }
    };
    return { db, other };
  }

  it("seeds the catalogue when another process commits between the seed's check and its insert", async () => {
    const { db, other } = await fileDatabase();
    let calls = 0;
    const clock = () => {
      // The other process tries to commit between the check and the insert; once the seed holds the write lock it is
      // refused (it would wait and retry in real life, but here it shares our thread, so it must not wait).
      if (calls++ === 0) {
        try {
          other(0);
        } catch {}
      }
      return Date.now();
    };
    await expect(createCatalogueStore(db, clock).seed(readCatalogueFile("catalogue/default.yaml"))).resolves.toBe(true);
  });

  it("writeTransaction holds the write lock from its first statement, so nobody commits between its read and write", async () => {
    const { db, other } = await fileDatabase();
    const result = await writeTransaction(db, async (trx) => {
      await trx("settings").select("name");
      expect(() => other(0)).toThrow(/database is locked/);
      await trx("settings").insert({ name: "ours", value: "y" });
      return "written";
    });
    expect(result).toBe("written");
    expect(() => other(0)).not.toThrow();
  });
});
