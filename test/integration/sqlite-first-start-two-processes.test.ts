import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const CHILD = join(ROOT, "test/support/sqlite-first-start-child.ts");

/** Runs one starting process; resolves with what it printed (stdout and stderr). */
function start(file: string, startAt: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ["--import", "tsx", CHILD, file, String(startAt)], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout.on("data", (chunk) => (out += chunk));
    proc.stderr.on("data", (chunk) => (out += chunk));
    proc.on("error", reject);
    proc.on("exit", () => resolve(out.trim()));
  });
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * Two processes starting together on a new SQLite file (`tollgate serve` and a CLI command, or two roles) must both
 * come up. They did not: `pragma journal_mode = WAL` runs before `busy_timeout` is set, so the second connection is
 * refused at once ("database is locked") while the first switches the file to WAL; and knex's migrator checks for
 * its knex_migrations table and then creates it, so both create it and one fails ("table `knex_migrations` already
 * exists"). 5 of 6 trials by hand lost one process.
 */
it("two processes starting together on a new SQLite file both open, migrate and seed it", async () => {
  for (let trial = 0; trial < 3; trial++) {
    const dir = mkdtempSync(join(tmpdir(), "tollgate-first-start-"));
    dirs.push(dir);
    const file = join(dir, "tollgate.db");
    // Both wait for the same instant, after their imports are loaded.
    const startAt = Date.now() + 4000;
    const outs = await Promise.all([start(file, startAt), start(file, startAt)]);
    expect({ trial, outs }).toEqual({ trial, outs: ["ok", "ok"] });
  }
}, 60_000);
